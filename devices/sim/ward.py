"""The simulated ward: patients (the physiological Cohort), their wearables on a simulated BLE radio, and the
simulated clock both run on, stepped at 1 Hz of simulated time.

    ward = Ward(20, scenario="mix", seed=7, speed="max", start=datetime(2026, 3, 2, 8, tzinfo=CHINA))
    transport = ward.transport                      # what the edge collector connects through
    await ward.drive(transport.connect(addr, subscriptions={...}))   # connecting takes simulated time
    await ward.run(duration_s=3600)                 # an hour of ward life, as fast as the CPU allows

`speed` 1 runs in real time, 10 ten times faster, "max" as fast as possible. The radio and the transport
keep time on the ward's clock (`WardClock`), so link latencies, backoffs and receive timestamps are
simulated time at any speed, and a seeded ward emits the same bytes on every run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal, TypeVar

from devices.ble.backoff import RetryPolicy
from devices.ble.sim_backend import SimulatedTransport
from devices.ble.sim_radio import SimulatedPeripheral, SimulatedRadio
from devices.sim.artefacts import ArtefactProfile
from devices.sim.devices import WARD_DEVICES, WEIGHT_SCALE, DeviceError, Fleet, Frame, SimDevice, Tap, build_fleets
from devices.sim.errors import SimulationError
from devices.sim.physiology import Cohort, PatientSpec
from devices.sim.scenarios import Scenario, mix, scenario

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

STEP_S = 1.0  # the model and the devices run at 1 Hz of simulated time
# China Standard Time has no daylight saving, so a fixed offset is exact (and needs no tz database).
CHINA = timezone(timedelta(hours=8), "CST")
Speed = float | Literal["max"]
# Loop iterations given to a task woken by the clock before the next one wakes: enough for a woken
# connect or GATT operation to reach its next clock sleep, so sub-second latencies keep their order.
_SETTLE_YIELDS = 3


class WardError(SimulationError, ValueError):
    """A ward that cannot be built or driven as asked (bad speed, naive start, unknown device address)."""


class WardClock:
    """Simulated time for the radio and the transport (a devices.ble Clock).

    `now()` is the ward's simulated time in seconds since the epoch; `sleep()` returns once the ward has
    moved simulated time on by that much, so nothing that sleeps on this clock advances while the ward
    is not running.
    """

    def __init__(self, start_epoch: float) -> None:
        self._now = start_epoch
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        """Simulated seconds since the epoch."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until simulated time has moved on by `seconds`."""
        if not seconds > 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    @property
    def sleeping(self) -> int:
        """How many sleeps are pending (cancelled ones included until their time comes)."""
        return len(self._sleepers)

    async def advance_to(self, when: float, pace: _Pacer | None = None) -> None:
        """Move time to `when`, waking sleepers in deadline order (each gets the loop before the next one);
        with a pacer, each moment is also waited for in real time."""
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= when:
            deadline, _, future = heapq.heappop(sleepers)
            if future.done():
                continue  # its task was cancelled
            if pace is not None:
                await pace.wait_for(deadline)
            self._now = max(self._now, deadline)
            future.set_result(None)
            for _ in range(_SETTLE_YIELDS):
                await asyncio.sleep(0)
        if pace is not None:
            await pace.wait_for(when)
        self._now = max(self._now, when)


class _Pacer:
    """Holds simulated time to `speed` times real time from an anchor (real, simulated) pair."""

    def __init__(self, speed: float, simulated_epoch: float) -> None:
        self.speed = speed
        self._real = time.monotonic()
        self._simulated = simulated_epoch

    async def wait_for(self, simulated_epoch: float) -> None:
        delay = self._real + (simulated_epoch - self._simulated) / self.speed - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True, slots=True)
class WardStats:
    """Progress of a ward: simulated time, notifications sent, and how fast it ran (in its latest run)."""

    simulated_s: float
    notifications: int
    wall_s: float
    run_simulated_s: float
    run_notifications: int

    @property
    def real_time_factor(self) -> float:
        """Simulated seconds per wall-clock second in the latest run (0 before it has taken any time)."""
        return self.run_simulated_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def notifications_per_s(self) -> float:
        """Notifications and indications sent per wall-clock second in the latest run."""
        return self.run_notifications / self.wall_s if self.wall_s > 0 else 0.0


