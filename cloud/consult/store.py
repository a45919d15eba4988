"""SQL for consultations (the tables of migration 0005_consult.sql): rows in, typed rows out."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from cloud.api.auth.models import Role, User
from cloud.api.auth.store import Conn


@dataclass(frozen=True, slots=True)
class ConsultationRow:
    consultation_id: uuid.UUID
    patient_id: str
    site_id: str
    requester_id: uuid.UUID
    state: str
    urgency: str
    specialty: str | None
    icd10_codes: list[str]
    language: str
    chief_complaint: str
    clinical_notes: str
    question: str
    triage: dict[str, Any] | None
    vitals_snapshot: dict[str, Any] | None
    news2: dict[str, Any] | None
    assigned_expert_id: uuid.UUID | None
    rating: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    requested_at: dt.datetime | None
    accepted_at: dt.datetime | None
    session_started_at: dt.datetime | None
    report_submitted_at: dt.datetime | None
    closed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    escalated_at: dt.datetime | None
    breached_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class OfferRow:
    offer_id: uuid.UUID
    consultation_id: uuid.UUID
    expert_id: uuid.UUID
    expert_name: str
    rank: int | None
    score: float | None
    method: str
    factors: dict[str, Any]
    explanation: dict[str, Any]
    offered_at: dt.datetime
    reminded_at: dt.datetime | None
    responded_at: dt.datetime | None
    outcome: str
    decline_reason: str | None


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: int
    at: dt.datetime
    event: str
    from_state: str | None
    to_state: str | None
    actor_id: uuid.UUID | None
    actor_name: str | None
    actor_role: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AttachmentRow:
    study_instance_uid: str
    added_at: dt.datetime
    added_by: uuid.UUID
    modalities: list[str] | None
    instances: int


@dataclass(frozen=True, slots=True)
class ReportRow:
    consultation_id: uuid.UUID
    expert_id: uuid.UUID
    body: dict[str, Any]
    signature: str
    key_fingerprint: str
    signed_at: dt.datetime
    public_key: str


@dataclass(frozen=True, slots=True)
class ClockRow:
    consultation_id: uuid.UUID
    state: str
    urgency: str
    requested_at: dt.datetime | None
    breached_at: dt.datetime | None
    offer_id: uuid.UUID | None
    offered_at: dt.datetime | None
    reminded_at: dt.datetime | None


_COLUMNS = [f for f in ConsultationRow.__dataclass_fields__]
_SELECT = sql.SQL("SELECT {} FROM consultations c").format(
    sql.SQL(", ").join(sql.SQL("c.") + sql.Identifier(name) for name in _COLUMNS)
)
# Columns a service may set with update_consultation (never the id, patient, site or requester).
_UPDATABLE = frozenset(_COLUMNS) - {"consultation_id", "patient_id", "site_id", "requester_id", "created_at"}
_JSON_COLUMNS = frozenset({"triage", "vitals_snapshot", "news2"})


def _json(value: Any) -> Any:
    return Jsonb(value) if value is not None else None


async def insert_consultation(conn: Conn, fields: Mapping[str, Any]) -> uuid.UUID:
    """A new consultation row; its id."""
    names = list(fields)
    values = [_json(fields[n]) if n in _JSON_COLUMNS else fields[n] for n in names]
    query = sql.SQL("INSERT INTO consultations ({}) VALUES ({}) RETURNING consultation_id").format(
        sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    cur = await conn.execute(query, values)
    row = await cur.fetchone()
    assert row is not None
    consultation_id: uuid.UUID = row[0]
    return consultation_id


async def get_consultation(conn: Conn, consultation_id: uuid.UUID, *, lock: bool = False) -> ConsultationRow | None:
    """One consultation (locked FOR UPDATE with `lock`, inside the caller's transaction)."""
    query = _SELECT + sql.SQL(" WHERE c.consultation_id = %s") + sql.SQL(" FOR UPDATE" if lock else "")
    cur = conn.cursor(row_factory=class_row(ConsultationRow))
    await cur.execute(query, (consultation_id,))
    return await cur.fetchone()


async def update_consultation(conn: Conn, consultation_id: uuid.UUID, fields: Mapping[str, Any]) -> None:
    """Set some columns of a consultation."""
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = list(fields)
    values = [_json(fields[n]) if n in _JSON_COLUMNS else fields[n] for n in names]
    query = sql.SQL("UPDATE consultations SET {} WHERE consultation_id = %s").format(
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)
    )
    await conn.execute(query, [*values, consultation_id])


