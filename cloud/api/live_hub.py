"""The live-update hub: one LISTEN connection per API process, fanned out to WebSocket subscribers.

Each subscriber has a bounded queue; a subscriber whose queue is full is dropped (its socket closed),
so one slow client never holds back the others or grows memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from cloud.api.auth.scoping import SiteScope
from cloud.api.live_updates import CHANNELS, LiveUpdate, LiveUpdateError, parse_notification

log = logging.getLogger(__name__)

_RETRY_INITIAL_S = 0.5
_RETRY_MAX_S = 10.0


class _Signal:
    """A queue item that is not an update."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


DROPPED = _Signal("dropped")  # the subscriber fell too far behind and must close
RESYNC = _Signal("resync")  # the hub lost notifications while reconnecting: clients should refetch


@dataclass(eq=False)
class Subscription:
    """One WebSocket client's view of the stream: what it may see, and its bounded queue."""

    scope: SiteScope
    queue_size: int
    queue: asyncio.Queue[LiveUpdate | _Signal] = field(init=False)
    dropped: bool = False

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size)

    def offer(self, item: LiveUpdate | _Signal) -> None:
        """Queue an item without waiting; on overflow, replace the backlog with DROPPED."""
        if self.dropped:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(DROPPED)


class LiveHub:
    """LISTENs on the contract's channels and hands each update to the subscribers allowed to see it."""

    def __init__(self, conninfo: str, *, queue_size: int) -> None:
        self._conninfo = conninfo
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and LISTEN; returns once listening (raises if the first connection fails)."""
        conn = await self._connect()
        self._task = asyncio.create_task(self._run(conn), name="live-hub")

    async def stop(self) -> None:
        """Stop listening (subscribers are left to their sockets' own shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def subscribe(self, scope: SiteScope) -> Subscription:
        """A new subscription receiving the updates `scope` allows."""
        subscription = Subscription(scope=scope, queue_size=self._queue_size)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to a subscription."""
        self._subscribers.discard(subscription)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, update: LiveUpdate) -> None:
        """Deliver an update to every subscriber whose scope includes its site (or its patient)."""
        for subscription in list(self._subscribers):
            if subscription.scope.allows_patient(update.site_id, update.patient_id):
                subscription.offer(update)
                if subscription.dropped:
                    log.warning("live.subscriber_dropped reason=queue_full size=%d", self._queue_size)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        for channel in CHANNELS:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        log.info("live.listening channels=%s", ",".join(CHANNELS))
        return conn

    async def _run(self, conn: psycopg.AsyncConnection[Any]) -> None:
        delay = _RETRY_INITIAL_S
        while True:
            try:
                async with conn:
                    async for notify in conn.notifies():
                        delay = _RETRY_INITIAL_S
                        self._dispatch(notify.channel, notify.payload)
            except psycopg.OperationalError as exc:
                log.warning("live.connection_lost error=%s retry_in_s=%.1f", str(exc).strip(), delay)
            conn = await self._reconnect(delay)
            delay = _RETRY_INITIAL_S
            for subscription in list(self._subscribers):
                subscription.offer(RESYNC)

    async def _reconnect(self, delay: float) -> psycopg.AsyncConnection[Any]:
        while True:
            await asyncio.sleep(delay)
            try:
                return await self._connect()
            except psycopg.OperationalError as exc:
                delay = min(delay * 2, _RETRY_MAX_S)
                log.warning("live.reconnect_failed error=%s retry_in_s=%.1f", str(exc).strip(), delay)

    def _dispatch(self, channel: str, payload: str) -> None:
        try:
            update = parse_notification(channel, payload)
        except LiveUpdateError as exc:
            log.warning("live.bad_notification channel=%s error=%s", channel, exc)
            return
        self.publish(update)
