"""Named dependencies for routes: the connection, the caller, role checks and site scope."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from cloud.api.auth import store
from cloud.api.auth.models import AuthSession, Role, User
from cloud.api.auth.permissions import EXPORT_FHIR, READ_VITALS
from cloud.api.auth.scoping import SiteScope, access_scope
from cloud.api.auth.tokens import token_hash
from cloud.api.errors import ForbiddenError, NotAuthenticatedError
from cloud.api.policy import ApiPolicy

SESSION_COOKIE = "telemed_session"


Pool = AsyncConnectionPool[AsyncConnection[Any]]


def app_pool(request: Request) -> Pool:
    """The application's connection pool (opened in the lifespan)."""
    pool: Pool = request.app.state.pool
    return pool


@contextlib.asynccontextmanager
async def pooled_connection(pool: Pool) -> AsyncIterator[store.Conn]:
    """A pooled connection in autocommit mode: each statement commits (audit rows before the response),
    and multi-statement work opens `conn.transaction()` explicitly."""
    async with pool.connection() as conn:
        if not conn.autocommit:
            await conn.set_autocommit(True)
        yield conn


async def db_connection(request: Request) -> AsyncIterator[store.Conn]:
    """The request's connection (see `pooled_connection`)."""
    async with pooled_connection(app_pool(request)) as conn:
        yield conn


Db = Annotated[store.Conn, Depends(db_connection)]


def api_policy(request: Request) -> ApiPolicy:
    """The application's policy knobs."""
    policy: ApiPolicy = request.app.state.policy
    return policy


Policy = Annotated[ApiPolicy, Depends(api_policy)]


def client_ip(request: Request) -> str:
    """The caller's address as seen by the server (behind a proxy, run uvicorn with --proxy-headers)."""
    return request.client.host if request.client is not None else "unknown"


ClientIp = Annotated[str, Depends(client_ip)]


def request_token(authorization: str | None, cookie: str | None) -> str | None:
    """The session token from an `Authorization: Bearer` header, else from the session cookie."""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None
    return cookie or None


async def current_session(request: Request, conn: Db) -> AuthSession:
    """The caller's live session; 401 without one."""
    token = request_token(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))
    if token is None:
        raise NotAuthenticatedError("authentication required")
    session = await store.live_session(conn, token_hash(token))
    if session is None:
        raise NotAuthenticatedError("session expired or revoked")
    return session


CurrentSession = Annotated[AuthSession, Depends(current_session)]


async def current_user(session: CurrentSession) -> User:
    """The logged-in user; 401 without a live session."""
    return session.user


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: Role) -> Callable[[User], Awaitable[User]]:
    """A dependency admitting users who hold at least one of `roles` (403 for the others)."""
    allowed = frozenset(roles)

    async def check(user: CurrentUser) -> User:
        if not user.has_any(allowed):
            raise ForbiddenError("your role does not allow this")
        return user

    return check


VitalsReader = Annotated[User, Depends(require_roles(*READ_VITALS))]
FhirExporter = Annotated[User, Depends(require_roles(*EXPORT_FHIR))]


async def user_scope(user: CurrentUser, conn: Db) -> SiteScope:
    """The sites and patients the caller may see (cloud/api/auth/scoping.py holds the rule)."""
    return await access_scope(conn, user)


Scope = Annotated[SiteScope, Depends(user_scope)]
