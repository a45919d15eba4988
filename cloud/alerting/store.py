"""Incidents in PostgreSQL (migration 0006_alerting): incidents, their alarm messages and timeline, the
delivery log, and the alarm engines' saved state. Async psycopg, shared by the service and the API.

Incident rows are read `FOR UPDATE` by whoever changes them (the service's sweep skips rows locked by an
API request and vice versa), so a page is never sent for an incident being acknowledged at that moment.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cloud.alerting.escalation import Progress
from cloud.alerting.incidents import Actor, Incident, Source, Transition
from cloud.api.auth.scoping import SiteScope, scope_predicate
from proto.messages import Alert
from proto.schema import to_wire

Conn = AsyncConnection[Any]

_INCIDENT_COLUMNS: Final = (
    "incident_id, site_id, edge_id, patient_id, department_id, rule, category, priority, state, alarm_state,"
    " message, device_id, kind, value, news2_total, sources, raised_at, alarm_changed_at, cleared_at, opened_at,"
    " updated_at, acknowledged_at, acknowledged_by, acknowledged_by_name, ack_deadline, resolved_at, resolved_by,"
    " resolved_by_name, resolution, resolve_after, escalation_started_at, escalation_steps, escalation_last_at,"
    " next_page_at"
)
_PLACEHOLDERS: Final = ", ".join(["%s"] * len(_INCIDENT_COLUMNS.split(",")))
_UPSERT_INCIDENT: Final = (
    f"INSERT INTO incidents ({_INCIDENT_COLUMNS}) VALUES ({_PLACEHOLDERS})"
    " ON CONFLICT (incident_id) DO UPDATE SET "
    + ", ".join(f"{c.strip()} = EXCLUDED.{c.strip()}" for c in _INCIDENT_COLUMNS.split(",")[1:])
)


def _actor(user_id: uuid.UUID | None, name: str | None) -> Actor | None:
    if name is None:
        return None
    return Actor(name=name, user_id=user_id)


def incident_from_row(row: dict[str, Any]) -> Incident:
    """An Incident from a dict row of `incidents`."""
    started = row["escalation_started_at"]
    progress = None if started is None else Progress(started, int(row["escalation_steps"]), row["escalation_last_at"])
    return Incident(
        incident_id=row["incident_id"], site_id=row["site_id"], patient_id=row["patient_id"], rule=row["rule"],
        category=row["category"], priority=row["priority"], state=row["state"], alarm_state=row["alarm_state"],
        message=row["message"], raised_at=row["raised_at"], alarm_changed_at=row["alarm_changed_at"],
        opened_at=row["opened_at"], updated_at=row["updated_at"], edge_id=row["edge_id"],
        department_id=row["department_id"], device_id=row["device_id"], kind=row["kind"], value=row["value"],
        news2_total=row["news2_total"], sources=frozenset(row["sources"]),
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=_actor(row["acknowledged_by"], row["acknowledged_by_name"]),
        ack_deadline=row["ack_deadline"], resolved_at=row["resolved_at"],
        resolved_by=_actor(row["resolved_by"], row["resolved_by_name"]), resolution=row["resolution"],
        cleared_at=row["cleared_at"], resolve_after=row["resolve_after"], escalation=progress,
        next_page_at=row["next_page_at"],
    )


def _incident_params(i: Incident) -> tuple[Any, ...]:
    progress = i.escalation
    ack, res = i.acknowledged_by, i.resolved_by
    return (
        i.incident_id, i.site_id, i.edge_id, i.patient_id, i.department_id, i.rule, i.category, i.priority, i.state,
        i.alarm_state, i.message, i.device_id, i.kind, i.value, i.news2_total, sorted(i.sources), i.raised_at,
        i.alarm_changed_at, i.cleared_at, i.opened_at, i.updated_at, i.acknowledged_at,
        ack.user_id if ack else None, ack.name if ack else None, i.ack_deadline, i.resolved_at,
        res.user_id if res else None, res.name if res else None, i.resolution, i.resolve_after,
        progress.started_at if progress else None, progress.steps_taken if progress else 0,
        progress.last_step_at if progress else None, i.next_page_at,
    )


# --- incidents -------------------------------------------------------------------------------------------------


async def get_incident(conn: Conn, incident_id: uuid.UUID, *, for_update: bool = False) -> Incident | None:
    lock = " FOR UPDATE" if for_update else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE incident_id = %s{lock}", (incident_id,))
        row = await cur.fetchone()
    return None if row is None else incident_from_row(row)


async def get_incidents(conn: Conn, incident_ids: Sequence[uuid.UUID], *, for_update: bool = False
                        ) -> dict[uuid.UUID, Incident]:
    """The incidents among `incident_ids` that exist (locked for update, in id order to avoid deadlocks)."""
    if not incident_ids:
        return {}
    lock = " ORDER BY incident_id FOR UPDATE" if for_update else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE incident_id = ANY(%s){lock}",
                          (list(incident_ids),))
        rows = await cur.fetchall()
    return {row["incident_id"]: incident_from_row(row) for row in rows}


async def save_incidents(conn: Conn, incidents: Iterable[Incident]) -> None:
    """Insert or update incidents."""
    rows = [_incident_params(i) for i in incidents]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(_UPSERT_INCIDENT, rows)


async def due_incidents(conn: Conn, now: dt.datetime, *, limit: int = 200) -> list[Incident]:
    """Open incidents with a page, an acknowledgement timeout or an auto-resolve due at `now`, locked
    (rows another transaction holds are skipped: they are being changed right now)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE incident_id IN ("
            " SELECT incident_id FROM incidents WHERE next_page_at <= %(now)s"
            " UNION SELECT incident_id FROM incidents WHERE state = 'acknowledged' AND ack_deadline <= %(now)s"
            " UNION SELECT incident_id FROM incidents WHERE state <> 'resolved' AND resolve_after <= %(now)s)"
            " ORDER BY incident_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED",
            {"now": now, "limit": limit},
        )
        rows = await cur.fetchall()
    return [incident_from_row(row) for row in rows]