def visibility(user: User) -> tuple[sql.Composable, dict[str, Any]]:
    """The predicate (over alias `c`) of the consultations `user` may see: admins all; county doctors their
    site's; experts those offered to them (pending offer) or assigned to them."""
    if Role.ADMIN in user.roles:
        return sql.SQL("TRUE"), {}
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {}
    if Role.COUNTY_DOCTOR in user.roles and user.site_id is not None:
        clauses.append(sql.SQL("c.site_id = %(v_site)s"))
        params["v_site"] = user.site_id
    if Role.EXPERT in user.roles:
        clauses.append(sql.SQL(
            "(c.assigned_expert_id = %(v_user)s OR EXISTS (SELECT 1 FROM consultation_offers vo"
            " WHERE vo.consultation_id = c.consultation_id AND vo.expert_id = %(v_user)s AND vo.outcome = 'pending'))"
        ))
        params["v_user"] = user.user_id
    if not clauses:
        return sql.SQL("FALSE"), {}
    return sql.SQL("(") + sql.SQL(" OR ").join(clauses) + sql.SQL(")"), params


async def visible_consultation(conn: Conn, user: User, consultation_id: uuid.UUID) -> ConsultationRow | None:
    """The consultation if `user` may see it, else None (the caller answers 404 either way)."""
    predicate, params = visibility(user)
    query = _SELECT + sql.SQL(" WHERE c.consultation_id = %(id)s AND ") + predicate
    cur = conn.cursor(row_factory=class_row(ConsultationRow))
    await cur.execute(query, {**params, "id": consultation_id})
    return await cur.fetchone()


async def list_consultations(
    conn: Conn, user: User, *, states: Sequence[str] = (), patient_id: str | None = None, limit: int = 100,
    before: dt.datetime | None = None,
) -> list[ConsultationRow]:
    """Consultations `user` may see, newest first (keyset paging on created_at with `before`)."""
    predicate, params = visibility(user)
    filters: list[sql.Composable] = [predicate]
    if states:
        filters.append(sql.SQL("c.state = ANY(%(states)s)"))
        params["states"] = list(states)
    if patient_id is not None:
        filters.append(sql.SQL("c.patient_id = %(patient)s"))
        params["patient"] = patient_id
    if before is not None:
        filters.append(sql.SQL("c.created_at < %(before)s"))
        params["before"] = before
    query = _SELECT + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(filters) + sql.SQL(
        " ORDER BY c.created_at DESC, c.consultation_id LIMIT %(limit)s")
    cur = conn.cursor(row_factory=class_row(ConsultationRow))
    await cur.execute(query, {**params, "limit": limit})
    return await cur.fetchall()


async def insert_event(
    conn: Conn, *, consultation_id: uuid.UUID, at: dt.datetime, event: str, from_state: str | None,
    to_state: str | None, actor_id: uuid.UUID | None, actor_role: str, detail: Mapping[str, Any],
) -> None:
    """Append one timeline event."""
    await conn.execute(
        "INSERT INTO consultation_events (consultation_id, at, event, from_state, to_state, actor_id, actor_role,"
        " detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (consultation_id, at, event, from_state, to_state, actor_id, actor_role, Jsonb(dict(detail))),
    )


async def events(conn: Conn, consultation_id: uuid.UUID) -> list[EventRow]:
    """The timeline, oldest first."""
    cur = conn.cursor(row_factory=class_row(EventRow))
    await cur.execute(
        "SELECT e.event_id, e.at, e.event, e.from_state, e.to_state, e.actor_id, u.display_name AS actor_name,"
        " e.actor_role, e.detail FROM consultation_events e LEFT JOIN users u ON u.user_id = e.actor_id"
        " WHERE e.consultation_id = %s ORDER BY e.event_id",
        (consultation_id,),
    )
    return await cur.fetchall()


async def insert_offer(
    conn: Conn, *, consultation_id: uuid.UUID, expert_id: uuid.UUID, rank: int | None, score: float | None,
    method: str, factors: Mapping[str, float], explanation: Mapping[str, Any], offered_at: dt.datetime,
) -> uuid.UUID:
    """A pending offer; its id."""
    cur = await conn.execute(
        "INSERT INTO consultation_offers (consultation_id, expert_id, rank, score, method, factors, explanation,"
        " offered_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING offer_id",
        (consultation_id, expert_id, rank, score, method, Jsonb(dict(factors)), Jsonb(dict(explanation)), offered_at),
    )
    row = await cur.fetchone()
    assert row is not None
    offer_id: uuid.UUID = row[0]
    return offer_id


