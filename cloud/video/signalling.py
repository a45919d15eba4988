"""WS /api/consultations/{id}/call: the signalling relay between a participant's browser and the site's edge.

Handshake: the session token as the subprotocol `bearer.<token>` next to `telemed.call.v1` (never in the
URL, which ends up in logs), or the dashboard's cookie from the same origin (cloud/api/live.py). Only the
consultation's participants (participants.py) may join: others are refused with HTTP 403 (close 4403
where the server cannot answer the handshake with a status), a consultation not in session with 409
(4409), no edge or broker with 503 (1013); a missing or dead session with 401 (4401).

Browser messages become signed `signal` commands on the edge's down/cmd; the edge's replies come back as
`signal` events through ingest, which announces them with pg_notify('telemed_events'); the API's live hub
hands them to this connection, which forwards those addressed to it (messages.py). A notification cut
short by NOTIFY's size limit is completed from the events table. Joining and leaving are audited.

Recording: each offer carries `record` true only while the patient's consent stands (read from the
database just before the offer goes out); the periodic re-check also re-reads it and, when it changed,
tells the edge (`record` command) and the browser (`consent`), which covers a lost command.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from typing import Any, Final

from fastapi import WebSocket, WebSocketDisconnect
from starlette.responses import JSONResponse

from cloud.api.audit import audit
from cloud.api.auth import store as auth_store
from cloud.api.auth.models import AuthSession
from cloud.api.auth.scoping import SiteScope
from cloud.api.deps import Pool, pooled_connection
from cloud.api.live import offered_subprotocols, websocket_session
from cloud.api.live_hub import DROPPED, LiveHub, Subscription
from cloud.api.live_updates import LiveUpdate
from cloud.video import consent_store, messages
from cloud.video.commands import CommandPublisher, PublishError
from cloud.video.consent import record_flag
from cloud.video.ice import ice_servers
from cloud.video.participants import CallAccess, CallRefused, call_access, signal_body, site_edge
from cloud.video.recording_control import tell_edge
from cloud.video.runtime import VideoRuntime
from proto.messages import Command

log = logging.getLogger(__name__)

SUBPROTOCOL: Final = "telemed.call.v1"
CLOSE_SESSION_ENDED: Final = 4401
CLOSE_NOT_PARTICIPANT: Final = 4403
CLOSE_NOT_IN_SESSION: Final = 4409
CLOSE_UNAVAILABLE: Final = 1013  # RFC 6455 section 7.4.1 registry: "Try Again Later"
CLOSE_POLICY: Final = 1008
_CLOSE_FOR_STATUS: Final = {401: CLOSE_SESSION_ENDED, 403: CLOSE_NOT_PARTICIPANT, 409: CLOSE_NOT_IN_SESSION,
                            503: CLOSE_UNAVAILABLE}


async def refuse(websocket: WebSocket, status: int, detail: str) -> None:
    """Refuse the handshake with an HTTP status when the server can send one, else close with its code."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code=status))
    else:
        await websocket.close(code=_CLOSE_FOR_STATUS.get(status, CLOSE_POLICY), reason=detail)


async def serve_call(websocket: WebSocket, consultation_id: str) -> None:
    """Authenticate, authorise, then relay signals until either side leaves."""
    runtime: VideoRuntime = websocket.app.state.video
    pool: Pool = websocket.app.state.pool
    hub: LiveHub = websocket.app.state.live_hub
    session = await websocket_session(websocket, pool)
    if session is None:
        await refuse(websocket, 401, "authentication required")
        return
    try:
        cid = uuid.UUID(consultation_id)
    except ValueError:
        await refuse(websocket, 403, "only the consultation's participants may join its call")
        return
    async with pooled_connection(pool) as conn:
        try:
            access = await call_access(conn, consultation_id=cid, user=session.user)
        except CallRefused as exc:
            log.warning("video.call_refused", extra={"user_id": str(session.user.user_id),
                                                     "consultation_id": consultation_id, "status": exc.status})
            await refuse(websocket, exc.status, exc.detail)
            return
        edge_id = await site_edge(conn, access.site_id)
    if edge_id is None:
        await refuse(websocket, 503, "the consultation's site has no active edge")
        return
    try:
        publisher = await runtime.publisher()
    except PublishError as exc:
        log.error("video.publisher_unavailable", extra={"error": str(exc)})
        await refuse(websocket, 503, "signalling to the edge is unavailable")
        return
    call = _Call(websocket, runtime=runtime, publisher=publisher, pool=pool, hub=hub, session=session,
                 access=access, edge_id=edge_id)
    await call.run()


