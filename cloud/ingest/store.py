"""The ingest writer's PostgreSQL adapter: one dedicated connection, one transaction per micro-batch.

Statement order inside a transaction keeps contended row locks short: the dedupe claim first (it must be
known before anything is written), then the bulk COPY and the append-only inserts, and the upserts that
other workers may also be waiting for (patients, devices, rollups, latest values) last, just before COMMIT,
each in key order. Notifications are queued with pg_notify in the same transaction, so listeners hear only
about committed rows.

psycopg errors leave this module as TransientStoreError (retry later) or DataStoreError (the data is at fault).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import errors as pg_errors

from cloud.db.migrate import MigrationError, Mode, storage_mode
from cloud.edges.registry import EdgeRecord
from cloud.ingest.copy_binary import COPY_VITALS_SQL, ROLLUP_STAGE_COLUMNS
from cloud.ingest.errors import DataStoreError, TransientStoreError
from cloud.ingest.plan import DeadLetterRow, IngestedRow, WritePlan
from cloud.settings import DatabaseSettings

log = logging.getLogger(__name__)

_EDGES: Final = "SELECT edge_id, site_id, public_key, status, name FROM edges"

_CLAIM: Final = """
INSERT INTO ingested_messages (message_id, edge_id, stream, sequence, samples)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::int8[], %s::int4[])
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id
"""

_EVENTS: Final = """
INSERT INTO events (event_id, edge_id, event_type, at, body)
SELECT e, ed, t, a, b::jsonb FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[], %s::text[])
    AS u(e, ed, t, a, b)
ON CONFLICT (event_id) DO NOTHING
"""

_ALERTS: Final = """
INSERT INTO edge_alerts (alert_id, edge_id, patient_id, rule, priority, category, state, raised_at, body)
SELECT a, e, p, r, pr, c, s, t, b::jsonb
  FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
              %s::timestamptz[], %s::text[]) AS u(a, e, p, r, pr, c, s, t, b)
ON CONFLICT (alert_id, raised_at, state) DO NOTHING
"""

_MANIFESTS: Final = """
INSERT INTO dicom_manifests AS m (study_instance_uid, edge_id, patient_id, completed_at, body)
SELECT s, e, p, c, b::jsonb FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::text[])
    AS u(s, e, p, c, b)
ON CONFLICT (study_instance_uid) DO UPDATE
   SET edge_id = EXCLUDED.edge_id, patient_id = EXCLUDED.patient_id, completed_at = EXCLUDED.completed_at,
       body = EXCLUDED.body, received_at = now()
 WHERE m.completed_at IS NULL OR m.completed_at <= EXCLUDED.completed_at
"""

_STATUSES: Final = """
INSERT INTO edge_status AS s (edge_id, state, at, body)
SELECT e, st, a, b::jsonb FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[]) AS u(e, st, a, b)
ON CONFLICT (edge_id) DO UPDATE SET state = EXCLUDED.state, at = EXCLUDED.at, body = EXCLUDED.body
 WHERE s.at IS NULL OR s.at <= EXCLUDED.at
"""

_PATIENTS: Final = """
INSERT INTO patients (patient_id, site_id)
SELECT * FROM unnest(%s::text[], %s::text[])
ON CONFLICT (patient_id) DO NOTHING
"""

_DEVICES: Final = """
INSERT INTO devices (device_id, site_id)
SELECT * FROM unnest(%s::text[], %s::text[])
ON CONFLICT (device_id) DO NOTHING
"""

_DEVICE_STATES: Final = """
INSERT INTO devices AS d (device_id, site_id, state, device_type, battery_pct, last_seen_at)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::real[], %s::timestamptz[])
ON CONFLICT (device_id) DO UPDATE
   SET state = EXCLUDED.state,
       device_type = coalesce(EXCLUDED.device_type, d.device_type),
       battery_pct = coalesce(EXCLUDED.battery_pct, d.battery_pct),
       site_id = coalesce(d.site_id, EXCLUDED.site_id),
       last_seen_at = EXCLUDED.last_seen_at
 WHERE d.last_seen_at IS NULL OR d.last_seen_at <= EXCLUDED.last_seen_at
"""

_DEVICE_SEEN: Final = """
UPDATE devices AS d SET last_seen_at = u.t
  FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, t)
 WHERE d.device_id = u.id AND (d.last_seen_at IS NULL OR d.last_seen_at < u.t)
"""

_EDGE_SEEN: Final = """
UPDATE edges AS e SET last_seen_at = u.t
  FROM unnest(%s::text[], %s::timestamptz[]) AS u(id, t)
 WHERE e.edge_id = u.id AND (e.last_seen_at IS NULL OR e.last_seen_at < u.t)