_OFFER_SELECT = (
    "SELECT o.offer_id, o.consultation_id, o.expert_id, u.display_name AS expert_name, o.rank, o.score, o.method,"
    " o.factors, o.explanation, o.offered_at, o.reminded_at, o.responded_at, o.outcome, o.decline_reason"
    " FROM consultation_offers o JOIN users u ON u.user_id = o.expert_id"
)


async def pending_offer(conn: Conn, consultation_id: uuid.UUID) -> OfferRow | None:
    """The consultation's pending offer, if any."""
    cur = conn.cursor(row_factory=class_row(OfferRow))
    await cur.execute(_OFFER_SELECT + " WHERE o.consultation_id = %s AND o.outcome = 'pending'", (consultation_id,))
    return await cur.fetchone()


async def offers(conn: Conn, consultation_id: uuid.UUID) -> list[OfferRow]:
    """Every offer of a consultation, oldest first."""
    cur = conn.cursor(row_factory=class_row(OfferRow))
    await cur.execute(_OFFER_SELECT + " WHERE o.consultation_id = %s ORDER BY o.seq",
                      (consultation_id,))
    return await cur.fetchall()


async def offered_experts(conn: Conn, consultation_id: uuid.UUID) -> set[uuid.UUID]:
    """Experts already offered this consultation (whatever they answered)."""
    cur = await conn.execute("SELECT DISTINCT expert_id FROM consultation_offers WHERE consultation_id = %s",
                             (consultation_id,))
    return {row[0] for row in await cur.fetchall()}


async def close_offer(
    conn: Conn, offer_id: uuid.UUID, *, outcome: str, at: dt.datetime, reason: str | None = None,
) -> None:
    """Record a pending offer's outcome (accepted, declined, expired, withdrawn)."""
    await conn.execute(
        "UPDATE consultation_offers SET outcome = %s, responded_at = %s, decline_reason = %s"
        " WHERE offer_id = %s AND outcome = 'pending'",
        (outcome, at, reason, offer_id),
    )


async def mark_reminded(conn: Conn, offer_id: uuid.UUID, at: dt.datetime) -> bool:
    """Note the reminder of a pending offer; False when it was already reminded or is no longer pending."""
    cur = await conn.execute(
        "UPDATE consultation_offers SET reminded_at = %s WHERE offer_id = %s AND outcome = 'pending'"
        " AND reminded_at IS NULL",
        (at, offer_id),
    )
    return cur.rowcount == 1


