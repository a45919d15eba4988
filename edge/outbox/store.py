"""The outbox's SQLite file: schema, and the statements the writer thread and the readers run.

Single-threaded building blocks with no policy: `OutboxWriter` is used by exactly one thread (the
group-commit writer of edge.outbox.queue), `OutboxReader` by whoever holds its lock. Both are separate
connections to one WAL-mode database, so readers never wait for a commit's fsync.

Durability (docs/edge-outbox.md): a transaction that adds or moves messages commits with
`synchronous=FULL`, which fsyncs the WAL before COMMIT returns, so an acknowledged enqueue survives
kill -9 and power loss. A transaction that only deletes acknowledged messages commits with
`synchronous=NORMAL` (no fsync): losing it to a power cut only makes the edge resend messages the
cloud will answer as duplicates. The next FULL commit fsyncs the WAL file, earlier frames included.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.outbox.errors import OutboxError, OutboxSchemaError
from edge.outbox.lanes import Lane
from proto.topics import Stream

SCHEMA_VERSION: Final = 1
# SQLite waits this long for a lock held by another connection of ours before failing (ms).
_BUSY_TIMEOUT_MS: Final = 10_000
# After a checkpoint the WAL file is truncated back to at most this size, so a drained backlog frees disk.
_JOURNAL_SIZE_LIMIT: Final = 64 * 1024 * 1024
_EVICT_CHUNK: Final = 512

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    -- Commit order; the send cursor walks it. AUTOINCREMENT: ids are never reused, even after the
    -- table drains empty (plain INTEGER PRIMARY KEY restarts at max(id)+1, behind the cursor).
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id BLOB NOT NULL UNIQUE,     -- 16-byte UUID, the unit of acknowledgement
    stream TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    lane INTEGER NOT NULL,
    enqueued_us INTEGER NOT NULL,
    size INTEGER NOT NULL,
    envelope BLOB NOT NULL               -- the sealed, signed envelope exactly as published
);
CREATE INDEX IF NOT EXISTS outbox_lane_id ON outbox (lane, id);
CREATE TABLE IF NOT EXISTS sequences (
    stream TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    message_id BLOB NOT NULL,
    stream TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    lane INTEGER NOT NULL,
    enqueued_us INTEGER NOT NULL,
    dead_at_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    envelope BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A sealed message about to be stored."""

    message_id: uuid.UUID
    stream: Stream
    sequence: int
    lane: Lane
    enqueued_us: int
    envelope: bytes

    @property
    def size(self) -> int:
        return len(self.envelope)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A queued message as read back; `row_id` is its place in commit order."""

    row_id: int
    message_id: uuid.UUID
    stream: Stream
    sequence: int
    lane: Lane
    enqueued_us: int
    size: int
    envelope: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the cloud rejected: kept locally with the reason, never resent."""

    message_id: uuid.UUID
    stream: Stream
    sequence: int
    lane: Lane
    enqueued_us: int
    dead_at_us: int
    reason: str
    envelope: bytes


@dataclass(frozen=True, slots=True)
class LaneUsage:
    messages: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class Removed:
    """A row that left the outbox (acknowledged, dead-lettered or evicted)."""

    lane: Lane
    size: int


@dataclass(frozen=True, slots=True)
class Evicted:
    """The oldest messages of one lane dropped to honour the disk budget."""

    lane: Lane
    messages: int
    bytes: int
    oldest_us: int


def _connect(path: Path) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise OutboxError(f"cannot open outbox {path}: {exc}") from exc
    return conn


def _row_to_message(row: tuple[int, bytes, str, int, int, int, int, bytes]) -> StoredMessage:
    row_id, mid, stream, sequence, lane, enqueued_us, size, envelope = row
    return StoredMessage(row_id, uuid.UUID(bytes=mid), Stream(stream), sequence, Lane(lane), enqueued_us, size,
                         envelope)