async def next_due(conn: Conn) -> dt.datetime | None:
    """The earliest time any timer of an open incident falls due (the sweep can sleep until then)."""
    row = await (await conn.execute(
        "SELECT least((SELECT min(next_page_at) FROM incidents WHERE next_page_at IS NOT NULL),"
        " (SELECT min(ack_deadline) FROM incidents WHERE state = 'acknowledged'),"
        " (SELECT min(resolve_after) FROM incidents WHERE state <> 'resolved'))"
    )).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    """What GET /api/incidents narrows on."""

    state: str | None = None
    priority: str | None = None
    patient_id: str | None = None
    category: str | None = None
    site_id: str | None = None
    before: dt.datetime | None = None
    limit: int = 100


async def list_incidents(conn: Conn, scope: SiteScope, where: IncidentFilter) -> list[Incident]:
    """Incidents of the scope's sites, newest first, narrowed by `where`."""
    clauses = [scope_predicate("site_id")]
    params: dict[str, Any] = {**scope.sql_params(), "limit": where.limit}
    for column, value in (("state", where.state), ("priority", where.priority), ("patient_id", where.patient_id),
                          ("category", where.category), ("site_id", where.site_id)):
        if value is not None:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    if where.before is not None:
        clauses.append("opened_at < %(before)s")
        params["before"] = where.before
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE {' AND '.join(clauses)}"
            " ORDER BY opened_at DESC, incident_id LIMIT %(limit)s", params)
        rows = await cur.fetchall()
    return [incident_from_row(row) for row in rows]


# --- alarm messages and the timeline -----------------------------------------------------------------------------


async def merge_messages(conn: Conn, messages: Sequence[tuple[Alert, Source]]) -> None:
    """Keep every alarm message, merging copies of one message (same alert_id, raised_at, state) from the
    edge and the cloud into one row whose `sources` lists both."""
    rows = [(a.alert_id, a.raised_at, a.state, a.priority, [source], Jsonb(to_wire(a))) for a, source in messages]
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO incident_messages AS m (incident_id, raised_at, state, priority, sources, body)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (incident_id, raised_at, state) DO UPDATE"
            " SET sources = ARRAY(SELECT DISTINCT unnest(m.sources || EXCLUDED.sources) ORDER BY 1)"
            " WHERE NOT m.sources @> EXCLUDED.sources", rows)


async def record_events(conn: Conn, transitions: Iterable[Transition]) -> None:
    """Append transitions (and pages) to the incidents' timeline."""
    rows = [(t.incident_id, t.at, t.event.value, t.from_state,
             t.to_state, t.actor.user_id, t.actor.name, Jsonb(dict(t.detail))) for t in transitions]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO incident_events (incident_id, at, event, from_state, to_state, actor_user_id, actor,"
                " detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)


async def record_page_event(conn: Conn, incident_id: uuid.UUID, *, at: dt.datetime, state: str,
                            detail: dict[str, Any]) -> None:
    """A page (an escalation step) on the timeline."""
    await conn.execute(
        "INSERT INTO incident_events (incident_id, at, event, from_state, to_state, actor, detail)"
        " VALUES (%s, %s, 'page', %s, %s, 'system', %s)", (incident_id, at, state, state, Jsonb(detail)))


async def timeline(conn: Conn, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT event_id, at, event, from_state, to_state, actor_user_id, actor, detail FROM incident_events"
            " WHERE incident_id = %s ORDER BY event_id", (incident_id,))
        return await cur.fetchall()


async def messages(conn: Conn, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT raised_at, state, priority, sources, body, received_at FROM incident_messages"
            " WHERE incident_id = %s ORDER BY raised_at, state", (incident_id,))
        return await cur.fetchall()


# --- the delivery log ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One page on one channel (a row of notification_deliveries)."""

    delivery_id: uuid.UUID
    incident_id: uuid.UUID
    channel_id: uuid.UUID | None
    channel_kind: str
    recipient_id: uuid.UUID | None
    address: str | None
    step: int
    tier: str
    status: str
    attempts: int
    last_error: str | None
    payload: dict[str, Any]
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    finished_at: dt.datetime | None


_DELIVERY_COLUMNS: Final = (
    "delivery_id, incident_id, channel_id, channel_kind, recipient_id, address, step, tier, status, attempts,"
    " last_error, payload, created_at, next_attempt_at, finished_at"
)


async def insert_deliveries(conn: Conn, rows: Sequence[DeliveryRow]) -> None:
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO notification_deliveries ({_DELIVERY_COLUMNS}) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(r.delivery_id, r.incident_id, r.channel_id, r.channel_kind, r.recipient_id, r.address, r.step, r.tier,
              r.status, r.attempts, r.last_error, Jsonb(r.payload), r.created_at, r.next_attempt_at, r.finished_at)
             for r in rows])


