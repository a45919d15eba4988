"""Who to page and how (migration 0006_alerting): departments, rotations, overrides and escalation policies;
notification channels and users' contact points; and the patient, site and user facts pages are written
from. Async psycopg, shared by the service and the API.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cloud.alerting.escalation import EscalationPolicy
from cloud.alerting.oncall import Department, OnCallBook, Override, Rotation

Conn = AsyncConnection[Any]
SITE_WIDE: Final = ""  # escalation_policies.department_id of a site's own policy

# --- on call -------------------------------------------------------------------------------------------------


async def departments(conn: Conn, *, site_id: str | None = None) -> list[Department]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT site_id, department_id, name, name_zh, head_user_id, wards, is_default FROM alerting_departments"
            " WHERE %(site)s::text IS NULL OR site_id = %(site)s ORDER BY site_id, department_id", {"site": site_id})
        rows = await cur.fetchall()
    return [Department(r["site_id"], r["department_id"], r["name"], r["name_zh"], r["head_user_id"],
                       tuple(r["wards"]), r["is_default"]) for r in rows]


async def upsert_department(conn: Conn, department: Department) -> None:
    await conn.execute(
        "INSERT INTO alerting_departments (site_id, department_id, name, name_zh, head_user_id, wards, is_default)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site_id, department_id) DO UPDATE SET"
        " name = EXCLUDED.name, name_zh = EXCLUDED.name_zh, head_user_id = EXCLUDED.head_user_id,"
        " wards = EXCLUDED.wards, is_default = EXCLUDED.is_default, updated_at = now()",
        (department.site_id, department.department_id, department.name, department.name_zh,
         department.head_user_id, list(department.wards), department.is_default))


async def delete_department(conn: Conn, site_id: str, department_id: str) -> bool:
    cur = await conn.execute("DELETE FROM alerting_departments WHERE site_id = %s AND department_id = %s",
                             (site_id, department_id))
    return cur.rowcount > 0


_ROTATION_COLUMNS: Final = ("rotation_id, site_id, department_id, tier, members, period, handoff_time,"
                            " handoff_weekday, anchor_date, timezone")


def _rotation(r: dict[str, Any]) -> Rotation:
    return Rotation(r["rotation_id"], r["site_id"], r["department_id"], r["tier"], tuple(r["members"]),
                    r["period"], r["handoff_time"], r["handoff_weekday"], r["anchor_date"], r["timezone"])


async def rotations(conn: Conn, *, site_id: str | None = None) -> list[Rotation]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_ROTATION_COLUMNS} FROM oncall_rotations"
                          " WHERE %(site)s::text IS NULL OR site_id = %(site)s ORDER BY site_id, department_id, tier",
                          {"site": site_id})
        rows = await cur.fetchall()
    return [_rotation(r) for r in rows]


async def upsert_rotation(conn: Conn, rotation: Rotation) -> Rotation:
    """Create or replace the rotation of a department's tier (one per tier); the stored rotation."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"INSERT INTO oncall_rotations ({_ROTATION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (site_id, department_id, tier) DO UPDATE SET members = EXCLUDED.members,"
            " period = EXCLUDED.period, handoff_time = EXCLUDED.handoff_time,"
            " handoff_weekday = EXCLUDED.handoff_weekday, anchor_date = EXCLUDED.anchor_date,"
            f" timezone = EXCLUDED.timezone, updated_at = now() RETURNING {_ROTATION_COLUMNS}",
            (rotation.rotation_id, rotation.site_id, rotation.department_id, rotation.tier, list(rotation.members),
             rotation.period, rotation.handoff, rotation.handoff_weekday, rotation.anchor, rotation.timezone))
        row = await cur.fetchone()
    assert row is not None
    return _rotation(row)


async def delete_rotation(conn: Conn, rotation_id: uuid.UUID) -> bool:
    cur = await conn.execute("DELETE FROM oncall_rotations WHERE rotation_id = %s", (rotation_id,))
    return cur.rowcount > 0


