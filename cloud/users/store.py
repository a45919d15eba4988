"""SQL for user management and expert profiles (tables `users`, `sessions`, `specialties`, `expert_profiles`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import errors, sql
from psycopg.rows import dict_row

from cloud.api.auth.models import Role, parse_roles
from cloud.api.auth.store import Conn, UnknownSiteError
from cloud.users.profile import Availability, Credentials, ExpertProfile, Title


class RoleSiteError(ValueError):
    """The roles and the site do not fit together (a county doctor needs a site)."""


@dataclass(frozen=True, slots=True)
class ManagedUser:
    """A user as an admin sees it (never the password hash)."""

    user_id: uuid.UUID
    username: str
    display_name: str
    roles: frozenset[Role]
    site_id: str | None
    disabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    password_changed_at: dt.datetime | None
    live_sessions: int


@dataclass(frozen=True, slots=True)
class Specialty:
    code: str
    name_en: str
    name_zh: str


_USERS = (
    "SELECT u.user_id, u.username, u.display_name, u.roles, u.site_id, u.disabled, u.created_at, u.updated_at,"
    " u.password_changed_at, (SELECT count(*) FROM sessions s WHERE s.user_id = u.user_id"
    " AND s.revoked_at IS NULL AND s.expires_at > now()) AS live_sessions FROM users u"
)


def _managed(row: dict[str, Any]) -> ManagedUser:
    return ManagedUser(
        user_id=row["user_id"], username=row["username"], display_name=row["display_name"],
        roles=parse_roles(row["roles"]), site_id=row["site_id"], disabled=row["disabled"],
        created_at=row["created_at"], updated_at=row["updated_at"], password_changed_at=row["password_changed_at"],
        live_sessions=row["live_sessions"],
    )


async def list_users(
    conn: Conn, *, role: Role | None = None, site_id: str | None = None, include_disabled: bool = True,
    search: str | None = None, limit: int = 200, after: str | None = None,
) -> list[ManagedUser]:
    """Users by username, filtered; `after` is the keyset cursor (the last username of the previous page)."""
    clauses = ["true"]
    params: dict[str, Any] = {"limit": limit}
    if role is not None:
        clauses.append("%(role)s = ANY(u.roles)")
        params["role"] = role.value
    if site_id is not None:
        clauses.append("u.site_id = %(site)s")
        params["site"] = site_id
    if not include_disabled:
        clauses.append("NOT u.disabled")
    if search:
        clauses.append("(u.username ILIKE %(search)s OR u.display_name ILIKE %(search)s)")
        params["search"] = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if after is not None:
        clauses.append("u.username > %(after)s")
        params["after"] = after
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_USERS} WHERE {' AND '.join(clauses)} ORDER BY u.username LIMIT %(limit)s", params)
    return [_managed(row) for row in await cur.fetchall()]


async def get_user(conn: Conn, user_id: uuid.UUID, *, lock: bool = False) -> ManagedUser | None:
    """One user, or None (`lock`: FOR UPDATE of the user row, inside a transaction)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_USERS} WHERE u.user_id = %s{' FOR UPDATE OF u' if lock else ''}", (user_id,))
    row = await cur.fetchone()
    return _managed(row) if row is not None else None


async def lock_admins(conn: Conn) -> list[uuid.UUID]:
    """The enabled admins, locked until the transaction ends (so two admins cannot demote each other at once)."""
    cur = await conn.execute(
        "SELECT user_id FROM users WHERE 'admin' = ANY(roles) AND NOT disabled ORDER BY user_id FOR UPDATE")
    return [row[0] for row in await cur.fetchall()]


async def update_user(conn: Conn, user_id: uuid.UUID, changes: Mapping[str, Any]) -> None:
    """Set some of display_name, roles, site_id, disabled (RoleSiteError / UnknownSiteError on conflicts)."""
    values = dict(changes)
    if "roles" in values:
        values["roles"] = sorted(role.value for role in values["roles"])
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values]
    if "disabled" in values:
        assignments.append(sql.SQL("disabled_at = CASE WHEN %(disabled)s THEN now() END"))
    assignments.append(sql.SQL("updated_at = now()"))
    try:
        async with conn.transaction():
            await conn.execute(
                sql.SQL("UPDATE users SET {} WHERE user_id = %(user_id)s").format(sql.SQL(", ").join(assignments)),
                {**values, "user_id": user_id})
    except errors.CheckViolation:
        raise RoleSiteError("a county doctor needs a site") from None
    except errors.ForeignKeyViolation:
        raise UnknownSiteError(f"no site {values.get('site_id')!r}") from None


