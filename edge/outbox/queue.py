"""The durable outbox: a group-committing SQLite queue with priority lanes and a disk budget.

Producers call `enqueue(payload)` from any thread: the outbox assigns the stream's next sequence number,
seals (signs) the envelope, and hands it to one writer thread that commits everything queued since its
last commit in a single transaction (group commit, one fsync for many producers). The returned Future
resolves once the message is durable; a message leaves the outbox only through `acknowledge()` with the
cloud's CommitAck entries (docs/protocol.md, "Delivery: the commit-ack rule") or through eviction under
the disk budget, which drops the oldest messages of the lowest-priority lane first, never alerts, and
tells both the local operator (callback) and the cloud (an outbox_eviction Event and a technical Alert
committed in the same transaction). See docs/edge-outbox.md.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.metrics import Registry
from edge.outbox.errors import OutboxClosedError, OutboxError, OutboxLockedError
from edge.outbox.lanes import EVICTION_ORDER, Lane, lane_of
from edge.outbox.store import (
    DeadLetter,
    Evicted,
    LaneUsage,
    NewMessage,
    OutboxReader,
    OutboxWriter,
    Removed,
    StoredMessage,
)
from edge.settings import OutboxSettings
from proto import envelope
from proto.envelope import Payload
from proto.messages import AckEntry, Alert, Event, OutboxEviction
from proto.topics import Stream
from proto.vitals import from_micros, to_micros

log = logging.getLogger(__name__)
T = TypeVar("T")

# Rule name of the technical alert raised when the disk budget drops data.
EVICTION_RULE: Final = "outbox_eviction"
# Reclaim free pages once this many accumulate (4 KiB pages: 8 MiB), so a drained backlog returns disk.
_VACUUM_FREE_PAGES: Final = 2048


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """Tunables; docs/edge-outbox.md explains each choice."""

    max_bytes: int = 1 << 30  # disk budget for queued envelopes (logical bytes)
    low_watermark: float = 0.9  # eviction frees down to this fraction of max_bytes, so it runs in chunks
    max_batch: int = 1024  # most operations committed in one transaction
    linger_s: float = 0.0  # extra wait for more producers before a commit (alerts never wait)
    eviction_alert_interval_s: float = 300.0  # at most one technical Alert per interval (events: every time)
    dead_letters_kept: int = 10_000

    @classmethod
    def from_settings(cls, settings: OutboxSettings) -> OutboxPolicy:
        return cls(max_bytes=settings.max_bytes, low_watermark=settings.low_watermark, max_batch=settings.max_batch,
                   linger_s=settings.linger_ms / 1000.0,
                   eviction_alert_interval_s=settings.eviction_alert_interval_s,
                   dead_letters_kept=settings.dead_letters_kept)

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or not 0 < self.low_watermark <= 1 or self.max_batch <= 0 or self.linger_s < 0:
            raise ValueError(f"invalid outbox policy: {self}")


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A message that is durable in the outbox."""

    message_id: uuid.UUID
    stream: Stream
    sequence: int
    lane: Lane
    size: int


@dataclass(frozen=True, slots=True)
class AckResult:
    """What one CommitAck did: rows deleted, rows dead-lettered, entries for messages no longer queued."""

    deleted: int = 0
    dead_lettered: int = 0
    unknown: int = 0


@dataclass(frozen=True, slots=True)
class PendingPage:
    """Messages to send next; `last_row_id` is the last row looked at, where a send cursor may move."""

    messages: list[StoredMessage]
    last_row_id: int


@dataclass(frozen=True, slots=True)
class LaneStats:
    depth: int
    bytes: int
    oldest_age_s: float | None


@dataclass(frozen=True, slots=True)
class EvictionReport:
    """Data dropped by one enforcement of the disk budget (the local alert)."""

    at: dt.datetime
    budget_bytes: int
    evicted: tuple[Evicted, ...]
    cloud_alert_id: uuid.UUID | None  # None when the technical alert was rate-limited

    @property
    def messages(self) -> int:
        return sum(e.messages for e in self.evicted)

    @property
    def bytes(self) -> int:
        return sum(e.bytes for e in self.evicted)


# --- operations handed to the writer thread ---------------------------------------------------------------


@dataclass(slots=True)
class _Insert:
    message: NewMessage
    future: Future[Enqueued]


