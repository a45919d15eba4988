"""The ingest pipeline against an in-memory store: verification, dedupe, dead letters, acks, retries, poison."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import pytest

from cloud.db.migrate import Mode
from cloud.edges.registry import EdgeRecord, EdgeRegistry
from cloud.ingest.acks import Outcome
from cloud.ingest.copy_binary import PG_EPOCH_US
from cloud.ingest.errors import DataStoreError, Stopped, TransientStoreError
from cloud.ingest.intake import Delivery
from cloud.ingest.pipeline import CommitResult, Pipeline, RetryPolicy
from cloud.ingest.plan import DeadLetterRow, IngestedRow, WritePlan
from proto import envelope, keys
from proto.quality import Quality
from tests.unit.cloud.ingest_messages import TestEdge, alert, vitals, ward_batch
from tests.unit.cloud.test_copy_binary import parse_copy

UTC = dt.UTC


@dataclass
class FakeDb:
    edges: dict[str, EdgeRecord] = field(default_factory=dict)
    ingested: dict[uuid.UUID, IngestedRow] = field(default_factory=dict)
    plans: list[WritePlan] = field(default_factory=list)
    dead: list[DeadLetterRow] = field(default_factory=list)
    transient_failures: int = 0
    poison_marker: str | None = None  # an alert message the "database" refuses
    transactions: int = 0


class FakeTx:
    def __init__(self, db: FakeDb) -> None:
        self.db = db
        self.claimed: dict[uuid.UUID, IngestedRow] = {}
        self.plans: list[WritePlan] = []
        self.dead: list[DeadLetterRow] = []

    def edges(self, edge_ids: Sequence[str]) -> list[EdgeRecord]:
        return [self.db.edges[e] for e in edge_ids if e in self.db.edges]

    def claim(self, rows: Sequence[IngestedRow]) -> set[uuid.UUID]:
        new = {r.message_id for r in rows if r.message_id not in self.db.ingested}
        self.claimed.update({r.message_id: r for r in rows if r.message_id in new})
        return new

    def apply(self, plan: WritePlan) -> None:
        marker = self.db.poison_marker
        if marker is not None and any(marker in a.body for a in plan.alerts):
            raise DataStoreError("unsupported Unicode escape sequence")
        self.plans.append(plan)

    def dead_letters(self, rows: Sequence[DeadLetterRow]) -> None:
        self.dead.extend(rows)


class FakeStore:
    def __init__(self, db: FakeDb) -> None:
        self.db = db
        self.resets = 0

    @property
    def mode(self) -> Mode:
        return "plain"

    @contextmanager
    def transaction(self) -> Iterator[FakeTx]:
        if self.db.transient_failures:
            self.db.transient_failures -= 1
            raise TransientStoreError("connection lost")
        tx = FakeTx(self.db)
        yield tx
        self.db.ingested.update(tx.claimed)
        self.db.plans.extend(tx.plans)
        self.db.dead.extend(tx.dead)
        self.db.transactions += 1

    def reset(self) -> None:
        self.resets += 1


@dataclass
class Harness:
    db: FakeDb
    pipeline: Pipeline
    results: list[CommitResult]
    sleeps: list[float]
    stop: list[bool]

    def run(self, deliveries: list[Delivery]) -> list[Outcome]:
        before = len(self.results)
        self.pipeline.process(deliveries, self.results.append)
        return [o for r in self.results[before:] for o in r.outcomes]


@pytest.fixture
def edge() -> TestEdge:
    return TestEdge("edge-a", "site-1")


@pytest.fixture
def harness(edge: TestEdge) -> Harness:
    db = FakeDb(edges={edge.edge_id: edge.record})
    store = FakeStore(db)
    registry = EdgeRegistry(lambda: list(db.edges.values()), ttl_s=3600)
    sleeps: list[float] = []
    stop = [False]
    clock = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    pipeline = Pipeline(store, registry, retry=RetryPolicy(0.1, 1.0), poison_attempts=3, should_stop=lambda: stop[0],
                        sleep=sleep, clock=lambda: clock[0])
    return Harness(db, pipeline, [], sleeps, stop)


def statuses(outcomes: list[Outcome]) -> list[str]:
    return [o.status for o in outcomes]


def test_new_messages_are_committed_and_acked_to_their_edge(harness: Harness, edge: TestEdge) -> None:
    deliveries = [edge.delivery(ward_batch(10)), edge.delivery(alert())]

    outcomes = harness.run(deliveries)

    assert statuses(outcomes) == ["committed", "committed"]
    assert [o.entry.outcome for o in outcomes if o.entry] == ["committed", "committed"]
    assert {(o.target.site, o.target.edge) for o in outcomes if o.target} == {("site-1", "edge-a")}
    assert len(harness.db.ingested) == 2
    assert sum(p.samples for p in harness.db.plans) == 10


def test_a_redelivered_message_is_a_duplicate_and_adds_nothing(harness: Harness, edge: TestEdge) -> None:
    raw = edge.seal(ward_batch(10))
    first = Delivery(edge.topic("vitals"), raw, dt.datetime.now(UTC))
    again = Delivery(edge.topic("vitals"), raw, dt.datetime.now(UTC))

    assert statuses(harness.run([first, again])) == ["committed", "duplicate"]
    assert statuses(harness.run([again])) == ["duplicate"]
    assert sum(p.samples for p in harness.db.plans) == 10
    assert len(harness.db.ingested) == 1


@pytest.mark.parametrize(
    ("case", "reason", "acked"),
    [
        ("forged", "bad_signature", True),
        ("for_another_edge", "topic_mismatch", True),
        ("garbage", "malformed", False),
        ("unknown_version", "unknown_version", False),
        ("unknown_edge", "unknown_edge", False),
    ],
)
def test_rejected_messages_are_dead_lettered_with_their_reason(
    harness: Harness, edge: TestEdge, case: str, reason: str, acked: bool
) -> None:
    batch = ward_batch(4)
    if case == "forged":
        delivery = edge.delivery(batch, key=keys.generate())
    elif case == "for_another_edge":  # edge-a publishes on its own topic an envelope claiming to be edge-b
        delivery = edge.delivery(batch, edge_id="edge-b")
    elif case == "garbage":
        delivery = Delivery(edge.topic("vitals"), b"\x00garbage" * 20, dt.datetime.now(UTC))
    elif case == "unknown_version":
        raw = bytearray(edge.seal(batch))
        raw[2] = 9
        delivery = Delivery(edge.topic("vitals"), bytes(raw), dt.datetime.now(UTC))
    else:
        delivery = TestEdge("edge-x", "site-1").delivery(batch)

    [outcome] = harness.run([delivery])

    assert outcome.status == "rejected"
    [dead] = harness.db.dead
    assert (dead.reason, dead.raw, dead.topic) == (reason, delivery.payload, delivery.topic)
    assert harness.db.ingested == {} and harness.db.plans[0].samples == 0
    if acked:
        assert outcome.target is not None and outcome.target.edge == "edge-a"
        assert outcome.entry is not None and (outcome.entry.outcome, outcome.entry.reason) == ("rejected", reason)
    else:
        assert outcome.target is None


def test_a_revoked_edge_is_refused_even_if_the_cache_still_trusts_it(harness: Harness, edge: TestEdge) -> None:
    assert statuses(harness.run([edge.delivery(ward_batch(2))])) == ["committed"]
    harness.db.edges[edge.edge_id] = replace(edge.record, status="revoked")  # the cache TTL is an hour

    [outcome] = harness.run([edge.delivery(ward_batch(2))])

    assert (outcome.status, harness.db.dead[-1].reason, outcome.target) == ("rejected", "revoked_edge", None)


def test_implausible_values_are_kept_and_flagged(harness: Harness, edge: TestEdge) -> None:
    batch = vitals([(0, "pt-1", "spo2", 97.0), (1, "pt-1", "spo2", 130.0), (2, "pt-1", "heart_rate", 5.0),
                    (3, "pt-1", "consciousness", 2.5)], quality=int(Quality.MOTION))

    harness.run([edge.delivery(batch)])

    [plan] = harness.db.plans
    assert plan.vitals_copy is not None
    rows = sorted(parse_copy(plan.vitals_copy))
    assert [(r[2], r[3]) for r in rows] == [
        (97.0, Quality.MOTION),
        (130.0, Quality.MOTION | Quality.IMPLAUSIBLE),
        (5.0, Quality.MOTION | Quality.IMPLAUSIBLE),
        (2.5, Quality.MOTION | Quality.IMPLAUSIBLE),
    ]
    assert rows[0][0] == int(batch.time_us[0]) and rows[0][0] - PG_EPOCH_US > 0


def test_transient_failures_are_retried_with_backoff_and_write_once(harness: Harness, edge: TestEdge) -> None:
    harness.db.transient_failures = 3

    outcomes = harness.run([edge.delivery(ward_batch(6))])

    assert statuses(outcomes) == ["committed"]
    assert harness.db.transactions == 1 and len(harness.db.ingested) == 1
    # Backoff 0.1, 0.2 and 0.4 s (slept in slices of at most 0.2 s, so a stop request is noticed).
    assert [round(s, 3) for s in harness.sleeps if s > 1e-9] == [0.1, 0.2, 0.2, 0.2]


def test_a_stop_while_retrying_leaves_everything_unacknowledged(harness: Harness, edge: TestEdge) -> None:
    harness.db.transient_failures = 100
    harness.stop[0] = True

    with pytest.raises(Stopped):
        harness.run([edge.delivery(ward_batch(6))])
    assert harness.results == [] and harness.db.ingested == {}


def test_a_poison_message_is_dead_lettered_alone_and_its_batch_commits(harness: Harness, edge: TestEdge) -> None:
    harness.db.poison_marker = "POISON"
    good_before = edge.delivery(ward_batch(5))
    poison = edge.delivery(alert(message="POISON"))
    good_after = edge.delivery(alert())

    outcomes = harness.run([good_before, poison, good_after])

    by_delivery = {id(o.delivery): o for o in outcomes}
    assert by_delivery[id(good_before)].status == "committed"
    assert by_delivery[id(good_after)].status == "committed"
    assert by_delivery[id(poison)].status == "rejected"
    entry = by_delivery[id(poison)].entry
    assert entry is not None and (entry.outcome, entry.reason) == ("rejected", "processing_failed")
    [dead] = harness.db.dead
    assert (dead.reason, dead.raw) == ("processing_failed", poison.payload)
    assert len(harness.db.ingested) == 2  # the poison message's claim was rolled back with its transaction


def test_acked_entries_carry_the_envelope_identity(harness: Harness, edge: TestEdge) -> None:
    delivery = edge.delivery(ward_batch(3))
    header = envelope.read_header(delivery.payload)[0]

    [outcome] = harness.run([delivery])

    assert outcome.entry is not None
    assert (outcome.entry.message_id, outcome.entry.sequence, outcome.entry.stream) == (
        header.message_id, header.sequence, "vitals")