async def overrides(conn: Conn, *, site_id: str | None = None, ending_after: dt.datetime | None = None
                    ) -> list[Override]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT override_id, site_id, department_id, tier, user_id, starts_at, ends_at, reason"
            " FROM oncall_overrides WHERE (%(site)s::text IS NULL OR site_id = %(site)s)"
            " AND (%(after)s::timestamptz IS NULL OR ends_at > %(after)s) ORDER BY starts_at",
            {"site": site_id, "after": ending_after})
        rows = await cur.fetchall()
    return [Override(**r) for r in rows]


async def insert_override(conn: Conn, override: Override, *, created_by: uuid.UUID | None) -> None:
    await conn.execute(
        "INSERT INTO oncall_overrides (override_id, site_id, department_id, tier, user_id, starts_at, ends_at,"
        " reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (override.override_id, override.site_id, override.department_id, override.tier, override.user_id,
         override.starts_at, override.ends_at, override.reason, created_by))


async def delete_override(conn: Conn, override_id: uuid.UUID) -> bool:
    cur = await conn.execute("DELETE FROM oncall_overrides WHERE override_id = %s", (override_id,))
    return cur.rowcount > 0


async def load_book(conn: Conn, *, now: dt.datetime, site_id: str | None = None) -> OnCallBook:
    """Departments, rotations and the overrides that have not ended (of one site, or all)."""
    return OnCallBook(await departments(conn, site_id=site_id), await rotations(conn, site_id=site_id),
                      await overrides(conn, site_id=site_id, ending_after=now - dt.timedelta(days=1)))


# --- escalation policies ------------------------------------------------------------------------------------------

PolicyKey = tuple[str, str]  # (site_id, department_id or SITE_WIDE)


async def policies(conn: Conn) -> dict[PolicyKey, EscalationPolicy]:
    rows = await (await conn.execute(
        "SELECT site_id, department_id, policy FROM escalation_policies")).fetchall()
    return {(str(s), str(d)): EscalationPolicy.from_dict(p) for s, d, p in rows}


async def put_policy(conn: Conn, site_id: str, department_id: str, policy: EscalationPolicy, *,
                     updated_by: uuid.UUID | None) -> None:
    await conn.execute(
        "INSERT INTO escalation_policies (site_id, department_id, policy, updated_by) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (site_id, department_id) DO UPDATE SET policy = EXCLUDED.policy,"
        " updated_by = EXCLUDED.updated_by, updated_at = now()",
        (site_id, department_id, Jsonb(policy.to_dict()), updated_by))


async def delete_policy(conn: Conn, site_id: str, department_id: str) -> bool:
    cur = await conn.execute("DELETE FROM escalation_policies WHERE site_id = %s AND department_id = %s",
                             (site_id, department_id))
    return cur.rowcount > 0


def policy_for(table: Mapping[PolicyKey, EscalationPolicy], site_id: str, department_id: str | None,
               default: EscalationPolicy) -> EscalationPolicy:
    """The department's policy, else the site's, else `default`."""
    if department_id is not None and (site_id, department_id) in table:
        return table[(site_id, department_id)]
    return table.get((site_id, SITE_WIDE), default)


# --- channels and contact points ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRow:
    channel_id: uuid.UUID
    kind: str
    name: str
    site_id: str | None
    config: dict[str, Any]
    enabled: bool


_CHANNEL_COLUMNS: Final = "channel_id, kind, name, site_id, config, enabled"


async def channels(conn: Conn, *, ids: Sequence[uuid.UUID] | None = None) -> list[ChannelRow]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_CHANNEL_COLUMNS} FROM notification_channels"
                          " WHERE %(ids)s::uuid[] IS NULL OR channel_id = ANY(%(ids)s) ORDER BY name, channel_id",
                          {"ids": None if ids is None else list(ids)})
        rows = await cur.fetchall()
    return [ChannelRow(**r) for r in rows]


async def upsert_channel(conn: Conn, row: ChannelRow) -> None:
    await conn.execute(
        f"INSERT INTO notification_channels ({_CHANNEL_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (channel_id) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name,"
        " site_id = EXCLUDED.site_id, config = EXCLUDED.config, enabled = EXCLUDED.enabled, updated_at = now()",
        (row.channel_id, row.kind, row.name, row.site_id, Jsonb(row.config), row.enabled))