"""

# Rollup increments are COPYed into a per-connection staging table, then merged into the stored aggregates in
# (patient, kind, bucket) order, the same in every worker, so concurrent merges lock rows in one order.
_ROLLUP_STAGE: Final = """
CREATE TEMP TABLE IF NOT EXISTS ingest_rollups (
    width_s integer NOT NULL, bucket timestamptz NOT NULL, kind_id smallint NOT NULL, min float8 NOT NULL,
    max float8 NOT NULL, sum float8 NOT NULL, count bigint NOT NULL, patient_id text NOT NULL
) ON COMMIT DELETE ROWS
"""
_COPY_ROLLUPS: Final = f"COPY ingest_rollups ({', '.join(ROLLUP_STAGE_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
_MERGE_ROLLUP: Final = """
INSERT INTO {table} AS r (bucket, patient_id, kind_id, min, max, sum, count)
SELECT bucket, patient_id, kind_id, min, max, sum, count FROM ingest_rollups
 WHERE width_s = {width} ORDER BY patient_id, kind_id, bucket
ON CONFLICT (patient_id, kind_id, bucket) DO UPDATE
   SET min = least(r.min, EXCLUDED.min), max = greatest(r.max, EXCLUDED.max),
       sum = r.sum + EXCLUDED.sum, count = r.count + EXCLUDED.count
"""
_ROLLUP_TABLES: Final = {60: "vitals_1m", 900: "vitals_15m", 3600: "vitals_1h"}

# The batch's newest sample per (patient, kind) moves vitals_latest forward, never back (a replay of old data
# leaves it alone); times travel as Unix microseconds (exact, no datetime objects). A sample stamped more than
# 5 minutes ahead of the database clock would pin the pair until its time came: it stays out, as in
# telemed_refresh_vitals_latest (migration 0008), which states the same rules.
_LATEST: Final = """
INSERT INTO vitals_latest AS l (patient_id, kind_id, time, value, device_id, quality)
SELECT p, k, t, v, d, q
  FROM unnest(%s::text[], %s::int2[], %s::int8[], %s::float8[], %s::text[], %s::int4[]) AS u(p, k, us, v, d, q)
 CROSS JOIN LATERAL (SELECT timestamptz 'epoch' + us * interval '1 microsecond' AS t) AS c
 WHERE t <= now() + interval '5 minutes'
 ORDER BY p, k
ON CONFLICT (patient_id, kind_id) DO UPDATE
   SET time = EXCLUDED.time, value = EXCLUDED.value, device_id = EXCLUDED.device_id, quality = EXCLUDED.quality
 WHERE EXCLUDED.time > l.time
