"""Admission control for one adapter: a bounded number of concurrent connection attempts, and scans that
run alone, because BlueZ controllers fail LE connection creation while discovery is active or too many
creations are pending ("org.bluez.Error.InProgress", "le-connection-abort-by-local")."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager


class AdapterGate:
    """Connect attempts share up to `max_connects` permits; a scan waits for them and holds the adapter alone.

    Waiting scans take priority over new connect attempts so periodic scans are not starved by a ward of
    reconnecting devices. Grants happen synchronously on release, so no helper tasks are created.
    """

    def __init__(self, max_connects: int) -> None:
        if max_connects < 1:
            raise ValueError("max_connects must be >= 1")
        self._max_connects = max_connects
        self._connecting = 0
        self._scanning = False
        self._connect_waiters: deque[asyncio.Future[None]] = deque()
        self._scan_waiters: deque[asyncio.Future[None]] = deque()

    @property
    def connecting(self) -> int:
        """Connection attempts in flight."""
        return self._connecting

    @property
    def scanning(self) -> bool:
        return self._scanning

    @asynccontextmanager
    async def connect_permit(self) -> AsyncIterator[None]:
        """Hold one connection-attempt permit."""
        if self._can_connect() and not self._connect_waiters:
            self._connecting += 1
        else:
            await self._wait(self._connect_waiters, self._release_connect)
        try:
            yield
        finally:
            self._release_connect()

    @asynccontextmanager
    async def scan_permit(self) -> AsyncIterator[None]:
        """Hold the adapter alone for a scan."""
        if self._can_scan() and not self._scan_waiters:
            self._scanning = True
        else:
            await self._wait(self._scan_waiters, self._release_scan)
        try:
            yield
        finally:
            self._release_scan()

    def _can_connect(self) -> bool:
        return not self._scanning and not self._scan_waiters and self._connecting < self._max_connects

    def _can_scan(self) -> bool:
        return not self._scanning and self._connecting == 0

    async def _wait(self, waiters: deque[asyncio.Future[None]], release: Callable[[], None]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                release()  # granted just before the cancellation arrived: hand the permit on
            else:
                if future in waiters:
                    waiters.remove(future)
                self._dispatch()  # a cancelled scan may have been holding connects back
            raise

    def _release_connect(self) -> None:
        self._connecting -= 1
        self._dispatch()

    def _release_scan(self) -> None:
        self._scanning = False
        self._dispatch()

    def _dispatch(self) -> None:
        while self._scan_waiters and self._can_scan():
            future = self._scan_waiters.popleft()
            if not future.done():
                self._scanning = True
                future.set_result(None)
                return
        while self._connect_waiters and self._can_connect():
            future = self._connect_waiters.popleft()
            if not future.done():
                self._connecting += 1
                future.set_result(None)