class _Call:
    """One browser connection to one consultation's call."""

    def __init__(self, websocket: WebSocket, *, runtime: VideoRuntime, publisher: CommandPublisher, pool: Pool,
                 hub: LiveHub, session: AuthSession, access: CallAccess, edge_id: str) -> None:
        self.ws = websocket
        self.runtime = runtime
        self.settings = runtime.settings
        self.publisher = publisher
        self.pool = pool
        self.hub = hub
        self.session = session
        self.access = access
        self.edge_id = edge_id
        self.route = messages.CallRoute(consultation_id=str(access.consultation_id),
                                        user_id=str(session.user.user_id), role=access.role,
                                        session=uuid.uuid4().hex)
        self.scope = SiteScope(all_sites=False, site_ids=frozenset({access.site_id}))
        self.subscription: Subscription = hub.subscribe(self.scope)
        self.n = -1  # the current negotiation; none yet
        self.ip = websocket.client.host if websocket.client else "unknown"
        self._tokens = self.settings.messages_per_s * 3
        self._last_refill = time.monotonic()
        self.record: tuple[bool, str | None] = (False, None)  # what the edge was last told about recording

    async def run(self) -> None:
        started = time.monotonic()
        try:
            protocol = SUBPROTOCOL if SUBPROTOCOL in offered_subprotocols(self.ws) else None
            await self.ws.accept(subprotocol=protocol)
            await self._audit("video.join", {"role": self.access.role, "edge_id": self.edge_id})
            log.info("video.call_joined", extra={"consultation_id": self.route.consultation_id,
                                                 "role": self.access.role, "edge_id": self.edge_id})
            await self._read_consent()
            await self.ws.send_json({"type": "welcome", "role": self.access.role, "session": self.route.session,
                                     "ice_servers": self._ice(), "consent": self.record[0]})
            receiver = asyncio.create_task(self._receive())
            sender = asyncio.create_task(self._send())
            done, pending = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                    await task
            for task in done:
                with contextlib.suppress(WebSocketDisconnect):
                    task.result()
        finally:
            self.hub.unsubscribe(self.subscription)
            if self.n >= 0:
                with contextlib.suppress(PublishError):
                    self._command(messages.ClientBye())
            with contextlib.suppress(Exception):
                await self._audit("video.leave", {"seconds": round(time.monotonic() - started)})
            log.info("video.call_left", extra={"consultation_id": self.route.consultation_id})

    def _ice(self) -> list[dict[str, Any]]:
        return ice_servers(self.settings, user=self.route.user_id, now=time.time())

    async def _audit(self, event: str, detail: dict[str, Any]) -> None:
        async with pooled_connection(self.pool) as conn:
            await audit(conn, event, self.session.user, self.access.patient_id,
                        detail={"consultation_id": self.route.consultation_id} | detail, ip=self.ip)

    def _allow(self) -> bool:
        """Token bucket over the browser's messages: trickled candidates fit, a flood does not."""
        now = time.monotonic()
        rate = self.settings.messages_per_s
        self._tokens = min(rate * 3, self._tokens + (now - self._last_refill) * rate)
        self._last_refill = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    async def _read_consent(self) -> bool:
        """Re-read the consent; whether it changed since the edge was last told."""
        async with pooled_connection(self.pool) as conn:
            flag = record_flag(await consent_store.standing(conn, self.access.consultation_id))
        changed = flag != self.record
        self.record = flag
        return changed

    def _command(self, message: messages.ClientMessage) -> None:
        record, consent_id = self.record
        args = messages.command_args(message, route=self.route, n=self.n, ice_servers=self._ice(), record=record,
                                     consent_id=consent_id)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.settings.command_ttl_s)
        command = Command(command_id=uuid.uuid4(), name="signal", args=args, expires_at=expires)
        self.publisher.publish(site_id=self.access.site_id, edge_id=self.edge_id, command=command)

    async def _receive(self) -> None:
        """Browser -> edge."""
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                return
            text = frame.get("text") if frame.get("text") is not None else frame.get("bytes")
            if text is None or len(text) > self.settings.max_message_bytes:
                await self._error("bad_message", "message missing or too large")
                continue
            if not self._allow():
                log.warning("video.call_flooding", extra={"consultation_id": self.route.consultation_id})
                await self.ws.close(code=CLOSE_POLICY, reason="too many messages")
                return
            try:
                message = messages.parse_client(text)
            except messages.ClientMessageError as exc:
                await self._error("bad_message", str(exc))
                continue
            if isinstance(message, messages.ClientOffer):
                self.n += 1
                await self._read_consent()
            elif self.n < 0:
                await self._error("no_negotiation", "send an offer first")
                continue
            try:
                self._command(message)
            except PublishError as exc:
                log.error("video.signal_not_sent", extra={"error": str(exc)})
                await self._error("edge_unreachable", "the signal could not be sent to the edge; retry")

    async def _error(self, reason: str, detail: str) -> None:
        await self.ws.send_json({"type": "error", "n": self.n, "reason": reason, "detail": detail})

    async def _send(self) -> None:
        """Edge -> browser, and periodic re-checks of the login and the participation."""
        next_check = time.monotonic() + self.settings.revalidate_s
        while True:
            timeout = max(0.0, next_check - time.monotonic())
            try:
                item = await asyncio.wait_for(self.subscription.queue.get(), timeout=timeout)
            except TimeoutError:
                if not await self._still_allowed():
                    return
                next_check = time.monotonic() + self.settings.revalidate_s
                continue
            if item is DROPPED:
                # We fell behind the site's whole event stream; a lost answer is recovered by the browser's
                # negotiation timeout, so carry on with a fresh subscription.
                log.warning("video.call_subscription_dropped", extra={"consultation_id": self.route.consultation_id})
                self.hub.unsubscribe(self.subscription)
                self.subscription = self.hub.subscribe(self.scope)
                continue
            if not isinstance(item, LiveUpdate):
                continue
            reply = await self._reply_of(item.message)
            if reply is not None:
                await self.ws.send_json(reply)

    async def _reply_of(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if message.get("type") != "event" or message.get("event_type") != "signal":
            return None
        if message.get("edge_id") != self.edge_id:
            return None
        body = message.get("body")
        if not isinstance(body, dict):
            return None
        signal = body.get("signal")
        if body.get("truncated") and isinstance(body.get("event_id"), str):
            async with pooled_connection(self.pool) as conn:
                signal = await signal_body(conn, uuid.UUID(body["event_id"]))
        return messages.for_browser(signal, route=self.route)

    async def _still_allowed(self) -> bool:
        async with pooled_connection(self.pool) as conn:
            live = await auth_store.live_session(conn, self.session.token_hash)
            if live is None:
                await self.ws.close(code=CLOSE_SESSION_ENDED, reason="session ended")
                return False
            try:
                await call_access(conn, consultation_id=self.access.consultation_id, user=live.user)
            except CallRefused as exc:
                await self.ws.close(code=_CLOSE_FOR_STATUS.get(exc.status, CLOSE_POLICY), reason=exc.detail)
                return False
        if await self._read_consent():
            record, consent_id = self.record
            await self.ws.send_json({"type": "consent", "standing": record})
            if self.n >= 0:
                async with pooled_connection(self.pool) as conn:
                    await tell_edge(conn, self.runtime, site_id=self.access.site_id,
                                    consultation_id=self.access.consultation_id, record=record, consent_id=consent_id)
        return True

