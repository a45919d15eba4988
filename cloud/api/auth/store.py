"""SQL for users, sessions and login attempts (the tables of migration 0002_auth.sql)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, errors, sql
from psycopg.rows import dict_row

from cloud.api.auth.models import AuthSession, Role, User, parse_roles

Conn = AsyncConnection[Any]


class UserExistsError(ValueError):
    """A user with this username already exists."""


class UnknownSiteError(ValueError):
    """The site named for a user does not exist."""


@dataclass(frozen=True, slots=True)
class LoginCandidate:
    """A user as looked up for a login: the stored hash and whether the account is disabled."""

    user: User
    password_hash: str
    disabled: bool


_USER_COLUMNS = sql.SQL("u.user_id, u.username, u.display_name, u.roles, u.site_id")


def _user(row: dict[str, Any]) -> User:
    return User(
        user_id=row["user_id"], username=row["username"], display_name=row["display_name"],
        roles=parse_roles(row["roles"]), site_id=row["site_id"],
    )


async def create_user(
    conn: Conn, *, username: str, display_name: str, password_hash: str, roles: frozenset[Role],
    site_id: str | None,
) -> uuid.UUID:
    """Insert a user; UserExistsError / UnknownSiteError for the obvious conflicts."""
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO users (username, display_name, password_hash, roles, site_id)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING user_id",
                (username, display_name, password_hash, sorted(r.value for r in roles), site_id),
            )
            row = await cur.fetchone()
    except errors.UniqueViolation:
        raise UserExistsError(f"user {username!r} already exists") from None
    except errors.ForeignKeyViolation:
        raise UnknownSiteError(f"no site {site_id!r}") from None
    assert row is not None
    user_id: uuid.UUID = row[0]
    return user_id


async def login_candidate(conn: Conn, username: str) -> LoginCandidate | None:
    """The user called `username` with their password hash, or None."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        sql.SQL("SELECT {}, u.password_hash, u.disabled FROM users u WHERE u.username = %s").format(_USER_COLUMNS),
        (username,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return LoginCandidate(user=_user(row), password_hash=row["password_hash"], disabled=row["disabled"])


async def create_session(
    conn: Conn, *, token_hash: bytes, user_id: uuid.UUID, ttl: dt.timedelta, user_agent: str | None, ip: str | None,
) -> dt.datetime:
    """Record a new session; its expiry time."""
    cur = await conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at, user_agent, ip)"
        " VALUES (%s, %s, now() + %s, %s, %s) RETURNING expires_at",
        (token_hash, user_id, ttl, (user_agent or "")[:512] or None, ip),
    )
    row = await cur.fetchone()
    assert row is not None
    expires_at: dt.datetime = row[0]
    return expires_at


async def live_session(conn: Conn, token_hash: bytes) -> AuthSession | None:
    """The session for a token hash if it is unexpired, unrevoked and its user enabled; else None."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        sql.SQL(
            "SELECT {}, s.expires_at FROM sessions s JOIN users u USING (user_id)"
            " WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > now() AND NOT u.disabled"
        ).format(_USER_COLUMNS),
        (token_hash,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return AuthSession(user=_user(row), token_hash=token_hash, expires_at=row["expires_at"])


async def revoke_session(conn: Conn, token_hash: bytes) -> bool:
    """Revoke one session; whether it was live."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL", (token_hash,)
    )
    return cur.rowcount == 1


async def revoke_user_sessions(conn: Conn, user_id: uuid.UUID) -> int:
    """Revoke every live session of a user (password change, account disabled); how many."""
    cur = await conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
    )
    return cur.rowcount


async def lock_login_pair(conn: Conn, username: str, ip: str) -> None:
    """Serialise concurrent logins of one (username, ip) pair until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"login\x1f{username}\x1f{ip}",))


async def recent_failures(conn: Conn, username: str, ip: str, *, window: dt.timedelta) -> list[dt.datetime]:
    """Failed attempts of the pair within the window (pruning the pair's older ones), oldest first."""
    await conn.execute(
        "DELETE FROM login_attempts WHERE username = %s AND ip = %s AND at <= now() - %s", (username, ip, window)
    )
    cur = await conn.execute(
        "SELECT at FROM login_attempts WHERE username = %s AND ip = %s ORDER BY at", (username, ip)
    )
    return [row[0] for row in await cur.fetchall()]


async def record_failure(conn: Conn, username: str, ip: str) -> None:
    """Remember one failed attempt of the pair."""
    await conn.execute("INSERT INTO login_attempts (username, ip) VALUES (%s, %s)", (username, ip))


async def clear_failures(conn: Conn, username: str, ip: str) -> None:
    """Forget the pair's failures (after a successful login)."""
    await conn.execute("DELETE FROM login_attempts WHERE username = %s AND ip = %s", (username, ip))


async def database_now(conn: Conn) -> dt.datetime:
    """The database's clock (the one session expiry and login windows are measured on)."""
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    now: dt.datetime = row[0]
    return now
