"""The ingest service layer: a micro-batch of deliveries in, one committed transaction (or several) out.

Per transaction: read the rows of the publishing edges (so a revocation committed before is honoured),
verify every delivery, claim the message ids (duplicates are acknowledged and add nothing), write the new
messages' rows, dead-letter the rejected, commit; then the caller publishes acks and releases the MQTT
messages. Failures:
- a transient database failure rolls back and retries the same batch with backoff, forever (nothing is
  acknowledged meanwhile, so nothing is lost; a stop request ends the waiting);
- a failure attributable to the data splits the batch into single messages; a message that still fails
  `poison_attempts` times alone is dead-lettered by itself as `processing_failed`, so it cannot block others.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Protocol

from cloud.db.migrate import Mode
from cloud.edges.registry import EdgeRecord, EdgeRegistry
from cloud.ingest.acks import Outcome, Status
from cloud.ingest.errors import DataStoreError, ProcessingError, Stopped, TransientStoreError
from cloud.ingest.intake import (
    Accepted,
    DeadLetterReason,
    Delivery,
    Rejected,
    open_delivery,
    reject,
    topic_edge,
)
from cloud.ingest.plan import DeadLetterRow, IngestedRow, WritePlan, build_plan, dead_letter_rows, ingested_rows
from proto.envelope import EnvelopeRejected, read_header
from proto.messages import AckEntry

log = logging.getLogger(__name__)


class Transaction(Protocol):
    """The writes of one ingest transaction (port; cloud.ingest.store has the PostgreSQL adapter)."""

    def edges(self, edge_ids: Sequence[str]) -> list[EdgeRecord]: ...

    def claim(self, rows: Sequence[IngestedRow]) -> set[uuid.UUID]: ...

    def apply(self, plan: WritePlan) -> None: ...

    def dead_letters(self, rows: Sequence[DeadLetterRow]) -> None: ...


class Store(Protocol):
    """Runs transactions; raises TransientStoreError or DataStoreError out of `transaction()`."""

    @property
    def mode(self) -> Mode: ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts, capped."""

    initial_s: float = 0.1
    maximum_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts failures, from 1)."""
        return float(min(self.maximum_s, self.initial_s * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class CommitResult:
    """One committed transaction: what happened to each delivery in it."""

    outcomes: list[Outcome]
    samples: int = 0
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass
class TouchThrottle:
    """Limits `last_seen_at` updates of a device or edge to one per interval per worker (hot rows)."""

    interval_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)

    def due(self, seen: dict[str, dt.datetime]) -> dict[str, dt.datetime]:
        now = self.clock()
        return {key: when for key, when in seen.items() if now - self._last.get(key, -1e18) >= self.interval_s}

    def done(self, keys: Sequence[str]) -> None:
        now = self.clock()
        for key in keys:
            self._last[key] = now
        if len(self._last) > 100_000:  # forget the oldest half: a bound, not a cache policy
            for key in sorted(self._last, key=self._last.__getitem__)[: len(self._last) // 2]:
                del self._last[key]


class Pipeline:
    """Writes micro-batches exactly once; `on_commit` is called after each commit (acks go out there)."""

    def __init__(
        self,
        store: Store,
        registry: EdgeRegistry,
        *,
        retry: RetryPolicy | None = None,
        poison_attempts: int = 3,
        should_stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._registry = registry
        self._retry = retry or RetryPolicy()
        self._poison_attempts = poison_attempts
        self._should_stop = should_stop
        self._sleep = sleep
        self._clock = clock
        self._devices_touched = TouchThrottle(10.0, clock)
        self._edges_touched = TouchThrottle(5.0, clock)

    def process(self, deliveries: Sequence[Delivery], on_commit: Callable[[CommitResult], None]) -> None:
        """Write the deliveries; raises Stopped if a stop was requested while waiting to retry."""
        if deliveries:
            self._process(list(deliveries), on_commit)

    # -- retry and poison handling ---------------------------------------------------------------------------

    def _process(self, deliveries: list[Delivery], on_commit: Callable[[CommitResult], None]) -> None:
        transient = 0
        failures = 0
        while True:
            try:
                result = self._write(deliveries)
            except TransientStoreError as exc:
                transient += 1
                log.warning("ingest.transient_failure messages=%d attempt=%d error=%s", len(deliveries),
                            transient, exc)
                self._store.reset()
                self._wait(self._retry.delay(transient))
                continue
            except Stopped:
                raise
            except Exception as exc:  # DataStoreError, ProcessingError, or a failure nobody foresaw
                if len(deliveries) > 1:
                    log.warning("ingest.batch_split messages=%d error=%s", len(deliveries), exc)
                    for delivery in deliveries:
                        self._process([delivery], on_commit)
                    return
                failures += 1
                log.warning("ingest.message_failed topic=%s attempt=%d error=%s", deliveries[0].topic, failures, exc)
                if failures >= self._poison_attempts:
                    self._dead_letter_poison(deliveries[0], str(exc), on_commit)
                    return
                self._wait(self._retry.delay(failures))
                continue
            on_commit(result)
            return

    def _wait(self, seconds: float) -> None:
        deadline = self._clock() + seconds
        while True:
            if self._should_stop():
                raise Stopped("stop requested while waiting to retry")
            left = deadline - self._clock()
            if left <= 0:
                return
            self._sleep(min(left, 0.2))

    def _dead_letter_poison(self, delivery: Delivery, detail: str, on_commit: Callable[[CommitResult], None]) -> None:
        transient = 0
        while True:
            try:
                with self._store.transaction() as tx:
                    self._observe(tx, [delivery])
                    try:
                        header = read_header(delivery.payload)[0]
                    except EnvelopeRejected:
                        header = None
                    rejected = reject(delivery, DeadLetterReason.PROCESSING_FAILED, detail, header, self._registry)
                    tx.dead_letters(dead_letter_rows([rejected]))
            except (TransientStoreError, DataStoreError) as exc:
                transient += 1
                log.warning("ingest.dead_letter_failed attempt=%d error=%s", transient, exc)
                self._store.reset()
                self._wait(self._retry.delay(transient))
                continue
            log.error("ingest.poison_message topic=%s message_id=%s detail=%s", delivery.topic,
                      rejected.message_id, detail)
            on_commit(CommitResult([_rejected_outcome(rejected)]))
            return

    # -- one transaction ------------------------------------------------------------------------------------------

    def _observe(self, tx: Transaction, deliveries: Sequence[Delivery]) -> None:
        edge_ids = sorted({where[1] for d in deliveries if (where := topic_edge(d.topic)) is not None})
        if edge_ids:
            self._registry.observe(edge_ids, tx.edges(edge_ids))

    def _write(self, deliveries: list[Delivery]) -> CommitResult:
        started = self._clock()
        with self._store.transaction() as tx:
            self._observe(tx, deliveries)
            try:
                opened = [open_delivery(d, self._registry) for d in deliveries]
            except Exception as exc:  # a bug or an input our checks missed: find and isolate the message
                raise ProcessingError(f"verification failed: {type(exc).__name__}: {exc}") from exc
            unique = _first_of_each(opened)
            rejected = [r for r in opened if isinstance(r, Rejected)]
            new_ids = tx.claim(ingested_rows(unique))
            new = [m for m in unique if m.message_id in new_ids]
            try:
                plan = build_plan(new, rollups=self._store.mode == "plain")
            except Exception as exc:
                raise ProcessingError(f"building rows failed: {type(exc).__name__}: {exc}") from exc
            device_seen = self._devices_touched.due(plan.device_seen)
            edge_seen = self._edges_touched.due(plan.edge_seen)
            tx.apply(replace(plan, device_seen=device_seen, edge_seen=edge_seen))
            tx.dead_letters(dead_letter_rows(rejected))
        self._devices_touched.done(list(device_seen))
        self._edges_touched.done(list(edge_seen))
        for r in rejected:
            log.warning("ingest.rejected topic=%s edge=%s message_id=%s reason=%s detail=%s", r.delivery.topic,
                        r.topic_edge, r.message_id, r.reason, r.detail)
        return CommitResult(_outcomes(opened, new_ids), plan.samples, self._clock() - started)


def _first_of_each(opened: list[Accepted | Rejected]) -> list[Accepted]:
    """The first accepted delivery of each message id (a message may be redelivered within one batch)."""
    seen: set[uuid.UUID] = set()
    unique: list[Accepted] = []
    for message in opened:
        if isinstance(message, Accepted) and message.message_id not in seen:
            seen.add(message.message_id)
            unique.append(message)
    return unique


def _entry(message: Accepted, status: Status) -> AckEntry:
    return AckEntry(message.message_id, message.stream, message.envelope.sequence, status)


def _rejected_outcome(rejected: Rejected) -> Outcome:
    header = rejected.header
    entry = None
    if header is not None:
        entry = AckEntry(header.message_id, header.payload_type.stream, header.sequence, "rejected",
                         rejected.reason.value)
    return Outcome(rejected.delivery, "rejected", rejected.target if entry is not None else None, entry)


def _outcomes(opened: list[Accepted | Rejected], new_ids: set[uuid.UUID]) -> list[Outcome]:
    """Outcomes in delivery order: the first copy of a new message is committed, any other copy a duplicate."""
    outcomes: list[Outcome] = []
    counted: set[uuid.UUID] = set()
    for message in opened:
        if isinstance(message, Rejected):
            outcomes.append(_rejected_outcome(message))
            continue
        status: Status = "committed" if message.message_id in new_ids and message.message_id not in counted else (
            "duplicate")
        counted.add(message.message_id)
        outcomes.append(Outcome(message.delivery, status, message.target, _entry(message, status)))
    return outcomes