class OutboxWriter:
    """The writing connection: schema set-up and every statement that changes the file."""

    def __init__(self, path: Path) -> None:
        self._conn = _connect(path)
        try:
            # Only effective on a new file (before the first table): lets reclaim() return freed pages to the disk.
            self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise OutboxError(f"outbox {path}: cannot enable WAL journal mode (got {mode!r})")
            self._conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
            self._conn.execute("PRAGMA synchronous = FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise OutboxSchemaError(f"outbox {path} has schema {version}; this software knows {SCHEMA_VERSION}")
            self._conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as exc:
            self._conn.close()
            raise OutboxError(f"cannot initialise outbox {path}: {exc}") from exc
        except OutboxError:
            self._conn.close()
            raise
        self._synchronous = "FULL"

    # --- transactions ---------------------------------------------------------------------------------

    def begin(self, *, durable: bool) -> None:
        """Start a write transaction; `durable` selects synchronous=FULL (fsync at commit) over NORMAL."""
        wanted = "FULL" if durable else "NORMAL"
        if wanted != self._synchronous:
            self._conn.execute(f"PRAGMA synchronous = {wanted}")
            self._synchronous = wanted
        self._conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._conn.execute("COMMIT")

    def rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it (idle time and shutdown)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def reclaim(self, min_free_pages: int) -> int:
        """Give free pages back to the file system once at least `min_free_pages` accumulate; returns pages freed."""
        free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
        if free < min_free_pages:
            return 0
        self._conn.execute("PRAGMA incremental_vacuum").fetchall()
        return free

    def close(self) -> None:
        self._conn.close()

    # --- reads the writer needs at start-up -------------------------------------------------------------

    def load_sequences(self) -> dict[Stream, int]:
        rows = self._conn.execute("SELECT stream, last_sequence FROM sequences").fetchall()
        return {Stream(stream): last for stream, last in rows}

    def usage(self) -> dict[Lane, LaneUsage]:
        rows = self._conn.execute("SELECT lane, count(*), coalesce(sum(size), 0) FROM outbox GROUP BY lane")
        found = {Lane(lane): LaneUsage(count, total) for lane, count, total in rows}
        return {lane: found.get(lane, LaneUsage()) for lane in Lane}

    def counters(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT name, value FROM counters").fetchall())

    # --- changes (inside a transaction) ---------------------------------------------------------------

    def insert(self, messages: Sequence[NewMessage]) -> None:
        self._conn.executemany(
            "INSERT INTO outbox (message_id, stream, sequence, lane, enqueued_us, size, envelope)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(m.message_id.bytes, str(m.stream), m.sequence, int(m.lane), m.enqueued_us, m.size, m.envelope)
             for m in messages],
        )

    def save_sequences(self, last: dict[Stream, int]) -> None:
        self._conn.executemany(
            "INSERT INTO sequences (stream, last_sequence) VALUES (?, ?) ON CONFLICT (stream)"
            " DO UPDATE SET last_sequence = max(last_sequence, excluded.last_sequence)",
            [(str(stream), seq) for stream, seq in last.items()],
        )

    def delete(self, message_ids: Iterable[uuid.UUID]) -> list[Removed]:
        """Delete acknowledged messages; ids not (or no longer) queued are skipped."""
        removed = []
        for mid in message_ids:
            row = self._conn.execute("DELETE FROM outbox WHERE message_id = ? RETURNING lane, size",
                                     (mid.bytes,)).fetchone()
            if row is not None:
                removed.append(Removed(Lane(row[0]), row[1]))
        return removed

    def dead_letter(self, message_id: uuid.UUID, reason: str, at_us: int, keep: int) -> Removed | None:
        """Move a rejected message to dead_letters (keeping the newest `keep`); None if it is not queued."""
        row = self._conn.execute(
            "DELETE FROM outbox WHERE message_id = ?"
            " RETURNING stream, sequence, lane, enqueued_us, size, envelope", (message_id.bytes,)).fetchone()
        if row is None:
            return None
        stream, sequence, lane, enqueued_us, size, envelope = row
        cur = self._conn.execute(
            "INSERT INTO dead_letters (message_id, stream, sequence, lane, enqueued_us, dead_at_us, reason, envelope)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (message_id.bytes, stream, sequence, lane, enqueued_us, at_us, reason, envelope))
        if cur.lastrowid is not None and cur.lastrowid > keep:
            self._conn.execute("DELETE FROM dead_letters WHERE id <= ?", (cur.lastrowid - keep,))
        return Removed(Lane(lane), size)

    def evict_oldest(self, lane: Lane, need_bytes: int) -> Evicted | None:
        """Drop the oldest messages of `lane` until at least `need_bytes` are freed (or the lane is empty)."""
        freed = count = 0
        last_id = oldest_us = None
        after = 0
        while freed < need_bytes:
            rows = self._conn.execute(
                "SELECT id, size, enqueued_us FROM outbox WHERE lane = ? AND id > ? ORDER BY id LIMIT ?",
                (int(lane), after, _EVICT_CHUNK)).fetchall()
            if not rows:
                break
            for row_id, size, enqueued_us in rows:
                if oldest_us is None:
                    oldest_us = enqueued_us
                freed += size
                count += 1
                last_id = row_id
                if freed >= need_bytes:
                    break
            after = rows[-1][0]
        if last_id is None or oldest_us is None:
            return None
        self._conn.execute("DELETE FROM outbox WHERE lane = ? AND id <= ?", (int(lane), last_id))
        return Evicted(lane, count, freed, oldest_us)

    def add_counters(self, deltas: dict[str, int]) -> None:
        self._conn.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
            [(name, delta, delta) for name, delta in deltas.items() if delta],
        )


class OutboxReader:
    """A read connection: what to send next, lane heads, dead letters. Sees the last committed state."""

    def __init__(self, path: Path) -> None:
        self._conn = _connect(path)
        try:
            self._conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            self._conn.close()
            raise OutboxError(f"cannot open outbox {path} for reading: {exc}") from exc

    def close(self) -> None:
        self._conn.close()

    def pending(self, lane: Lane, after_row_id: int, limit: int) -> list[StoredMessage]:
        """Up to `limit` queued messages of `lane` committed after `after_row_id`, oldest first."""
        rows = self._conn.execute(
            "SELECT id, message_id, stream, sequence, lane, enqueued_us, size, envelope FROM outbox"
            " WHERE lane = ? AND id > ? ORDER BY id LIMIT ?", (int(lane), after_row_id, limit)).fetchall()
        return [_row_to_message(row) for row in rows]

    def oldest_enqueued_us(self, lane: Lane) -> int | None:
        row = self._conn.execute("SELECT enqueued_us FROM outbox WHERE lane = ? ORDER BY id LIMIT 1",
                                 (int(lane),)).fetchone()
        return None if row is None else int(row[0])

    def contains(self, message_id: uuid.UUID) -> bool:
        row = self._conn.execute("SELECT 1 FROM outbox WHERE message_id = ?", (message_id.bytes,)).fetchone()
        return row is not None

    def message_ids(self) -> list[uuid.UUID]:
        """Every queued message id in send order (lane, then commit order); for tools and tests."""
        rows = self._conn.execute("SELECT message_id FROM outbox ORDER BY lane, id").fetchall()
        return [uuid.UUID(bytes=row[0]) for row in rows]

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT message_id, stream, sequence, lane, enqueued_us, dead_at_us, reason, envelope"
            " FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [DeadLetter(uuid.UUID(bytes=mid), Stream(stream), seq, Lane(lane), enq, dead, reason, env)
                for mid, stream, seq, lane, enq, dead, reason, env in rows]
