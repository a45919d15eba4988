"""The SLA scheduler: a background task that evaluates every running consultation's timers and carries out
what is due (reminders at half the response target, expiry and re-offer to the next match, escalation on an
overall breach).

One replica works at a time (a session advisory lock per tick; the others skip that tick), and each action
re-checks its consultation under a row lock, so a tick racing an expert's answer does nothing twice. A failing
action is logged and the tick goes on with the others. The clock is injected: tests drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from cloud.consult import sla
from cloud.consult.service import ConsultationService

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
_LOCK_KEY = 0x7E1E_C0A5  # pg advisory lock: one ticking replica at a time


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SlaScheduler:
    """Runs `tick` every `interval_s` until stopped."""

    def __init__(
        self, service: ConsultationService, pool: AsyncConnectionPool[AsyncConnection[Any]], *, clock: Clock,
        interval_s: float,
    ) -> None:
        self._service = service
        self._pool = pool
        self._clock = clock
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def tick(self) -> list[sla.SlaAction]:
        """Evaluate all timers once at the clock's now; the actions carried out."""
        done: list[sla.SlaAction] = []
        async with self._pool.connection() as conn:
            await conn.set_autocommit(True)
            row = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,))).fetchone()
            if row is None or not row[0]:
                return done  # another replica is ticking
            try:
                now = self._clock()
                policy = self._service.policy.sla
                for clock in await self._service.clocks(conn):
                    for action in sla.due_actions(clock, now=now, policy=policy):
                        try:
                            if await self._service.apply(conn, action, now=now):
                                done.append(action)
                                log.info("consult.sla_action kind=%s consultation=%s", type(action).__name__,
                                         action.consultation_id)
                        except Exception:
                            log.exception("consult.sla_action_failed kind=%s consultation=%s",
                                          type(action).__name__, action.consultation_id)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
        return done

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("consult.sla_tick_failed")
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        """Start ticking in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="consult-sla-scheduler")
            log.info("consult.scheduler_started interval_s=%s", self._interval_s)

    async def stop(self) -> None:
        """Stop ticking (waits for a tick in progress to be cancelled)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.info("consult.scheduler_stopped")
