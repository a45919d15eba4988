"""The audit chain in PostgreSQL (`access_log` + `audit_chain_head`): serialised appends, browsing, verification.

Appends take a transaction-scoped advisory lock, so concurrent writers (API replicas, schedulers, the CLI)
extend one linear chain; the lock is held until the caller's transaction ends, so keep audited transactions
short. Rows written before migration 0004 (no hashes) are sealed into the chain by the next append.
An append is two round trips: lock + head + pending rows, then the inserts, the head move and the commit; a
head moved by someone else fails the second one (`audit_chain_advance`, migration 0004), never forks the chain.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection, Connection, errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cloud.audit.chain import (
    GENESIS,
    Break,
    ChainVerifier,
    Draft,
    Entry,
    Head,
    SealedEntry,
    StoredEntry,
    canonical_json,
    seal,
)

log = logging.getLogger(__name__)

AsyncConn = AsyncConnection[Any]
SyncConn = Connection[Any]

# pg_advisory_xact_lock key of the chain (one chain per database); any fixed 64-bit value not used elsewhere.
LOCK_KEY: Final = 0x7E1E_A0D1_7C4A_0001

_COLUMNS = "id, at, user_id, username, event, patient_id, entity, entity_id, detail, ip"
_LOCK = "SELECT pg_advisory_xact_lock(%s)"
# Read after the lock (its own statement, so its snapshot sees every append committed before ours).
_HEAD = (
    "SELECT (SELECT seq FROM audit_chain_head), (SELECT entry_hash FROM audit_chain_head), clock_timestamp(),"
    " ARRAY(SELECT nextval(pg_get_serial_sequence('access_log', 'id')) FROM generate_series(1, %s)),"
    " EXISTS (SELECT 1 FROM access_log WHERE entry_hash IS NOT NULL)"
)
_UNSEALED = (
    f"SELECT {_COLUMNS} FROM access_log"
    " WHERE entry_hash IS NULL AND id > coalesce((SELECT seq FROM audit_chain_head), 0) ORDER BY id"
)
_SEAL = "UPDATE access_log SET prev_hash = %s, entry_hash = %s WHERE id = %s AND entry_hash IS NULL"
_INSERT = (
    "INSERT INTO access_log (id, at, user_id, username, event, patient_id, entity, entity_id, detail, ip,"
    " prev_hash, entry_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_ADVANCE = "SELECT audit_chain_advance(%s, %s, %s, %s)"


class AuditChainError(RuntimeError):
    """The chain cannot be extended safely (its head record is gone, or another writer moved it)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one append writes: seals for pending old rows, new rows, and the head move."""

    seals: list[SealedEntry]
    rows: list[SealedEntry]
    old_head: Head | None
    new_head: Head


def _entry(row: dict[str, Any]) -> Entry:
    return Entry(seq=row["id"], at=row["at"], draft=Draft(
        username=row["username"], event=row["event"], user_id=row["user_id"], patient_id=row["patient_id"],
        entity=row["entity"], entity_id=row["entity_id"], detail=row["detail"] or {}, ip=row["ip"],
    ))


def _plan(head_row: tuple[Any, ...], unsealed: list[dict[str, Any]], drafts: Sequence[Draft]) -> _Plan:
    seq, digest, now, ids, any_sealed = head_row
    old_head = Head(seq=seq, entry_hash=bytes(digest)) if seq is not None else None
    if old_head is None and any_sealed:
        raise AuditChainError("the audit chain head record is missing: run `telemed-cloud audit verify`")
    for draft in drafts:
        canonical_json(dict(draft.detail))  # fail before writing anything
    prev = old_head.entry_hash if old_head is not None else GENESIS
    seals = seal(prev, [_entry(row) for row in unsealed])
    if seals:
        prev = seals[-1].entry_hash
    rows = seal(prev, [Entry(seq=new_id, at=now, draft=draft) for new_id, draft in zip(sorted(ids), drafts,
                                                                                          strict=True)])
    last = (seals + rows)[-1] if seals or rows else None
    new_head = Head(seq=last.entry.seq, entry_hash=last.entry_hash) if last is not None else (
        old_head or Head(seq=0, entry_hash=GENESIS))
    return _Plan(seals=seals, rows=rows, old_head=old_head, new_head=new_head)


def _insert_params(sealed: SealedEntry) -> tuple[Any, ...]:
    entry, draft = sealed.entry, sealed.entry.draft
    return (entry.seq, entry.at, draft.user_id, draft.username, draft.event, draft.patient_id, draft.entity,
            draft.entity_id, Jsonb(dict(draft.detail), dumps=canonical_json), draft.ip, sealed.prev_hash,
            sealed.entry_hash)


def _advance_params(plan: _Plan) -> tuple[Any, ...]:
    old = plan.old_head
    return (old.seq if old else None, old.entry_hash if old else None, plan.new_head.seq, plan.new_head.entry_hash)


_HEAD_MOVED = (errors.SerializationFailure, errors.UniqueViolation)


def _head_moved(exc: Exception) -> AuditChainError:
    return AuditChainError(f"the audit chain head moved during an append (a writer without the lock?): {exc}")


def _log(plan: _Plan) -> None:
    if plan.seals:
        log.info("audit.sealed_pending count=%d up_to=%d", len(plan.seals), plan.seals[-1].entry.seq)
    log.debug("audit.appended count=%d head=%d hash=%s", len(plan.rows), plan.new_head.seq,
              plan.new_head.entry_hash.hex())


async def append(conn: AsyncConn, drafts: Sequence[Draft]) -> list[SealedEntry]:
    """Append `drafts` (in order) to the chain in one transaction (a savepoint inside the caller's)."""
    if not drafts:
        return []
    try:
        async with conn.pipeline(), conn.transaction():
            await conn.execute(_LOCK, (LOCK_KEY,))
            head_cur = await conn.execute(_HEAD, (len(drafts),))
            pending_cur = conn.cursor(row_factory=dict_row)
            await pending_cur.execute(_UNSEALED)
            head_row = await head_cur.fetchone()  # the first round trip ends here
            unsealed = await pending_cur.fetchall()
            assert head_row is not None
            plan = _plan(tuple(head_row), unsealed, drafts)
            async with conn.cursor() as cur:
                if plan.seals:
                    await cur.executemany(_SEAL, [(s.prev_hash, s.entry_hash, s.entry.seq) for s in plan.seals])
                await cur.executemany(_INSERT, [_insert_params(s) for s in plan.rows])
                await cur.execute(_ADVANCE, _advance_params(plan))
            # The commit (or release) goes out with the inserts: the lock is held for two round trips.
    except _HEAD_MOVED as exc:
        raise _head_moved(exc) from None
    _log(plan)
    return plan.rows


def append_sync(conn: SyncConn, drafts: Sequence[Draft]) -> list[SealedEntry]:
    """`append` for synchronous connections (command-line tools, ingest workers)."""
    if not drafts:
        return []
    try:
        with conn.pipeline(), conn.transaction():
            conn.execute(_LOCK, (LOCK_KEY,))
            head_cur = conn.execute(_HEAD, (len(drafts),))
            pending_cur = conn.cursor(row_factory=dict_row)
            pending_cur.execute(_UNSEALED)
            head_row = head_cur.fetchone()
            unsealed = pending_cur.fetchall()
            assert head_row is not None
            plan = _plan(tuple(head_row), unsealed, drafts)
            with conn.cursor() as cur:
                if plan.seals:
                    cur.executemany(_SEAL, [(s.prev_hash, s.entry_hash, s.entry.seq) for s in plan.seals])
                cur.executemany(_INSERT, [_insert_params(s) for s in plan.rows])
                cur.execute(_ADVANCE, _advance_params(plan))
    except _HEAD_MOVED as exc:
        raise _head_moved(exc) from None
    _log(plan)
    return plan.rows


# --- browsing -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of the admin browser; `before` is the keyset cursor (entries with a smaller seq)."""

    patient_id: str | None = None
    user: str | None = None  # a username or a user id
    event: str | None = None  # exact, or a prefix when it ends with "*"
    entity: str | None = None
    entity_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One stored entry with its hash (for display; the chain itself is checked by `verify_log`)."""

    entry: Entry
    entry_hash: bytes | None


def _filters(query: AuditQuery) -> tuple[sql.Composed, dict[str, Any]]:
    clauses: list[sql.Composable] = [sql.SQL("true")]
    params: dict[str, Any] = {"limit": query.limit}
    if query.patient_id is not None:
        clauses.append(sql.SQL("patient_id = %(patient_id)s"))
        params["patient_id"] = query.patient_id
    if query.user is not None:
        try:
            params["user_id"] = uuid.UUID(query.user)
            clauses.append(sql.SQL("user_id = %(user_id)s"))
        except ValueError:
            params["username"] = query.user
            clauses.append(sql.SQL("username = %(username)s"))
    if query.event is not None:
        if query.event.endswith("*"):
            params["event_prefix"] = query.event[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(sql.SQL("event LIKE %(event_prefix)s || '%%'"))
        else:
            params["event"] = query.event
            clauses.append(sql.SQL("event = %(event)s"))
    for name in ("entity", "entity_id"):
        value = getattr(query, name)
        if value is not None:
            params[name] = value
            clauses.append(sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
    if query.since is not None:
        params["since"] = query.since
        clauses.append(sql.SQL("at >= %(since)s"))
    if query.until is not None:
        params["until"] = query.until
        clauses.append(sql.SQL("at < %(until)s"))
    if query.before is not None:
        params["before"] = query.before
        clauses.append(sql.SQL("id < %(before)s"))
    return sql.SQL(" AND ").join(clauses), params


async def search(conn: AsyncConn, query: AuditQuery) -> list[AuditRow]:
    """Entries matching `query`, newest first, at most `query.limit`."""
    where, params = _filters(query)
    statement = sql.SQL("SELECT {}, entry_hash FROM access_log WHERE {} ORDER BY id DESC LIMIT %(limit)s").format(
        sql.SQL(_COLUMNS), where)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(statement, params)
    return [AuditRow(entry=_entry(row), entry_hash=bytes(row["entry_hash"]) if row["entry_hash"] else None)
            for row in await cur.fetchall()]


# --- verification ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of walking the chain: how many entries held, the recorded head, the first break."""

    checked: int
    pending: int
    head: Head | None
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


_READ_HEAD = "SELECT seq, entry_hash FROM audit_chain_head"


def read_head(conn: SyncConn) -> Head | None:
    """The recorded head of the chain (None before the first append)."""
    row = conn.execute(_READ_HEAD).fetchone()
    return Head(seq=row[0], entry_hash=bytes(row[1])) if row is not None else None


async def read_head_async(conn: AsyncConn) -> Head | None:
    """`read_head` for the API."""
    cur = await conn.execute(_READ_HEAD)
    row = await cur.fetchone()
    return Head(seq=row[0], entry_hash=bytes(row[1])) if row is not None else None


def _stored(conn: SyncConn, batch: int) -> Iterator[StoredEntry]:
    # A server-side cursor streams the log in id order without holding it in memory.
    with conn.cursor(name="audit_verify", row_factory=dict_row) as cur:
        cur.itersize = batch
        cur.execute(f"SELECT {_COLUMNS}, prev_hash, entry_hash FROM access_log ORDER BY id")
        for row in cur:
            yield StoredEntry(
                entry=_entry(row),
                prev_hash=bytes(row["prev_hash"]) if row["prev_hash"] is not None else None,
                entry_hash=bytes(row["entry_hash"]) if row["entry_hash"] is not None else None,
            )


def verify_log(conn: SyncConn, *, anchor: Head | None = None, batch: int = 5000) -> VerifyReport:
    """Walk the whole chain in one repeatable-read snapshot; the first break, if any.

    Rows never sealed that sit after the recorded head are pending (the next append seals them), not breaks.
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head = read_head(conn)
        verifier = ChainVerifier(anchor=anchor)
        pending = 0
        for stored in _stored(conn, batch):
            if stored.entry_hash is None and (head is None or stored.entry.seq > head.seq):
                pending += 1
                continue
            if verifier.feed(stored) is not None:
                break
        broken = verifier.finish(head)
    return VerifyReport(checked=verifier.checked, pending=pending, head=head, broken=broken)
