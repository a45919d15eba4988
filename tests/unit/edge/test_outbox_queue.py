"""The outbox queue: sequences, lanes, per-stream order, commit-ack deletion, dead letters, group commit."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.outbox import (
    Lane,
    LaneError,
    Outbox,
    OutboxClosedError,
    OutboxError,
    OutboxLockedError,
    OutboxPolicy,
    StoredMessage,
)
from edge.outbox.store import OutboxWriter
from proto import envelope, keys, topics
from proto.envelope import SignerKey
from proto.messages import (
    AckEntry,
    AckOutcome,
    Alert,
    DeviceStatus,
    DicomManifest,
    EdgeStatus,
    Event,
    InstanceEntry,
    SeriesEntry,
)
from proto.schema import ValidationError
from proto.topics import Stream
from proto.vitals import VitalsBatch, VitalsBatchBuilder

EDGE = "edge-unit"
SITE = "site-unit"
T0 = dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)

# --- payload factories (imported by the other outbox test modules) ---------------------------------------


def vitals(samples: int = 10, *, patient: str = "pt-1", start: dt.datetime = T0) -> VitalsBatch:
    builder = VitalsBatchBuilder()
    for i in range(samples):
        builder.add(start + dt.timedelta(seconds=i), patient, "heart_rate", 60.0 + i % 40, device_id="hrm-1")
    return builder.build()


def alert(rule: str = "news2_high") -> Alert:
    return Alert(alert_id=uuid.uuid4(), patient_id="pt-1", rule=rule, priority="high", category="clinical",
                 state="active", raised_at=T0, message="NEWS2 7", news2_total=7)


def event(device: str = "hrm-1") -> Event:
    return Event(event_id=uuid.uuid4(), event_type="device_status", at=T0,
                 device_status=DeviceStatus(device_id=device, state="connected", battery_pct=80.0))


def manifest() -> DicomManifest:
    instance = InstanceEntry(sop_instance_uid="1.2.3.4.5", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                             transfer_syntax_uid="1.2.840.10008.1.2.1", size_bytes=1024, sha256="a" * 64)
    series = SeriesEntry(series_instance_uid="1.2.3.4", modality="CT", instances=(instance,))
    return DicomManifest(study_instance_uid="1.2.3", patient_id="pt-1", completed_at=T0, series=(series,))


def ack(messages: list[StoredMessage], outcome: AckOutcome = "committed", reason: str | None = None
        ) -> list[AckEntry]:
    return [AckEntry(m.message_id, m.stream, m.sequence, outcome, reason) for m in messages]


def drain_lane(outbox: Outbox, lane: Lane) -> list[StoredMessage]:
    return outbox.pending(lane, limit=10_000).messages


@pytest.fixture
def signer() -> Ed25519PrivateKey:
    return keys.generate()


@pytest.fixture
def outbox(tmp_path: Path, signer: Ed25519PrivateKey) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite3", edge_id=EDGE, signer=signer) as box:
        yield box


# --- tests ------------------------------------------------------------------------------------------------


def test_each_stream_gets_its_own_increasing_sequence(outbox: Outbox) -> None:
    done = [outbox.enqueue(p).result(5) for p in (vitals(), alert(), vitals(), event(), vitals(), alert())]
    assert [(d.stream, d.sequence) for d in done] == [
        (Stream.VITALS, 1), (Stream.ALERTS, 1), (Stream.VITALS, 2), (Stream.EVENTS, 1), (Stream.VITALS, 3),
        (Stream.ALERTS, 2),
    ]


def test_the_stored_envelope_is_the_signed_message_with_its_sequence(outbox: Outbox, signer: Ed25519PrivateKey
                                                                     ) -> None:
    payload = alert()
    done = outbox.enqueue(payload).result(5)
    [stored] = drain_lane(outbox, Lane.ALERTS)
    opened = envelope.open_envelope(stored.envelope, topic=topics.build(SITE, EDGE, "alerts"),
                                    keys={EDGE: SignerKey(signer.public_key())}.get)
    assert opened.payload == payload
    assert (opened.message_id, opened.sequence) == (done.message_id, done.sequence) == (stored.message_id, 1)
    assert stored.size == len(stored.envelope) == done.size


def test_sequences_survive_reopening_the_file(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path, edge_id=EDGE, signer=signer) as box:
        for _ in range(3):
            box.enqueue(vitals()).result(5)
        first = drain_lane(box, Lane.VITALS)
        box.acknowledge(ack(first)).result(5)  # the queue is empty again: numbering must still go on
        assert box.reserve_sequence(Stream.STATUS).result(5) == 1
    with Outbox(path, edge_id=EDGE, signer=signer) as box:
        assert box.depth() == 0
        assert box.enqueue(vitals()).result(5).sequence == 4
        assert box.enqueue(alert()).result(5).sequence == 1
        assert box.reserve_sequence(Stream.STATUS).result(5) == 2


def test_messages_of_a_stream_come_back_in_enqueue_order(outbox: Outbox) -> None:
    ids = [outbox.enqueue(vitals(patient=f"pt-{i}")).result(5).message_id for i in range(20)]
    pending = drain_lane(outbox, Lane.VITALS)
    assert [m.message_id for m in pending] == ids
    assert [m.sequence for m in pending] == list(range(1, 21))


def test_each_payload_type_lands_in_its_lane(outbox: Outbox) -> None:
    for payload in (manifest(), vitals(), event(), alert()):
        outbox.enqueue(payload)
    outbox.flush(5)
    lanes = {lane: [m.stream for m in drain_lane(outbox, lane)] for lane in Lane}
    assert lanes == {Lane.ALERTS: [Stream.ALERTS], Lane.EVENTS: [Stream.EVENTS], Lane.VITALS: [Stream.VITALS],
                     Lane.BULK: [Stream.DICOM]}
    assert outbox.message_ids() == [m.message_id for lane in Lane for m in drain_lane(outbox, lane)]


def test_pending_pages_through_a_lane_with_a_cursor(outbox: Outbox) -> None:
    for i in range(7):
        outbox.enqueue(vitals(patient=f"pt-{i}"))
    outbox.flush(5)
    first = outbox.pending(Lane.VITALS, limit=4)
    rest = outbox.pending(Lane.VITALS, after_row_id=first.last_row_id, limit=4)
    assert [m.sequence for m in first.messages] == [1, 2, 3, 4]
    assert [m.sequence for m in rest.messages] == [5, 6, 7]
    assert outbox.pending(Lane.VITALS, after_row_id=rest.last_row_id).messages == []


@pytest.mark.parametrize("outcome", ["committed", "duplicate"])
def test_a_positive_ack_deletes_exactly_the_acked_messages(outbox: Outbox, outcome: AckOutcome) -> None:
    for _ in range(5):
        outbox.enqueue(vitals())
    outbox.flush(5)
    pending = drain_lane(outbox, Lane.VITALS)
    result = outbox.acknowledge(ack(pending[1:3], outcome)).result(5)
    assert (result.deleted, result.dead_lettered, result.unknown) == (2, 0, 0)
    assert [m.sequence for m in drain_lane(outbox, Lane.VITALS)] == [1, 4, 5]
    assert outbox.depth() == 3
    assert outbox.total_bytes() == sum(m.size for m in drain_lane(outbox, Lane.VITALS))


def test_acks_for_messages_no_longer_queued_are_counted_as_unknown(outbox: Outbox) -> None:
    outbox.enqueue(alert()).result(5)
    pending = drain_lane(outbox, Lane.ALERTS)
    assert outbox.acknowledge(ack(pending)).result(5).deleted == 1
    again = outbox.acknowledge(ack(pending, "duplicate")).result(5)
    assert (again.deleted, again.unknown) == (0, 1)


def test_a_rejected_message_moves_to_dead_letters_and_is_never_offered_again(outbox: Outbox) -> None:
    outbox.enqueue(event()).result(5)
    outbox.enqueue(event()).result(5)
    bad, good = drain_lane(outbox, Lane.EVENTS)
    result = outbox.acknowledge(ack([bad], "rejected", "malformed: device_status.battery_pct")).result(5)
    assert (result.deleted, result.dead_lettered) == (0, 1)
    assert [m.message_id for m in drain_lane(outbox, Lane.EVENTS)] == [good.message_id]
    [dead] = outbox.dead_letters()
    assert (dead.message_id, dead.reason, dead.envelope) == (bad.message_id, "malformed: device_status.battery_pct",
                                                             bad.envelope)
    assert outbox.totals()["dead_lettered:events"] == 1


def test_messages_being_acknowledged_are_not_offered_for_sending(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.enqueue(vitals())
    outbox.flush(5)
    pending = drain_lane(outbox, Lane.VITALS)
    gate = threading.Event()
    outbox.add_commit_listener(lambda _lanes: gate.wait(5))  # holds the writer after the next insert commits
    outbox.enqueue(vitals()).result(5)  # resolves before the listener holds the writer
    outbox.acknowledge(ack(pending[:2]))  # queued behind the held writer: not committed yet
    try:
        assert [m.sequence for m in drain_lane(outbox, Lane.VITALS)] == [3, 4]
    finally:
        gate.set()
    outbox.flush(5)
    assert [m.sequence for m in drain_lane(outbox, Lane.VITALS)] == [3, 4]


def test_concurrent_producers_share_commits_and_get_unique_gapless_sequences(tmp_path: Path,
                                                                             signer: Ed25519PrivateKey) -> None:
    producers, each = 8, 100
    batch = vitals(5)
    with Outbox(tmp_path / "o.sqlite3", edge_id=EDGE, signer=signer, policy=OutboxPolicy(linger_s=0.005)) as box:
        results: list[int] = []
        lock = threading.Lock()

        def produce() -> None:
            futures = [box.enqueue(batch) for _ in range(each)]
            got = [f.result(30).sequence for f in futures]
            with lock:
                results.extend(got)

        threads = [threading.Thread(target=produce) for _ in range(producers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == list(range(1, producers * each + 1))
        assert box.depth(Lane.VITALS) == producers * each
        assert box.commits < producers * each / 4  # group commit: many enqueues per transaction


def test_payloads_that_do_not_go_through_the_outbox_are_refused(outbox: Outbox) -> None:
    with pytest.raises(LaneError):
        outbox.enqueue(EdgeStatus(state="online", at=T0))
    bad = Alert(alert_id=uuid.uuid4(), patient_id="Zhang Wei", rule="r", priority="high", category="clinical",
                state="active", raised_at=T0, message="")
    with pytest.raises(ValidationError):
        outbox.enqueue(bad)
    assert outbox.enqueue(alert()).result(5).sequence == 1  # refusals consumed no sequence number
    assert outbox.depth() == 1


def test_a_reused_message_id_fails_alone(outbox: Outbox) -> None:
    mid = uuid.uuid4()
    outbox.enqueue(event(), message_id=mid).result(5)
    gate = threading.Event()
    outbox.add_commit_listener(lambda _lanes: gate.wait(5))
    outbox.enqueue(event())  # holds the writer so the next three share one batch
    futures = [outbox.enqueue(event()), outbox.enqueue(event(), message_id=mid), outbox.enqueue(event())]
    gate.set()
    assert futures[0].result(5).sequence == 3
    with pytest.raises(OutboxError):
        futures[1].result(5)
    assert futures[2].result(5).sequence == 5
    assert outbox.depth(Lane.EVENTS) == 4


def test_only_one_outbox_may_hold_a_file(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, edge_id=EDGE, signer=signer), pytest.raises(OutboxLockedError):
        Outbox(path, edge_id=EDGE, signer=signer)
    with Outbox(path, edge_id=EDGE, signer=signer) as again:  # released on close
        assert again.depth() == 0


def test_close_commits_what_was_queued_and_refuses_more(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, edge_id=EDGE, signer=signer)
    futures = [box.enqueue(vitals()) for _ in range(50)]
    box.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(OutboxClosedError):
        box.enqueue(vitals())
    with Outbox(path, edge_id=EDGE, signer=signer) as again:
        assert again.depth() == 50


def test_stats_report_depth_bytes_and_oldest_age_per_lane(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    now = [T0]
    with Outbox(tmp_path / "o.sqlite3", edge_id=EDGE, signer=signer, clock=lambda: now[0]) as box:
        box.enqueue(vitals()).result(5)
        now[0] = T0 + dt.timedelta(seconds=30)
        box.enqueue(vitals()).result(5)
        box.enqueue(alert()).result(5)
        now[0] = T0 + dt.timedelta(seconds=90)
        stats = box.stats()
    assert stats[Lane.VITALS].depth == 2 and stats[Lane.VITALS].oldest_age_s == 90.0
    assert stats[Lane.ALERTS].depth == 1 and stats[Lane.ALERTS].oldest_age_s == 60.0
    assert stats[Lane.EVENTS].depth == 0 and stats[Lane.EVENTS].oldest_age_s is None
    assert stats[Lane.VITALS].bytes > stats[Lane.ALERTS].bytes > 0


@pytest.mark.parametrize("failure", [sqlite3.OperationalError("disk I/O error"), RuntimeError("a bug")])
def test_a_failed_commit_fails_its_callers_and_the_outbox_keeps_working(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    real_insert = OutboxWriter.insert
    calls = []

    def insert_once_failing(self: OutboxWriter, messages: list[object]) -> None:
        calls.append(len(messages))
        if len(calls) == 1:
            raise failure
        real_insert(self, messages)  # type: ignore[arg-type]

    monkeypatch.setattr(OutboxWriter, "insert", insert_once_failing)
    with pytest.raises(OutboxError):
        outbox.enqueue(alert()).result(5)
    assert outbox.enqueue(alert()).result(5).sequence == 2
    assert outbox.depth() == 1


def test_a_queued_enqueue_cannot_be_cancelled(outbox: Outbox) -> None:
    future = outbox.enqueue(event())
    assert future.cancel() is False
    assert future.result(5).sequence == 1