async def delete_channel(conn: Conn, channel_id: uuid.UUID) -> bool:
    cur = await conn.execute("DELETE FROM notification_channels WHERE channel_id = %s", (channel_id,))
    return cur.rowcount > 0


@dataclass(frozen=True, slots=True)
class ContactPoint:
    """A user reachable on an (enabled) channel at `address`."""

    user_id: uuid.UUID
    channel_id: uuid.UUID
    kind: str
    address: str


async def contacts(conn: Conn, user_ids: Iterable[uuid.UUID], *, site_id: str | None = None) -> list[ContactPoint]:
    """The enabled contact points of users on enabled channels (a site's own channels and the global ones)."""
    ids = sorted(set(user_ids), key=str)
    if not ids:
        return []
    rows = await (await conn.execute(
        "SELECT c.user_id, c.channel_id, n.kind, c.address FROM user_contacts c"
        " JOIN notification_channels n USING (channel_id)"
        " WHERE c.user_id = ANY(%s) AND c.enabled AND n.enabled AND (n.site_id IS NULL OR n.site_id = %s)"
        " ORDER BY c.user_id, n.kind, c.channel_id", (ids, site_id))).fetchall()
    return [ContactPoint(u, ch, str(k), str(a)) for u, ch, k, a in rows]


async def user_contacts(conn: Conn, user_id: uuid.UUID) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT user_id, channel_id, address, enabled FROM user_contacts WHERE user_id = %s"
                          " ORDER BY channel_id", (user_id,))
        return await cur.fetchall()


async def put_contact(conn: Conn, user_id: uuid.UUID, channel_id: uuid.UUID, address: str, enabled: bool) -> None:
    await conn.execute(
        "INSERT INTO user_contacts (user_id, channel_id, address, enabled) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (user_id, channel_id) DO UPDATE SET address = EXCLUDED.address, enabled = EXCLUDED.enabled",
        (user_id, channel_id, address, enabled))


async def delete_contact(conn: Conn, user_id: uuid.UUID, channel_id: uuid.UUID) -> bool:
    cur = await conn.execute("DELETE FROM user_contacts WHERE user_id = %s AND channel_id = %s", (user_id, channel_id))
    return cur.rowcount > 0


# --- facts for pages ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    user_id: uuid.UUID
    username: str
    display_name: str
    roles: tuple[str, ...]
    site_id: str | None
    disabled: bool


async def people(conn: Conn, user_ids: Iterable[uuid.UUID] | None = None) -> dict[uuid.UUID, Person]:
    """Users by id (all users when `user_ids` is None)."""
    ids = None if user_ids is None else sorted(set(user_ids), key=str)
    rows = await (await conn.execute(
        "SELECT user_id, username, display_name, roles, site_id, disabled FROM users"
        " WHERE %(ids)s::uuid[] IS NULL OR user_id = ANY(%(ids)s)", {"ids": ids})).fetchall()
    return {u: Person(u, str(n), str(d), tuple(r), s, bool(x)) for u, n, d, r, s, x in rows}


@dataclass(frozen=True, slots=True)
class Place:
    """Where a patient is: site, ward, bed (no identity)."""

    site_id: str
    ward: str | None
    bed: str | None


async def places(conn: Conn, patient_ids: Iterable[str]) -> dict[str, Place]:
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    rows = await (await conn.execute(
        "SELECT patient_id, site_id, ward, bed FROM patients WHERE patient_id = ANY(%s)", (ids,))).fetchall()
    return {str(p): Place(str(s), w, b) for p, s, w, b in rows}


@dataclass(frozen=True, slots=True)
class Site:
    site_id: str
    name: str
    name_zh: str | None
    timezone: str


async def sites(conn: Conn) -> dict[str, Site]:
    rows = await (await conn.execute("SELECT site_id, name, name_zh, timezone FROM sites")).fetchall()
    return {str(s): Site(str(s), str(n), z, str(tz)) for s, n, z, tz in rows}