async def record_attempt(conn: Conn, delivery_id: uuid.UUID, *, status: str, error: str | None,
                         next_attempt_at: dt.datetime | None, at: dt.datetime) -> None:
    """The outcome of one delivery attempt."""
    await conn.execute(
        "UPDATE notification_deliveries SET attempts = attempts + 1, status = %s, last_error = %s,"
        " next_attempt_at = %s, finished_at = CASE WHEN %s = 'pending' THEN NULL ELSE %s END WHERE delivery_id = %s",
        (status, error, next_attempt_at, status, at, delivery_id))


async def pending_deliveries(conn: Conn, *, limit: int = 1000) -> list[DeliveryRow]:
    """Deliveries not finished yet (resumed after a restart), oldest first."""
    return await _deliveries(conn, "status = 'pending'", {}, "created_at", limit)


async def list_deliveries(conn: Conn, *, scope: SiteScope, incident_id: uuid.UUID | None = None,
                          status: str | None = None, channel_kind: str | None = None,
                          limit: int = 100) -> list[DeliveryRow]:
    """The delivery log, newest first (restricted to incidents of the scope's sites)."""
    clauses = [f"incident_id IN (SELECT incident_id FROM incidents WHERE {scope_predicate('site_id')})"]
    params: dict[str, Any] = dict(scope.sql_params())
    for column, value in (("incident_id", incident_id), ("status", status), ("channel_kind", channel_kind)):
        if value is not None:
            clauses.append(f"{column} = %({column})s")
            params[column] = value
    return await _deliveries(conn, " AND ".join(clauses), params, "created_at DESC", limit)


async def _deliveries(conn: Conn, where: str, params: dict[str, Any], order: str, limit: int) -> list[DeliveryRow]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_DELIVERY_COLUMNS} FROM notification_deliveries WHERE {where}"
                          f" ORDER BY {order} LIMIT %(limit)s", {**params, "limit": limit})
        rows = await cur.fetchall()
    return [DeliveryRow(**row) for row in rows]


# --- alarm engine state ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineState:
    edge_id: str
    site_id: str
    watermark: dt.datetime
    state: bytes


async def save_engine_states(conn: Conn, states: Sequence[EngineState]) -> None:
    if not states:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO alerting_engine_state (edge_id, site_id, watermark, state, saved_at)"
            " VALUES (%s, %s, %s, %s, now()) ON CONFLICT (edge_id) DO UPDATE SET site_id = EXCLUDED.site_id,"
            " watermark = EXCLUDED.watermark, state = EXCLUDED.state, saved_at = now()",
            [(s.edge_id, s.site_id, s.watermark, s.state) for s in states])


async def load_engine_states(conn: Conn) -> list[EngineState]:
    rows = await (await conn.execute(
        "SELECT edge_id, site_id, watermark, state FROM alerting_engine_state ORDER BY edge_id")).fetchall()
    return [EngineState(str(e), str(s), w, bytes(b)) for e, s, w, b in rows]


# --- minute means for the anomaly baselines ---------------------------------------------------------------------


async def minute_means(conn: Conn, patient_ids: Sequence[str], *, since: dt.datetime, until: dt.datetime,
                       kinds: Sequence[int]) -> dict[str, list[tuple[dt.datetime, int, float]]]:
    """(bucket, kind_id, mean) per patient from vitals_1m, oldest first."""
    if not patient_ids:
        return {}
    rows = await (await conn.execute(
        "SELECT patient_id, bucket, kind_id, sum / nullif(count, 0) FROM vitals_1m"
        " WHERE patient_id = ANY(%s) AND kind_id = ANY(%s) AND bucket >= %s AND bucket < %s"
        " ORDER BY patient_id, bucket", (list(patient_ids), list(kinds), since, until))).fetchall()
    out: dict[str, list[tuple[dt.datetime, int, float]]] = {}
    for patient_id, bucket, kind_id, mean in rows:
        if mean is not None:
            out.setdefault(str(patient_id), []).append((bucket, int(kind_id), float(mean)))
    return out
