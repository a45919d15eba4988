"""Login and logout: the flows behind the auth routes (and the `user add` command)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass

from cloud.api.auth import store
from cloud.api.auth.models import Role, User
from cloud.api.auth.passwords import dummy_verify, hash_password, verify_password
from cloud.api.auth.ratelimit import LoginLimit, retry_after
from cloud.api.auth.tokens import new_token, token_hash
from cloud.api.errors import NotAuthenticatedError, RateLimitedError

log = logging.getLogger(__name__)

USERNAME_MAX = 64


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A new session: the token (shown to the client once) and when it expires."""

    token: str
    user: User
    expires_at: dt.datetime


def normalise_username(username: str) -> str:
    """Usernames are case-insensitive: stored and compared in lower case, without surrounding blanks."""
    return username.strip().lower()


async def login(
    conn: store.Conn, *, username: str, password: str, ip: str, user_agent: str | None,
    limit: LoginLimit, ttl: dt.timedelta,
) -> LoginResult:
    """Check the password and open a session; NotAuthenticatedError or RateLimitedError otherwise.

    Throttling comes first, so a blocked pair learns nothing about the password. Unknown users, wrong
    passwords and disabled accounts fail alike and take the same time.
    """
    name = normalise_username(username)[:USERNAME_MAX]
    async with conn.transaction():
        await store.lock_login_pair(conn, name, ip)
        failures = await store.recent_failures(conn, name, ip, window=limit.window)
        now = await store.database_now(conn)
        wait = retry_after(failures, now=now, limit=limit)
        if wait is not None:
            log.warning("auth.login_throttled username=%s ip=%s retry_after_s=%d", name, ip, wait.total_seconds())
            raise RateLimitedError("too many failed logins; try again later", retry_after=wait)
        candidate = await store.login_candidate(conn, name)
        if candidate is None:
            await asyncio.to_thread(dummy_verify, password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, password, candidate.password_hash)
            ok = ok and not candidate.disabled
        if not ok or candidate is None:
            await store.record_failure(conn, name, ip)
            result: LoginResult | None = None
        else:
            await store.clear_failures(conn, name, ip)
            token = new_token()
            expires_at = await store.create_session(
                conn, token_hash=token_hash(token), user_id=candidate.user.user_id, ttl=ttl,
                user_agent=user_agent, ip=ip,
            )
            result = LoginResult(token=token, user=candidate.user, expires_at=expires_at)
    if result is None:
        log.info("auth.login_failed username=%s ip=%s", name, ip)
        raise NotAuthenticatedError("invalid username or password")
    log.info("auth.login user_id=%s ip=%s", result.user.user_id, ip)
    return result


async def logout(conn: store.Conn, *, session_hash: bytes) -> None:
    """Revoke the session identified by its token hash."""
    await store.revoke_session(conn, session_hash)


async def add_user(
    conn: store.Conn, *, username: str, password: str, roles: frozenset[Role], site_id: str | None,
    display_name: str = "",
) -> User:
    """Create a user with a freshly hashed password (the `user add` command)."""
    name = normalise_username(username)
    if not password:
        raise ValueError("the password must not be empty")
    if Role.COUNTY_DOCTOR in roles and site_id is None:
        raise ValueError("a county doctor needs a site")
    hashed = await asyncio.to_thread(hash_password, password)
    user_id = await store.create_user(
        conn, username=name, display_name=display_name or name, password_hash=hashed, roles=roles, site_id=site_id,
    )
    return User(user_id=user_id, username=name, display_name=display_name or name, roles=roles, site_id=site_id)
