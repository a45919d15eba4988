"""Pure parts of the uplink: reconnect backoff, the vitals batcher, the command registry."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from concurrent.futures import Future
from typing import Any

import pytest

from edge.uplink import CommandRegistry, VitalsBatcher, backoff_delay
from proto.messages import Command
from proto.quality import Quality
from proto.vitals import VitalsBatch
from proto.vocabulary import UnknownKindError

T0 = dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)

# --- backoff ----------------------------------------------------------------------------------------------


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    delays = [backoff_delay(n, initial_s=0.5, max_s=8.0, jitter=0.0, rand=0.3) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_jitter_takes_a_random_share_off_the_ceiling() -> None:
    assert backoff_delay(3, initial_s=1.0, max_s=60.0, jitter=0.5, rand=0.0) == 4.0
    assert backoff_delay(3, initial_s=1.0, max_s=60.0, jitter=0.5, rand=0.5) == 3.0
    assert backoff_delay(3, initial_s=1.0, max_s=60.0, jitter=1.0, rand=0.75) == 1.0


def test_backoff_stays_finite_after_a_very_long_outage() -> None:
    assert backoff_delay(10_000, initial_s=0.5, max_s=60.0, jitter=0.0, rand=0.0) == 60.0


@pytest.mark.parametrize("kwargs", [
    {"attempt": 0}, {"jitter": 1.5}, {"rand": 1.0}, {"initial_s": 0.0}, {"max_s": 0.1},
])
def test_backoff_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"attempt": 1, "initial_s": 0.5, "max_s": 10.0, "jitter": 0.5, "rand": 0.2} | kwargs
    with pytest.raises(ValueError):
        backoff_delay(args.pop("attempt"), **args)


# --- batcher ---------------------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.batches: list[VitalsBatch] = []
        self.arrived = threading.Event()

    def __call__(self, batch: VitalsBatch) -> Future[Any]:
        self.batches.append(batch)
        self.arrived.set()
        done: Future[Any] = Future()
        done.set_result(None)
        return done


def test_a_full_batch_goes_out_at_once_with_every_sample() -> None:
    sink = Sink()
    batcher = VitalsBatcher(sink, max_samples=3, max_age_s=60)
    for i in range(7):
        batcher.add(T0 + dt.timedelta(seconds=i), f"pt-{i % 2}", "spo2", 95.0 + i, device_id="ox-1",
                    quality=Quality.MOTION if i == 4 else Quality.NONE)
    assert [len(b) for b in sink.batches] == [3, 3]
    assert batcher.pending() == 1
    second = sink.batches[1].samples()
    assert [(s.patient_id, s.value, s.quality) for s in second] == [
        ("pt-1", 98.0, Quality.NONE), ("pt-0", 99.0, Quality.MOTION), ("pt-1", 100.0, Quality.NONE)]


def test_a_batch_closes_when_its_first_sample_is_old_enough() -> None:
    now = [100.0]
    sink = Sink()
    batcher = VitalsBatcher(sink, max_samples=1000, max_age_s=1.0, clock=lambda: now[0])
    batcher.add(T0, "pt-1", "heart_rate", 72.0)
    now[0] = 100.6
    batcher.add(T0, "pt-1", "heart_rate", 73.0)
    assert batcher.poll() is None
    now[0] = 101.0
    assert batcher.poll() is not None
    assert [len(b) for b in sink.batches] == [2]
    assert batcher.poll() is None  # nothing open


def test_the_timer_thread_flushes_and_stop_hands_over_the_rest() -> None:
    sink = Sink()
    batcher = VitalsBatcher(sink, max_samples=1000, max_age_s=0.05)
    batcher.start()
    try:
        batcher.add(T0, "pt-1", "heart_rate", 72.0)
        assert sink.arrived.wait(5)
        batcher.add(T0, "pt-1", "heart_rate", 74.0)
    finally:
        batcher.stop()
    assert sum(len(b) for b in sink.batches) == 2
    assert (batcher.batches, batcher.samples) == (len(sink.batches), 2)


def test_unknown_kinds_fail_in_the_producer() -> None:
    batcher = VitalsBatcher(Sink(), max_samples=10)
    with pytest.raises(UnknownKindError):
        batcher.add(T0, "pt-1", "blood_alcohol", 0.1)
    with pytest.raises(ValueError):
        batcher.add(T0, "pt-1", "heart_rate", float("nan"))
    assert batcher.pending() == 0


# --- command registry ----------------------------------------------------------------------------------


def test_registry_accepts_only_protocol_commands_once_each() -> None:
    registry = CommandRegistry()
    registry.register("configure", lambda c: None)
    with pytest.raises(ValueError):
        registry.register("configure", lambda c: None)
    with pytest.raises(ValueError):
        registry.register("reboot", lambda c: None)


def test_a_failing_handler_is_contained() -> None:
    registry = CommandRegistry()

    def boom(_command: Command) -> None:
        raise RuntimeError("handler bug")

    registry.register("signal", boom)
    assert registry.dispatch(Command(command_id=uuid.uuid4(), name="signal")) is False
    ran: list[str] = []
    registry.register("ping", lambda c: ran.append(c.name))
    assert registry.dispatch(Command(command_id=uuid.uuid4(), name="ping")) is True
    assert ran == ["ping"]


def test_commands_expire_at_their_deadline() -> None:
    registry = CommandRegistry()
    ran: list[uuid.UUID] = []
    registry.register("ping", lambda c: ran.append(c.command_id))
    fresh = Command(command_id=uuid.uuid4(), name="ping", expires_at=T0 + dt.timedelta(seconds=1))
    stale = Command(command_id=uuid.uuid4(), name="ping", expires_at=T0)
    assert registry.dispatch(fresh, now=T0) is True
    assert registry.dispatch(stale, now=T0) is False
    assert ran == [fresh.command_id]