class Ward:
    """A ward of simulated patients wearing simulated devices, runnable as an asyncio task.

    `patients` is a count (ids P001..., scenarios from `scenario`: "mix" for a typical ward with one
    sepsis, or one scenario name for all) or explicit PatientSpecs. `devices` are the device types each
    counted patient wears (WEIGHT_SCALE may be among them, for explicit specs too). `time_scale` < 1
    compresses every scenario's course (1/12 shows a 12 h sepsis in an hour). `start` is an aware datetime
    (the devices' local clock and the model's circadian rhythm follow its zone); default: now, China time.
    """

    def __init__(
        self,
        patients: int | Sequence[PatientSpec],
        *,
        scenario: str = "mix",
        seed: int = 0,
        speed: Speed = 1.0,
        start: datetime | None = None,
        radio: SimulatedRadio | None = None,
        devices: Sequence[str] = WARD_DEVICES,
        artefacts: ArtefactProfile | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.speed = _check_speed(speed)
        if start is None:
            start = datetime.now(CHINA).replace(microsecond=0)
        if start.tzinfo is None or start.utcoffset() is None:
            raise WardError("the ward's start must be an aware datetime (its zone is the devices' local time)")
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise WardError(f"time_scale must be a positive number, got {time_scale!r}")
        specs = _specs(patients, scenario, seed, tuple(devices), time_scale)
        self.seed = seed
        self.start = start
        self.clock = WardClock(start.timestamp())
        self.radio = radio if radio is not None else SimulatedRadio(clock=self.clock)
        self.cohort = Cohort(
            [PatientSpec(s.patient_id, s.scenario, tuple(d for d in s.devices if d != WEIGHT_SCALE)) for s in specs],
            seed=seed, start=start, artefacts=artefacts,
        )
        weighed = [s.patient_id for s in specs if WEIGHT_SCALE in s.devices]
        self.fleets: tuple[Fleet, ...] = build_fleets(self.cohort, self.radio, weighed=weighed, seed=seed)
        self.devices: tuple[SimDevice, ...] = tuple(
            sorted((d for f in self.fleets for d in f.devices), key=lambda d: (self.cohort.index_of(d.patient_id),
                                                                                   _type_order(d.device_type)))
        )
        self._owner = {d.address: (f, i) for f in self.fleets for i, d in enumerate(f.devices)}
        self._day_offset_s = float(start.hour * 3600 + start.minute * 60 + start.second)
        self._transport: SimulatedTransport | None = None
        self._pacer: _Pacer | None = None
        self._run_started: tuple[float, float, int] | None = None  # (monotonic, simulated s, notifications)
        self._run_ended: float | None = None
        _log.info("sim.ward.built", extra={"patients": self.cohort.size, "devices": len(self.devices), "seed": seed,
                                           "speed": self.speed})

    # ---- what the edge needs --------------------------------------------------------------------------

    @property
    def transport(self) -> SimulatedTransport:
        """A BLE transport on the ward's radio and clock (created once; devices that power off for a battery
        swap come back, so it retries for ever)."""
        if self._transport is None:
            self._transport = SimulatedTransport(self.radio, clock=self.clock,
                                                 policy=RetryPolicy(max_attempts=None))
        return self._transport

    def device(self, address: str) -> SimDevice:
        """The device at `address`; WardError if the ward has none."""
        fleet, i = self._locate(address)
        return fleet.devices[i]

    def peripheral(self, address: str) -> SimulatedPeripheral:
        """The simulated peripheral at `address` (to take it out of range, refuse connections...)."""
        fleet, i = self._locate(address)
        return fleet.peripherals[i]

    def write(self, address: str, characteristic: str | int, payload: bytes) -> None:
        """A GATT write to a device (the simulated radio has no write procedure yet; RACP writes go here).

        WardError for an unknown address, DeviceError for a characteristic the device does not let one write."""
        fleet, i = self._locate(address)
        fleet.write(i, characteristic, payload)

    def tap(self, observer: Tap | None) -> None:
        """See every notification and indication the devices send, subscribed or not (None: stop)."""
        for fleet in self.fleets:
            fleet.tap = observer

    def _locate(self, address: str) -> tuple[Fleet, int]:
        try:
            return self._owner[address.strip().upper()]
        except KeyError:
            raise WardError(f"no simulated device at {address!r}") from None

    # ---- running ----------------------------------------------------------------------------------------

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds since the start."""
        return self.cohort.elapsed_s

    @property
    def notifications(self) -> int:
        """Notifications and indications the devices have sent so far."""
        return sum(f.sent for f in self.fleets)

    async def step(self) -> None:
        """One second of ward life: time moves on (waking what sleeps on the clock, paced to `speed`), the
        model advances, and every device sends what it measured. When this returns, every notification of
        the step has reached the subscribed handlers."""
        if self._pacer is None and self.speed != "max":
            self._pacer = _Pacer(self.speed, self.clock.now())
        t0 = self.cohort.elapsed_s
        await self.clock.advance_to(self.start.timestamp() + t0 + STEP_S, self._pacer)
        self.cohort.advance(STEP_S)
        frame = Frame(self.cohort, t0, self.cohort.elapsed_s, self.cohort.time.replace(tzinfo=None),
                      self._day_offset_s)
        for fleet in self.fleets:
            fleet.emit(frame)
        await asyncio.sleep(0)  # the radio hands notifications over with call_soon: deliver them now

    async def run(self, duration_s: float | None = None) -> WardStats:
        """Step for `duration_s` simulated seconds (None: until cancelled); returns the run's stats."""
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
            raise WardError(f"duration must be a non-negative number of seconds, got {duration_s!r}")
        end = None if duration_s is None else self.cohort.elapsed_s + duration_s
        self._begin_run()
        _log.info("sim.ward.run", extra={"duration_s": duration_s, "speed": self.speed})
        try:
            while end is None or self.cohort.elapsed_s + STEP_S <= end + 1e-9:
                await self.step()
        finally:
            self._end_run()
        return self.stats()

    async def drive(self, work: Awaitable[_T]) -> _T:
        """Step the ward until `work` completes and return its result: for work that needs simulated time to
        pass (connecting, scanning), which on this clock passes only while the ward steps."""
        task = asyncio.ensure_future(work)
        self._begin_run()
        try:
            while not task.done():
                await self.step()
        finally:
            self._end_run()
            if not task.done():
                task.cancel()
        return task.result()

    def stats(self) -> WardStats:
        """Progress now: totals, and the latest run (`run` or `drive`) so far."""
        sent = self.notifications
        if self._run_started is None:
            return WardStats(self.cohort.elapsed_s, sent, 0.0, 0.0, 0)
        began, simulated, notifications = self._run_started
        wall = (self._run_ended if self._run_ended is not None else time.monotonic()) - began
        return WardStats(self.cohort.elapsed_s, sent, wall, self.cohort.elapsed_s - simulated, sent - notifications)

    def _begin_run(self) -> None:
        self._pacer = None if self.speed == "max" else _Pacer(self.speed, self.clock.now())
        self._run_started = (time.monotonic(), self.cohort.elapsed_s, self.notifications)
        self._run_ended = None

    def _end_run(self) -> None:
        self._run_ended = time.monotonic()

    async def aclose(self) -> None:
        """Close the transport the ward made (its links and their tasks)."""
        if self._transport is not None:
            await self._transport.close()


def _check_speed(speed: Speed) -> Speed:
    if speed == "max":
        return speed
    if isinstance(speed, bool) or not isinstance(speed, int | float) or not (math.isfinite(speed) and speed > 0):
        raise WardError(f"speed must be a positive number (1 = real time) or 'max', got {speed!r}")
    return float(speed)


def _specs(
    patients: int | Sequence[PatientSpec], name: str, seed: int, devices: tuple[str, ...], time_scale: float,
) -> list[PatientSpec]:
    if isinstance(patients, int):
        if patients < 1:
            raise WardError(f"a ward needs at least one patient, got {patients}")
        chosen = mix(patients, seed=seed) if name == "mix" else (scenario(name),) * patients
        specs = [PatientSpec(f"P{i + 1:03d}", s, devices) for i, s in enumerate(chosen)]
    else:
        specs = list(patients)
        if not specs:
            raise WardError("a ward needs at least one patient")
    if time_scale == 1.0:
        return specs
    return [PatientSpec(s.patient_id, _resolve(s.scenario).time_scaled(time_scale), s.devices) for s in specs]


def _resolve(s: Scenario | str) -> Scenario:
    return s if isinstance(s, Scenario) else scenario(s)


_TYPE_ORDER = {t: i for i, t in enumerate((*WARD_DEVICES, WEIGHT_SCALE))}


def _type_order(device_type: str) -> int:
    return _TYPE_ORDER.get(device_type, len(_TYPE_ORDER))


__all__ = ["CHINA", "STEP_S", "DeviceError", "Ward", "WardClock", "WardError", "WardStats"]