async def held_count(conn: Conn, expert_id: uuid.UUID) -> int:
    """Consultations an expert holds now (accepted or in session)."""
    cur = await conn.execute(
        "SELECT count(*) FROM consultations WHERE assigned_expert_id = %s AND state IN ('accepted', 'in_session')",
        (expert_id,),
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def max_concurrent(conn: Conn, expert_id: uuid.UUID) -> int | None:
    """The expert's declared capacity, or None without a profile."""
    cur = await conn.execute("SELECT max_concurrent FROM expert_profiles WHERE user_id = %s", (expert_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def expert_user(conn: Conn, expert_id: uuid.UUID) -> tuple[str, bool] | None:
    """(display name, holds the expert role and is enabled) of a user, or None if unknown."""
    cur = await conn.execute(
        "SELECT display_name, 'expert' = ANY(roles) AND NOT disabled FROM users WHERE user_id = %s", (expert_id,))
    row = await cur.fetchone()
    return (str(row[0]), bool(row[1])) if row else None


async def site_info(conn: Conn, site_id: str) -> tuple[str, str | None]:
    """(display name, GB/T 2260 region or None) of a site."""
    cur = await conn.execute("SELECT coalesce(name_zh, name), region FROM sites WHERE site_id = %s", (site_id,))
    row = await cur.fetchone()
    assert row is not None, "consultations reference existing sites"
    return str(row[0]), row[1]


async def specialty_exists(conn: Conn, code: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM specialties WHERE code = %s", (code,))
    return await cur.fetchone() is not None


async def study_patient(conn: Conn, study_instance_uid: str) -> tuple[bool, set[str]]:
    """(whether the study is known at all, the patient ids its manifest and instances name)."""
    cur = await conn.execute(
        "SELECT patient_id FROM dicom_manifests WHERE study_instance_uid = %(uid)s"
        " UNION SELECT DISTINCT patient_id FROM dicom_instances WHERE study_instance_uid = %(uid)s",
        {"uid": study_instance_uid},
    )
    rows = await cur.fetchall()
    return bool(rows), {row[0] for row in rows if row[0] is not None}


async def add_attachment(
    conn: Conn, consultation_id: uuid.UUID, study_instance_uid: str, *, at: dt.datetime, by: uuid.UUID,
) -> bool:
    """Attach a study; False when it was attached already."""
    cur = await conn.execute(
        "INSERT INTO consultation_attachments (consultation_id, study_instance_uid, added_at, added_by)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (consultation_id, study_instance_uid, at, by),
    )
    return cur.rowcount == 1


async def remove_attachment(conn: Conn, consultation_id: uuid.UUID, study_instance_uid: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM consultation_attachments WHERE consultation_id = %s AND study_instance_uid = %s",
        (consultation_id, study_instance_uid),
    )
    return cur.rowcount == 1


async def attachments(conn: Conn, consultation_id: uuid.UUID) -> list[AttachmentRow]:
    """Attached studies with what the cloud holds of them (modalities from the manifest, instances stored)."""
    cur = conn.cursor(row_factory=class_row(AttachmentRow))
    await cur.execute(
        "SELECT a.study_instance_uid, a.added_at, a.added_by,"
        " (SELECT array_agg(DISTINCT s.series ->> 'modality') FROM dicom_manifests dm,"
        "   jsonb_array_elements(CASE WHEN jsonb_typeof(dm.body -> 'series') = 'array'"
        "     THEN dm.body -> 'series' ELSE '[]'::jsonb END) AS s(series)"
        "   WHERE dm.study_instance_uid = a.study_instance_uid) AS modalities,"
        " (SELECT count(*) FROM dicom_instances di"
        "   WHERE di.study_instance_uid = a.study_instance_uid)::int AS instances"
        " FROM consultation_attachments a WHERE a.consultation_id = %s ORDER BY a.added_at, a.study_instance_uid",
        (consultation_id,),
    )
    return await cur.fetchall()


async def insert_report(
    conn: Conn, *, consultation_id: uuid.UUID, expert_id: uuid.UUID, body: Mapping[str, Any], signature: str,
    key_fingerprint: str, signed_at: dt.datetime,
) -> None:
    await conn.execute(
        "INSERT INTO consultation_reports (consultation_id, expert_id, body, signature, key_fingerprint, signed_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (consultation_id, expert_id, Jsonb(dict(body)), signature, key_fingerprint, signed_at),
    )


async def get_report(conn: Conn, consultation_id: uuid.UUID) -> ReportRow | None:
    """The signed report with the public key of the key that signed it."""
    cur = conn.cursor(row_factory=class_row(ReportRow))
    await cur.execute(
        "SELECT r.consultation_id, r.expert_id, r.body, r.signature, r.key_fingerprint, r.signed_at, k.public_key"
        " FROM consultation_reports r JOIN expert_signing_keys k ON k.fingerprint = r.key_fingerprint"
        " WHERE r.consultation_id = %s",
        (consultation_id,),
    )
    return await cur.fetchone()


async def running_clocks(conn: Conn) -> list[ClockRow]:
    """SLA timer state of every running consultation (with its pending offer, if any)."""
    cur = conn.cursor(row_factory=class_row(ClockRow))
    await cur.execute(
        "SELECT c.consultation_id, c.state, c.urgency, c.requested_at, c.breached_at, o.offer_id, o.offered_at,"
        " o.reminded_at FROM consultations c"
        " LEFT JOIN consultation_offers o ON o.consultation_id = c.consultation_id AND o.outcome = 'pending'"
        " WHERE c.state IN ('requested', 'offered', 'accepted', 'in_session', 'escalated')"
    )
    return await cur.fetchall()


async def notify(conn: Conn, payload: str) -> None:
    """NOTIFY `telemed_consult` (delivered on commit; dashboards and the live hub may LISTEN)."""
    await conn.execute("SELECT pg_notify('telemed_consult', %s)", (payload,))