@dataclass(slots=True)
class _Ack:
    entries: tuple[AckEntry, ...]
    future: Future[AckResult]


@dataclass(slots=True)
class _Reserve:
    stream: Stream
    sequence: int
    future: Future[int]


@dataclass(slots=True)
class _Barrier:
    future: Future[None]


_Op = _Insert | _Ack | _Reserve | _Barrier


@dataclass(slots=True)
class _Tx:
    """What one transaction changed, applied to the in-memory view only after COMMIT."""

    inserted: list[NewMessage] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)
    sequences: dict[Stream, int] = field(default_factory=dict)
    ack_results: dict[int, AckResult] = field(default_factory=dict)
    dead_lettered: dict[Lane, int] = field(default_factory=dict)
    evicted: list[Evicted] = field(default_factory=list)
    eviction_alert: uuid.UUID | None = None
    eviction_alert_at: float | None = None  # the rate limit advances only if this transaction commits

    def bump_sequence(self, stream: Stream, sequence: int) -> None:
        self.sequences[stream] = max(sequence, self.sequences.get(stream, 0))


CommitListener = Callable[[frozenset[Lane]], object]
EvictionListener = Callable[[EvictionReport], None]


class Outbox:
    """Durable store-and-forward queue of one edge. Thread-safe; use as a context manager or call close()."""

    def __init__(
        self,
        path: Path,
        *,
        edge_id: str,
        signer: Ed25519PrivateKey,
        policy: OutboxPolicy | None = None,
        on_eviction: EvictionListener | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.path = Path(path)
        self.edge_id = edge_id
        self.policy = policy or OutboxPolicy()
        self._signer = signer
        self._clock = clock
        self._on_eviction = on_eviction
        self._lock_fd = _lock_file(self.path)
        try:
            self._writer = OutboxWriter(self.path)
            self._reader = OutboxReader(self.path)
        except OutboxError:
            os.close(self._lock_fd)
            raise
        self._read_lock = threading.Lock()
        self._cond = threading.Condition()
        self._ops: list[_Op] = []
        self._urgent = False
        self._closing = False
        self._last: dict[Stream, int] = self._writer.load_sequences()
        self._usage: dict[Lane, LaneUsage] = self._writer.usage()
        self._totals: dict[str, int] = self._writer.counters()
        self._acked_pending: set[uuid.UUID] = set()
        self._listeners: list[CommitListener] = []
        self._last_eviction_alert: float | None = None
        self.commits = 0  # transactions committed by the writer (group commit: far fewer than operations)
        self._thread = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._thread.start()
        log.info("outbox.opened", extra={"path": str(self.path), "messages": self.depth(),
                                         "bytes": self.total_bytes()})

    # --- producers ----------------------------------------------------------------------------------------

    def enqueue(
        self, payload: Payload, *, message_id: uuid.UUID | None = None, created_at: dt.datetime | None = None
    ) -> Future[Enqueued]:
        """Seal `payload` with its stream's next sequence number and queue it; the Future resolves when durable.

        Raises LaneError for payloads that never go through the outbox (status, downlink) and
        proto.schema.ValidationError for invalid payloads, before anything is queued.
        """
        stream = envelope.payload_type_of(payload).stream
        lane = lane_of(stream)
        message_id = message_id or uuid.uuid4()
        created_at = created_at or self._clock()
        future: Future[Enqueued] = _future()
        with self._cond:
            self._check_open()
            sequence = self._last.get(stream, 0) + 1
            sealed = envelope.seal(payload, edge_id=self.edge_id, sequence=sequence, signer=self._signer,
                                   message_id=message_id, created_at=created_at)
            self._last[stream] = sequence
            message = NewMessage(message_id, stream, sequence, lane, to_micros(self._clock()), sealed)
            op = _Insert(message, future)
            self._submit(op, urgent=_is_urgent(op))
        return future

    def reserve_sequence(self, stream: Stream) -> Future[int]:
        """Durably take the next sequence number of `stream` for a message sent outside the outbox (status)."""
        future: Future[int] = _future()
        with self._cond:
            self._check_open()
            sequence = self._last.get(stream, 0) + 1
            self._last[stream] = sequence
            self._submit(_Reserve(stream, sequence, future), urgent=True)
        return future

    def acknowledge(self, entries: Iterable[AckEntry]) -> Future[AckResult]:
        """Apply CommitAck entries: committed/duplicate delete the message, rejected moves it to dead letters."""
        batch = tuple(entries)
        future: Future[AckResult] = _future()
        with self._cond:
            self._check_open()
            self._acked_pending.update(e.message_id for e in batch)
            self._submit(_Ack(batch, future), urgent=False)
        return future

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything submitted before this call is committed (or failed)."""
        future: Future[None] = _future()
        with self._cond:
            self._check_open()
            self._submit(_Barrier(future), urgent=True)
        future.result(timeout)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call `listener(lanes)` on the writer thread after each commit that added messages (keep it quick)."""
        with self._cond:
            self._listeners.append(listener)

    # --- readers ------------------------------------------------------------------------------------------

    def pending(self, lane: Lane, *, after_row_id: int = 0, limit: int = 100) -> PendingPage:
        """Up to `limit` committed rows of `lane` after `after_row_id`, oldest first, minus those being acked."""
        with self._read_lock:
            rows = self._read(lambda r: r.pending(lane, after_row_id, limit))
        last = rows[-1].row_id if rows else after_row_id
        acked = self._acked_pending
        return PendingPage([m for m in rows if m.message_id not in acked] if acked else rows, last)

    def contains(self, message_id: uuid.UUID) -> bool:
        with self._read_lock:
            return self._read(lambda r: r.contains(message_id))

    def message_ids(self) -> list[uuid.UUID]:
        with self._read_lock:
            return self._read(lambda r: r.message_ids())

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self._read_lock:
            return self._read(lambda r: r.dead_letters(limit))

    def depth(self, lane: Lane | None = None) -> int:
        with self._cond:
            return sum(u.messages for ln, u in self._usage.items() if lane is None or ln is lane)

    def total_bytes(self) -> int:
        with self._cond:
            return sum(u.bytes for u in self._usage.values())

    def stats(self) -> dict[Lane, LaneStats]:
        """Depth, bytes and age of the oldest message of each lane."""
        with self._cond:
            usage = dict(self._usage)
        now_us = to_micros(self._clock())
        with self._read_lock:
            oldest = self._read(lambda r: {lane: r.oldest_enqueued_us(lane) for lane in Lane})
        return {
            lane: LaneStats(usage[lane].messages, usage[lane].bytes,
                            None if oldest[lane] is None else max(0.0, (now_us - (oldest[lane] or 0)) / 1e6))
            for lane in Lane
        }

    def totals(self) -> dict[str, int]:
        """Lifetime counters kept in the file: evicted_messages:<lane>, evicted_bytes:<lane>, dead_lettered:<lane>."""
        with self._cond:
            return dict(self._totals)

    def register_metrics(self, registry: Registry) -> None:
        """Expose depth, bytes and oldest age per lane, evicted and dead-lettered totals (Prometheus)."""
        depth = registry.gauge("telemed_outbox_depth", "Messages queued in the outbox", ("lane",))
        size = registry.gauge("telemed_outbox_bytes", "Bytes of sealed envelopes queued", ("lane",))
        age = registry.gauge("telemed_outbox_oldest_age_seconds", "Age of the oldest queued message", ("lane",))
        file_bytes = registry.gauge("telemed_outbox_file_bytes", "Size of the outbox database and WAL files")
        evicted = registry.counter("telemed_outbox_evicted_messages_total",
                                   "Messages dropped by the disk budget (lifetime)", ("lane",))
        evicted_b = registry.counter("telemed_outbox_evicted_bytes_total",
                                     "Bytes dropped by the disk budget (lifetime)", ("lane",))
        dead = registry.counter("telemed_outbox_dead_lettered_total",
                                "Messages the cloud rejected, kept as dead letters (lifetime)", ("lane",))

        def collect() -> None:
            totals = self.totals()
            for lane, st in self.stats().items():
                depth.set(st.depth, lane=lane.label)
                size.set(st.bytes, lane=lane.label)
                if st.oldest_age_s is None:
                    age.remove(lane=lane.label)
                else:
                    age.set(st.oldest_age_s, lane=lane.label)
                evicted.set_total(totals.get(f"evicted_messages:{lane.label}", 0), lane=lane.label)
                evicted_b.set_total(totals.get(f"evicted_bytes:{lane.label}", 0), lane=lane.label)
                dead.set_total(totals.get(f"dead_lettered:{lane.label}", 0), lane=lane.label)
            file_bytes.set(sum(p.stat().st_size for p in _db_files(self.path) if p.exists()))

        registry.add_collector(collect)

    # --- lifecycle ----------------------------------------------------------------------------------------

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, checkpoint the WAL and release the file."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._read_lock:
            self._reader.close()
        os.close(self._lock_fd)
        log.info("outbox.closed", extra={"path": str(self.path), "messages": self.depth()})

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closing:
            raise OutboxClosedError(f"outbox {self.path} is closed")

    def _submit(self, op: _Op, *, urgent: bool) -> None:  # caller holds self._cond
        self._ops.append(op)
        self._urgent = self._urgent or urgent
        self._cond.notify()

    def _read(self, query: Callable[[OutboxReader], T]) -> T:
        try:
            return query(self._reader)
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox read failed: {exc}") from exc

    def _take(self, limit: int) -> list[_Op]:
        batch, self._ops = self._ops[:limit], self._ops[limit:]
        self._urgent = any(_is_urgent(op) for op in self._ops)
        return batch

    def _linger(self) -> None:
        """Wait up to linger_s for more operations to join the batch, unless something urgent is queued."""
        deadline = time.monotonic() + self.policy.linger_s
        while not self._urgent and not self._closing and len(self._ops) < self.policy.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _run(self) -> None:
        policy = self.policy
        while True:
            with self._cond:
                while not self._ops and not self._closing:
                    self._cond.wait()
                if not self._ops:
                    break
                if policy.linger_s > 0:
                    self._linger()
                batch = self._take(policy.max_batch)
            self._process(batch)
            with self._cond:
                idle = not self._ops
            if idle:
                self._reclaim_space()
        try:
            self._writer.checkpoint()
        except sqlite3.Error as exc:
            log.warning("outbox.checkpoint_failed", extra={"error": str(exc)})
        self._writer.close()

    def _process(self, ops: list[_Op]) -> None:
        ops = list(ops)  # _commit extends it with operations drained during an eviction
        try:
            tx = self._commit(ops)
        except sqlite3.IntegrityError as exc:
            if len(ops) > 1:
                # One bad operation (a reused message id) must not fail everyone else's enqueue.
                for op in ops:
                    self._process([op])
                return
            self._fail(ops, OutboxError(f"outbox rejected the operation: {exc}"))
            return
        except sqlite3.Error as exc:
            log.error("outbox.commit_failed", extra={"error": str(exc), "operations": len(ops)})
            self._fail(ops, OutboxError(f"outbox commit failed: {exc}"))
            return
        except Exception as exc:
            # A bug must fail this batch's callers, not kill the writer and hang every later enqueue.
            log.exception("outbox.batch_failed", extra={"operations": len(ops)})
            self._fail(ops, OutboxError(f"outbox batch failed: {exc!r}"))
            return
        self._publish(tx, ops)

    def _commit(self, ops: list[_Op]) -> _Tx:
        """Run `ops` in one transaction; after an eviction, `ops` is extended with everything queued meanwhile."""
        tx = _Tx()
        durable = any(not isinstance(op, _Ack) or any(e.outcome == "rejected" for e in op.entries) for op in ops)
        self._writer.begin(durable=durable)
        try:
            self._apply(ops, tx)
            if tx.inserted:
                overflow = self._projected_bytes(tx) - self.policy.max_bytes
                if overflow > 0:
                    ops.extend(self._evict(tx))
            self._writer.save_sequences(tx.sequences)
            self._writer.add_counters(_counter_deltas(tx))
            self._writer.commit()
        except BaseException:
            self._writer.rollback()
            raise
        return tx

    def _apply(self, ops: Iterable[_Op], tx: _Tx) -> None:
        inserts = [op.message for op in ops if isinstance(op, _Insert)]
        if inserts:
            self._writer.insert(inserts)
            tx.inserted.extend(inserts)
            for m in inserts:
                tx.bump_sequence(m.stream, m.sequence)
        now_us = to_micros(self._clock())
        for op in ops:
            if isinstance(op, _Reserve):
                tx.bump_sequence(op.stream, op.sequence)
            elif isinstance(op, _Ack):
                tx.ack_results[id(op)] = self._apply_ack(op.entries, tx, now_us)

    def _apply_ack(self, entries: tuple[AckEntry, ...], tx: _Tx, now_us: int) -> AckResult:
        done = [e.message_id for e in entries if e.outcome in ("committed", "duplicate")]
        removed = self._writer.delete(done)
        tx.removed.extend(removed)
        dead = 0
        for entry in entries:
            if entry.outcome != "rejected":
                continue
            gone = self._writer.dead_letter(entry.message_id, entry.reason or "rejected", now_us,
                                            self.policy.dead_letters_kept)
            if gone is not None:
                dead += 1
                tx.removed.append(gone)
                tx.dead_lettered[gone.lane] = tx.dead_lettered.get(gone.lane, 0) + 1
                log.warning("outbox.dead_lettered", extra={"message_id": str(entry.message_id),
                                                          "stream": str(entry.stream), "sequence": entry.sequence,
                                                          "reason": entry.reason})
        return AckResult(deleted=len(removed), dead_lettered=dead, unknown=len(entries) - len(removed) - dead)

    def _projected_bytes(self, tx: _Tx) -> int:
        with self._cond:
            current = sum(u.bytes for u in self._usage.values())
        return current + sum(m.size for m in tx.inserted) - sum(r.size for r in tx.removed) \
            - sum(e.bytes for e in tx.evicted)

    def _evict(self, tx: _Tx) -> list[_Op]:
        """Drop the oldest lowest-priority data down to the low watermark; queue the notices in this transaction.

        Returns the operations drained from the queue so that the notices' sequence numbers follow every
        sequence number already handed out (per-stream order is commit order).
        """
        need = self._projected_bytes(tx) - int(self.policy.max_bytes * self.policy.low_watermark)
        evicted = []
        for lane in EVICTION_ORDER:
            if need <= 0:
                break
            done = self._writer.evict_oldest(lane, need)
            if done is not None:
                evicted.append(done)
                need -= done.bytes
        if not evicted:
            log.error("outbox.over_budget", extra={"bytes": self._projected_bytes(tx),
                                                   "budget": self.policy.max_bytes, "note": "only alerts queued"})
            return []
        tx.evicted.extend(evicted)
        now = time.monotonic()
        interval = self.policy.eviction_alert_interval_s
        with self._cond:
            drained = self._take(len(self._ops))
            alert = self._last_eviction_alert is None or now - self._last_eviction_alert >= interval
            notices: list[Payload] = [self._eviction_event(e) for e in evicted]
            if alert:
                notice = self._eviction_alert(evicted)
                tx.eviction_alert, tx.eviction_alert_at = notice.alert_id, now
                notices.append(notice)
            sealed = []
            for payload in notices:
                stream = envelope.payload_type_of(payload).stream
                sequence = self._last.get(stream, 0) + 1
                self._last[stream] = sequence
                mid = uuid.uuid4()
                raw = envelope.seal(payload, edge_id=self.edge_id, sequence=sequence, signer=self._signer,
                                    message_id=mid)
                sealed.append(NewMessage(mid, stream, sequence, lane_of(stream), to_micros(self._clock()), raw))
        self._apply(drained, tx)
        self._writer.insert(sealed)
        tx.inserted.extend(sealed)
        for m in sealed:
            tx.bump_sequence(m.stream, m.sequence)
        for e in evicted:
            log.warning("outbox.evicted", extra={"lane": e.lane.label, "messages": e.messages, "bytes": e.bytes,
                                                "oldest": from_micros(e.oldest_us).isoformat()})
        return drained

    def _eviction_event(self, evicted: Evicted) -> Event:
        return Event(event_id=uuid.uuid4(), event_type="outbox_eviction", at=self._clock(),
                     outbox_eviction=OutboxEviction(lane=evicted.lane.label, messages=evicted.messages,
                                                    bytes=evicted.bytes, oldest=from_micros(evicted.oldest_us)))

    def _eviction_alert(self, evicted: list[Evicted]) -> Alert:
        parts = ", ".join(f"{e.messages} {e.lane.label} messages ({e.bytes} bytes)" for e in evicted)
        oldest = min(e.oldest_us for e in evicted)
        return Alert(
            alert_id=uuid.uuid4(), patient_id=edge_subject(self.edge_id), rule=EVICTION_RULE, priority="medium",
            category="technical", state="active", raised_at=self._clock(),
            message=f"outbox disk budget of {self.policy.max_bytes} bytes exceeded: dropped {parts}, "
                    f"oldest queued {from_micros(oldest).isoformat()}",
        )

    def _publish(self, tx: _Tx, ops: list[_Op]) -> None:
        """After COMMIT: update the in-memory view, resolve futures, tell listeners."""
        self.commits += 1
        with self._cond:
            usage = {lane: [u.messages, u.bytes] for lane, u in self._usage.items()}
            for m in tx.inserted:
                usage[m.lane][0] += 1
                usage[m.lane][1] += m.size
            for r in tx.removed:
                usage[r.lane][0] -= 1
                usage[r.lane][1] -= r.size
            for e in tx.evicted:
                usage[e.lane][0] -= e.messages
                usage[e.lane][1] -= e.bytes
            self._usage = {lane: LaneUsage(n, b) for lane, (n, b) in usage.items()}
            for name, delta in _counter_deltas(tx).items():
                self._totals[name] = self._totals.get(name, 0) + delta
            for op in ops:
                if isinstance(op, _Ack):
                    self._acked_pending.difference_update(e.message_id for e in op.entries)
            if tx.eviction_alert_at is not None:
                self._last_eviction_alert = tx.eviction_alert_at
            listeners = list(self._listeners)
        for op in ops:
            if isinstance(op, _Insert):
                m = op.message
                op.future.set_result(Enqueued(m.message_id, m.stream, m.sequence, m.lane, m.size))
            elif isinstance(op, _Ack):
                op.future.set_result(tx.ack_results[id(op)])
            elif isinstance(op, _Reserve):
                op.future.set_result(op.sequence)
            else:
                op.future.set_result(None)
        lanes = frozenset(m.lane for m in tx.inserted)
        if lanes:
            for listener in listeners:
                try:
                    listener(lanes)
                except Exception:
                    log.exception("outbox.listener_failed")
        if tx.evicted and self._on_eviction is not None:
            report = EvictionReport(self._clock(), self.policy.max_bytes, tuple(tx.evicted), tx.eviction_alert)
            try:
                self._on_eviction(report)
            except Exception:
                log.exception("outbox.eviction_listener_failed")

    def _fail(self, ops: list[_Op], error: OutboxError) -> None:
        with self._cond:
            for op in ops:
                if isinstance(op, _Ack):
                    self._acked_pending.difference_update(e.message_id for e in op.entries)
        for op in ops:
            op.future.set_exception(error)

    def _reclaim_space(self) -> None:
        try:
            self._writer.reclaim(_VACUUM_FREE_PAGES)
        except sqlite3.Error as exc:
            log.warning("outbox.vacuum_failed", extra={"error": str(exc)})


def _future() -> Future[T]:
    """A Future in the running state: callers can wait on it but not cancel it (the writer resolves it)."""
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()
    return future


def _is_urgent(op: _Op) -> bool:
    """Alerts, sequence reservations and flushes are committed without lingering."""
    return isinstance(op, _Reserve | _Barrier) or (isinstance(op, _Insert) and op.message.lane is Lane.ALERTS)


def edge_subject(edge_id: str) -> str:
    """The pseudonymous subject of edge-level technical alerts (Alert.patient_id is required): `edge:<id>`."""
    return f"edge:{edge_id}"[:64]


def _counter_deltas(tx: _Tx) -> dict[str, int]:
    deltas: dict[str, int] = {}
    for e in tx.evicted:
        deltas[f"evicted_messages:{e.lane.label}"] = deltas.get(f"evicted_messages:{e.lane.label}", 0) + e.messages
        deltas[f"evicted_bytes:{e.lane.label}"] = deltas.get(f"evicted_bytes:{e.lane.label}", 0) + e.bytes
    for lane, n in tx.dead_lettered.items():
        deltas[f"dead_lettered:{lane.label}"] = n
    return deltas


def _db_files(path: Path) -> tuple[Path, ...]:
    return path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def _lock_file(path: Path) -> int:
    """Hold an exclusive lock next to the database for the outbox's lifetime (released by the kernel on exit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutboxLockedError(f"outbox {path} is in use by another process") from None
    return fd