async def set_password_hash(conn: Conn, user_id: uuid.UUID, password_hash: str) -> None:
    """Replace a user's password hash."""
    await conn.execute(
        "UPDATE users SET password_hash = %s, password_changed_at = now(), updated_at = now() WHERE user_id = %s",
        (password_hash, user_id))


async def specialties(conn: Conn) -> list[Specialty]:
    """The controlled specialty list, by code."""
    cur = await conn.execute("SELECT code, name_en, name_zh FROM specialties ORDER BY code")
    return [Specialty(code=r[0], name_en=r[1], name_zh=r[2]) for r in await cur.fetchall()]


_PROFILE = (
    "SELECT user_id, specialties, icd10_prefixes, title, years_practice, licence_region, languages,"
    " max_concurrent, on_duty, online, status_changed_at, updated_at FROM expert_profiles WHERE user_id = %s"
)


def _profile(row: dict[str, Any]) -> ExpertProfile:
    title: Title = row["title"]
    return ExpertProfile(
        user_id=row["user_id"],
        credentials=Credentials(specialties=tuple(row["specialties"]), icd10_prefixes=tuple(row["icd10_prefixes"]),
                                title=title, years_practice=row["years_practice"],
                                licence_region=row["licence_region"]),
        availability=Availability(languages=tuple(row["languages"]), max_concurrent=row["max_concurrent"],
                                  on_duty=row["on_duty"], online=row["online"]),
        status_changed_at=row["status_changed_at"], updated_at=row["updated_at"],
    )


async def get_profile(conn: Conn, user_id: uuid.UUID) -> ExpertProfile | None:
    """An expert's profile, or None when none was set up yet."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_PROFILE, (user_id,))
    row = await cur.fetchone()
    return _profile(row) if row is not None else None


async def put_credentials(conn: Conn, user_id: uuid.UUID, credentials: Credentials,
                          availability: Availability) -> None:
    """Create or replace a profile's credentials (availability only when the profile is new)."""
    await conn.execute(
        "INSERT INTO expert_profiles (user_id, specialties, icd10_prefixes, title, years_practice, licence_region,"
        " languages, max_concurrent, on_duty, online) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (user_id) DO UPDATE SET specialties = EXCLUDED.specialties,"
        " icd10_prefixes = EXCLUDED.icd10_prefixes, title = EXCLUDED.title,"
        " years_practice = EXCLUDED.years_practice, licence_region = EXCLUDED.licence_region, updated_at = now()",
        (user_id, list(credentials.specialties), list(credentials.icd10_prefixes), credentials.title,
         credentials.years_practice, credentials.licence_region, list(availability.languages),
         availability.max_concurrent, availability.on_duty, availability.online))


async def put_availability(conn: Conn, user_id: uuid.UUID, availability: Availability) -> bool:
    """Replace a profile's availability; False when the expert has no profile yet."""
    cur = await conn.execute(
        "UPDATE expert_profiles SET languages = %(languages)s, max_concurrent = %(max)s, on_duty = %(on_duty)s,"
        " online = %(online)s, updated_at = now(), status_changed_at = CASE WHEN (on_duty, online)"
        " IS DISTINCT FROM (%(on_duty)s, %(online)s) THEN now() ELSE status_changed_at END"
        " WHERE user_id = %(user_id)s",
        {"languages": list(availability.languages), "max": availability.max_concurrent,
         "on_duty": availability.on_duty, "online": availability.online, "user_id": user_id})
    return cur.rowcount == 1


async def take_off_duty(conn: Conn, user_id: uuid.UUID) -> None:
    """Mark an expert off duty and offline (role removed or account disabled: no new offers)."""
    await conn.execute(
        "UPDATE expert_profiles SET on_duty = false, online = false, status_changed_at = now(), updated_at = now()"
        " WHERE user_id = %s AND (on_duty OR online)", (user_id,))
