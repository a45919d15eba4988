"""The dispatcher: sends pending deliveries, retries with backoff, and records every attempt.

Deliveries are rows of the delivery log written (pending) in the transaction that took the escalation step;
`submit` hands the committed rows over, `resume` picks up those left pending by a previous run. Each
delivery is one task: channel.send runs in one of the dispatcher's own threads (channels block on sockets),
a transient failure waits `RetryPolicy.delay` and tries again up to `max_attempts`, a permanent one (or the
last attempt) marks the row failed, which admins see in GET /api/alerting/deliveries?status=failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from cloud.alerting import directory, store
from cloud.alerting.channel_secrets import is_sealed, open_config
from cloud.alerting.errors import ChannelConfigError, DeliveryError
from cloud.alerting.notify.channels import Channel, build_channel
from cloud.alerting.notify.page import Page
from cloud.alerting.notify.retry import RetryPolicy
from cloud.identity.crypto import IdentityCryptoError, KeyRing
from cloud.identity.keys import KeyFileError
from cloud.identity.keystore import KeyMismatchError, VerifiedKeys

log = logging.getLogger(__name__)

Pool = AsyncConnectionPool[AsyncConnection[Any]]
ChannelFactory = Callable[[str, Mapping[str, Any]], Channel]
_CHANNEL_CACHE_S = 30.0


@dataclass
class DispatchStats:
    delivered: int = 0
    failed: int = 0
    retried: int = 0


class Dispatcher:
    """Delivers pages on their channels; at most `concurrency` sends at a time."""

    def __init__(self, pool: Pool, *, retry: RetryPolicy | None = None, concurrency: int = 8,
                 channel_factory: ChannelFactory = build_channel,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 keys: VerifiedKeys | None = None) -> None:
        self._pool = pool
        self._keys = keys  # opens channels' encrypted secrets (cloud/alerting/channel_secrets.py)
        self._retry = retry or RetryPolicy()
        self._limit = asyncio.Semaphore(concurrency)
        # Its own threads: a slow receiver must not take the threads the rest of the service runs on.
        self._threads = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="alerting-send")
        self._factory = channel_factory
        self._clock = clock
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._channels: dict[uuid.UUID, tuple[float, Channel | ChannelConfigError]] = {}
        self.stats = DispatchStats()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, rows: Sequence[store.DeliveryRow]) -> None:
        """Start delivering committed pending rows (rows already being delivered are ignored)."""
        for row in rows:
            if row.status != "pending" or row.delivery_id in self._tasks:
                continue
            task = asyncio.create_task(self._deliver(row), name=f"delivery-{row.delivery_id}")
            self._tasks[row.delivery_id] = task
            task.add_done_callback(functools.partial(self._forget, row.delivery_id))

    def _forget(self, delivery_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        self._tasks.pop(delivery_id, None)

    async def resume(self) -> int:
        """Submit the deliveries a previous run left pending; how many."""
        async with self._pool.connection() as conn:
            rows = await store.pending_deliveries(conn)
        self.submit(rows)
        if rows:
            log.info("alerting.deliveries_resumed count=%d", len(rows))
        return len(rows)

    async def drain(self, timeout_s: float) -> bool:
        """Wait for the deliveries in flight; False if some were still running at the timeout."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(list(self._tasks.values()), timeout=timeout_s)
        return not pending

    async def close(self, timeout_s: float = 2.0) -> None:
        """Cancel what is still in flight (it stays pending in the log and is resumed next start)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _ring(self, conn: Any) -> KeyRing | None:
        if self._keys is None:
            return None
        try:
            return await self._keys.ring(conn)
        except (KeyFileError, KeyMismatchError, IdentityCryptoError) as exc:
            log.error("alerting.channel_keys_unavailable error=%s", exc)
            return None

    async def _channel(self, channel_id: uuid.UUID | None) -> Channel:
        if channel_id is None:
            raise DeliveryError("no channel", transient=False)
        cached = self._channels.get(channel_id)
        if cached is None or time.monotonic() - cached[0] > _CHANNEL_CACHE_S:
            async with self._pool.connection() as conn:
                found = await directory.channels(conn, ids=[channel_id])
                ring = await self._ring(conn) if found and any(map(is_sealed, found[0].config.values())) else None
            entry: Channel | ChannelConfigError
            if not found or not found[0].enabled:
                entry = ChannelConfigError("the channel was deleted or disabled")
            else:
                try:
                    entry = self._factory(found[0].kind, open_config(ring, channel_id, found[0].config))
                except ChannelConfigError as exc:
                    entry = exc
            cached = (time.monotonic(), entry)
            self._channels[channel_id] = cached
        if isinstance(cached[1], ChannelConfigError):
            raise DeliveryError(f"channel unusable: {cached[1]}", transient=False)
        return cached[1]

    async def _deliver(self, row: store.DeliveryRow) -> None:
        page = Page.from_dict(row.payload)
        attempt = row.attempts
        while True:
            attempt += 1
            async with self._limit:
                try:
                    channel = await self._channel(row.channel_id)
                    await asyncio.get_running_loop().run_in_executor(self._threads, channel.send, page,
                                                                     row.address)
                except DeliveryError as exc:
                    error: DeliveryError | None = exc
                else:
                    error = None
            if error is None:
                await self._record(row.delivery_id, "delivered", None, None)
                self.stats.delivered += 1
                log.info("alerting.delivered delivery=%s incident=%s channel=%s attempt=%d", row.delivery_id,
                         row.incident_id, row.channel_kind, attempt)
                return
            if not error.transient or self._retry.gives_up_after(attempt):
                await self._record(row.delivery_id, "failed", str(error), None)
                self.stats.failed += 1
                log.error("alerting.delivery_failed delivery=%s incident=%s channel=%s attempts=%d error=%s",
                          row.delivery_id, row.incident_id, row.channel_kind, attempt, error)
                return
            wait = self._retry.delay(attempt)
            await self._record(row.delivery_id, "pending", str(error),
                               self._clock() + dt.timedelta(seconds=wait))
            self.stats.retried += 1
            log.warning("alerting.delivery_retry delivery=%s channel=%s attempt=%d wait_s=%.1f error=%s",
                        row.delivery_id, row.channel_kind, attempt, wait, error)
            await asyncio.sleep(wait)

    async def _record(self, delivery_id: uuid.UUID, status: str, error: str | None,
                      next_attempt_at: dt.datetime | None) -> None:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await store.record_attempt(conn, delivery_id, status=status, error=error,
                                           next_attempt_at=next_attempt_at, at=self._clock())
        except psycopg.Error:  # the log is best effort: the page itself went (or did not) either way
            log.exception("alerting.delivery_log_failed delivery=%s status=%s", delivery_id, status)
