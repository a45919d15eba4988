"""Route: WS /api/live, live vitals and events for the patients the caller may see.

Authentication: the session token as a WebSocket subprotocol `bearer.<token>` offered next to
`telemed.live.v1` (never in the URL, which ends up in logs), or the dashboard's session cookie when the
Origin is this host (cross-site WebSocket hijacking defence; the cookie is SameSite=Strict as well).
The server selects `telemed.live.v1` and never echoes the token. Messages are JSON objects with a "type":
"vitals", "event", or "resync" (updates were missed: refetch). Close codes: 1013 too slow, 4401 session ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.responses import JSONResponse

from cloud.api.audit import audit
from cloud.api.auth import store
from cloud.api.auth.models import AuthSession
from cloud.api.auth.permissions import READ_VITALS
from cloud.api.auth.scoping import access_scope
from cloud.api.auth.tokens import token_hash
from cloud.api.deps import SESSION_COOKIE, Pool, pooled_connection
from cloud.api.live_hub import DROPPED, RESYNC, LiveHub, Subscription
from cloud.api.live_updates import LiveUpdate
from cloud.api.policy import ApiPolicy

log = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

SUBPROTOCOL = "telemed.live.v1"
TOKEN_PREFIX = "bearer."
CLOSE_TOO_SLOW = 1013  # RFC 6455 section 7.4.1 registry: "Try Again Later"
CLOSE_SESSION_ENDED = 4401  # application range (4000-4999): the session expired or was revoked


def offered_subprotocols(websocket: WebSocket) -> list[str]:
    """The subprotocols the client offered, in order."""
    header = websocket.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in header.split(",") if p.strip()]


def websocket_token(websocket: WebSocket) -> str | None:
    """The token offered as a `bearer.<token>` subprotocol, else the same-origin session cookie."""
    for protocol in offered_subprotocols(websocket):
        if protocol.startswith(TOKEN_PREFIX) and len(protocol) > len(TOKEN_PREFIX):
            return protocol[len(TOKEN_PREFIX):]
    cookie = websocket.cookies.get(SESSION_COOKIE)
    if cookie and same_origin(websocket.headers.get("origin"), websocket.headers.get("host")):
        return cookie
    return None


async def websocket_session(websocket: WebSocket, pool: Pool) -> AuthSession | None:
    """The live session behind the handshake's token (see websocket_token), or None."""
    token = websocket_token(websocket)
    if token is None:
        return None
    async with pooled_connection(pool) as conn:
        return await store.live_session(conn, token_hash(token))


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a browser's Origin names the host it connected to (non-browser clients send none)."""
    if origin is None:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


async def _deny(websocket: WebSocket, status_code: int, detail: str) -> None:
    """Refuse the handshake with an HTTP status when the server can send one, else close (1008)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status_code))
    else:
        await websocket.close(code=1008, reason=detail)


@router.websocket("/api/live")
async def live(websocket: WebSocket) -> None:
    """Stream updates for the caller's sites until either side closes."""
    pool: Pool = websocket.app.state.pool
    hub: LiveHub = websocket.app.state.live_hub
    policy: ApiPolicy = websocket.app.state.policy
    session = await websocket_session(websocket, pool)
    if session is None:
        await _deny(websocket, 401, "authentication required")
        return
    if not session.user.has_any(READ_VITALS):
        await _deny(websocket, 403, "your role does not allow this")
        return
    # The scope is taken when the socket opens: an expert's new consultation shows after a reconnect.
    async with pooled_connection(pool) as conn:
        scope = await access_scope(conn, session.user)
    subscription = hub.subscribe(scope)
    try:
        protocol = SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(websocket) else None
        await websocket.accept(subprotocol=protocol)
        ip = websocket.client.host if websocket.client else "unknown"
        sender = asyncio.create_task(_send(websocket, subscription, session, pool, policy, ip))
        receiver = asyncio.create_task(_receive(websocket))
        done, pending = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
        for task in done:
            with contextlib.suppress(WebSocketDisconnect):
                task.result()
    finally:
        hub.unsubscribe(subscription)


async def _receive(websocket: WebSocket) -> None:
    """Drain client frames until it disconnects (clients send nothing we act on)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _send(
    websocket: WebSocket, subscription: Subscription, session: AuthSession, pool: Pool, policy: ApiPolicy, ip: str,
) -> None:
    """Forward queued updates; audit each patient's first update; re-check the session periodically."""
    seen: set[str] = set()
    next_check = time.monotonic() + policy.live_revalidate_s
    while True:
        timeout = max(0.0, next_check - time.monotonic())
        try:
            item = await asyncio.wait_for(subscription.queue.get(), timeout=timeout)
        except TimeoutError:
            if not await _still_valid(pool, session):
                await websocket.close(code=CLOSE_SESSION_ENDED, reason="session ended")
                return
            next_check = time.monotonic() + policy.live_revalidate_s
            continue
        if item is DROPPED:
            log.warning("live.client_dropped user_id=%s", session.user.user_id)
            await websocket.close(code=CLOSE_TOO_SLOW, reason="too slow: updates were dropped")
            return
        if item is RESYNC:
            await websocket.send_json({"type": "resync"})
            continue
        assert isinstance(item, LiveUpdate)
        if item.patient_id is not None and item.patient_id not in seen:
            async with pooled_connection(pool) as conn:
                await audit(conn, "live.read", session.user, item.patient_id, ip=ip)
            seen.add(item.patient_id)
        await websocket.send_json(item.message)


async def _still_valid(pool: Pool, session: AuthSession) -> bool:
    async with pooled_connection(pool) as conn:
        return await store.live_session(conn, session.token_hash) is not None