"""

_NOTIFY: Final = "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS n(c, p)"

_DEAD_LETTERS: Final = """
INSERT INTO dead_letters (topic, edge_id, message_id, reason, detail, raw)
SELECT * FROM unnest(%s::text[], %s::text[], %s::uuid[], %s::text[], %s::text[], %s::bytea[])
"""


def classify(exc: psycopg.Error) -> TransientStoreError | DataStoreError:
    """Whether a database error is about the data (DataError, IntegrityError) or about the database."""
    if isinstance(exc, pg_errors.DataError | pg_errors.IntegrityError):
        return DataStoreError(str(exc).strip())
    return TransientStoreError(f"{type(exc).__name__}: {str(exc).strip()}")


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL characters.
    return text.replace("\x00", "\\x00")


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class PgTransaction:
    """The statements of one ingest transaction."""

    def __init__(self, conn: psycopg.Connection[Any], mode: Mode) -> None:
        self._conn = conn
        self._mode = mode

    def edges(self, edge_ids: Sequence[str]) -> list[EdgeRecord]:
        rows = self._conn.execute(_EDGES + " WHERE edge_id = ANY(%s)", (list(edge_ids),)).fetchall()
        return [EdgeRecord(edge_id=r[0], site_id=r[1], public_key=r[2], status=r[3], name=r[4]) for r in rows]

    def claim(self, rows: Sequence[IngestedRow]) -> set[uuid.UUID]:
        """Record the message ids; the ones that were not there before (the new messages)."""
        if not rows:
            return set()
        cols = _columns([(r.message_id, r.edge_id, r.stream, r.sequence, r.samples) for r in rows], 5)
        return {row[0] for row in self._conn.execute(_CLAIM, cols).fetchall()}

    def apply(self, plan: WritePlan) -> None:
        conn = self._conn
        with conn.cursor() as cur:
            if plan.vitals_copy is not None:
                with cur.copy(COPY_VITALS_SQL) as copy:
                    copy.write(plan.vitals_copy)
            if self._mode == "plain" and plan.rollup_copy is not None:
                with cur.copy(_COPY_ROLLUPS) as copy:
                    copy.write(plan.rollup_copy)
        statements: list[tuple[str, list[list[Any]]]] = []

        def add(sql: str, rows: Sequence[Sequence[Any]], width: int) -> None:
            if rows:
                statements.append((sql, _columns(rows, width)))

        add(_EVENTS, [(e.event_id, e.edge_id, e.event_type, e.at, e.body) for e in plan.events], 5)
        add(_ALERTS, [(a.alert_id, a.edge_id, a.patient_id, a.rule, a.priority, a.category, a.state, a.raised_at,
                       a.body) for a in plan.alerts], 9)
        add(_MANIFESTS, [(m.study_instance_uid, m.edge_id, m.patient_id, m.completed_at, m.body)
                         for m in plan.manifests], 5)
        add(_STATUSES, [(s.edge_id, s.state, s.at, s.body) for s in plan.statuses], 4)
        add(_PATIENTS, plan.patients, 2)
        add(_DEVICES, plan.devices, 2)
        add(_DEVICE_STATES, [(d.device_id, d.site_id, d.state, d.device_type, d.battery_pct, d.seen_at)
                             for d in plan.device_states], 6)
        add(_DEVICE_SEEN, list(plan.device_seen.items()), 2)
        add(_EDGE_SEEN, list(plan.edge_seen.items()), 2)
        if self._mode == "plain" and plan.rollup_copy is not None:
            for rollup in plan.rollups:
                merge = _MERGE_ROLLUP.format(table=_ROLLUP_TABLES[rollup.width_s], width=rollup.width_s)
                statements.append((merge, []))
        add(_LATEST, [(r.patient_id, r.kind_id, r.time_us, r.value, r.device_id, r.quality) for r in plan.latest], 6)
        add(_NOTIFY, plan.notifications, 2)
        if not statements:
            return
        with conn.pipeline(), conn.cursor() as cur:
            for sql, params in statements:
                cur.execute(sql.encode(), params or None)

    def dead_letters(self, rows: Sequence[DeadLetterRow]) -> None:
        if not rows:
            return
        cols = _columns([(_clean(r.topic), _clean(r.edge_id) if r.edge_id else None, r.message_id, r.reason,
                          _clean(r.detail), r.raw) for r in rows], 6)
        self._conn.execute(_DEAD_LETTERS, cols)


class PgIngestStore:
    """A dedicated autocommit connection; `transaction()` wraps one BEGIN..COMMIT."""

    def __init__(self, settings: DatabaseSettings, *, application_name: str = "telemed-ingest") -> None:
        self._settings = settings
        self._application_name = application_name
        self._conn: psycopg.Connection[Any] | None = None
        self._mode: Mode | None = None

    @property
    def mode(self) -> Mode:
        if self._mode is None:
            self._connection()
        assert self._mode is not None
        return self._mode

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self._settings.url, autocommit=True, application_name=self._application_name,
                connect_timeout=max(1, round(self._settings.connect_timeout_s)),
            )
        except psycopg.Error as exc:
            raise TransientStoreError(f"cannot connect to the database: {str(exc).strip()}") from exc
        try:
            self._mode = storage_mode(conn)
            conn.execute(_ROLLUP_STAGE)
        except (MigrationError, psycopg.Error) as exc:
            conn.close()
            raise TransientStoreError(f"database not ready for ingest: {exc}") from exc
        self._conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[PgTransaction]:
        """BEGIN .. COMMIT around the block; rolled back (and the error classified) if anything fails."""
        conn = self._connection()
        try:
            with conn.transaction():
                yield PgTransaction(conn, self.mode)
        except psycopg.Error as exc:
            if conn.broken:
                self.reset()
            raise classify(exc) from exc

    def all_edges(self) -> list[EdgeRecord]:
        """Every registered edge (the registry's source)."""
        try:
            rows = self._connection().execute(_EDGES).fetchall()
        except psycopg.Error as exc:
            raise classify(exc) from exc
        return [EdgeRecord(edge_id=r[0], site_id=r[1], public_key=r[2], status=r[3], name=r[4]) for r in rows]

    def reset(self) -> None:
        """Drop the connection; the next transaction reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                log.debug("ingest.close_failed", exc_info=True)

    def close(self) -> None:
        self.reset()
