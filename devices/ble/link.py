"""One supervised link to one device: connect with retry and backoff, keep subscriptions, detect drops,
reconnect and re-subscribe, and report what happens as events. Identical for every backend."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from devices.ble.backend import BackendConnection, BleBackend, RawNotificationCallback
from devices.ble.backoff import RetryPolicy, backoff_delay, is_retryable, retry_delay
from devices.ble.clock import Clock
from devices.ble.errors import (
    BleTransportError,
    ConnectionTimeoutError,
    DeviceGoneError,
    NotConnectedError,
    TransportClosedError,
)
from devices.ble.gate import AdapterGate
from devices.ble.models import LinkEvent, LinkEventKind, LinkState, NotificationHandler
from devices.ble.uuids import normalize_uuid

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

# bleak's own connect timeout can be outlived by a stalled D-Bus call (bleak PR #1092, the reason for
# bleak-retry-connector's BLEAK_SAFETY_TIMEOUT); this outer bound keeps one stuck device from holding a permit.
# A backend may spend up to one timeout locating the device and one connecting, hence the factor 2.
_SAFETY_FACTOR = 2.0
_SAFETY_MARGIN = 1.0


class DeviceLink:
    """A device session that survives disconnects. Created and owned by `ConnectionManager`."""

    def __init__(
        self,
        address: str,
        *,
        backend: BleBackend,
        gate: AdapterGate,
        policy: RetryPolicy,
        clock: Clock,
        rng: random.Random,
        emit: Callable[[LinkEvent], None],
    ) -> None:
        self.address = address
        self._backend = backend
        self._gate = gate
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._emit_event = emit
        self._state = LinkState.IDLE
        self._task: asyncio.Task[None] | None = None
        self._connection: BackendConnection | None = None
        self._subscriptions: dict[str, NotificationHandler] = {}
        self._enabled: set[str] = set()  # characteristics whose CCCD is written on the current connection
        self._generation = 0  # bumps per connection attempt; stale disconnect callbacks are ignored
        self._lost = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self.last_error: BleTransportError | None = None
        self.rssi: int | None = None

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def is_connected(self) -> bool:
        return self._state is LinkState.CONNECTED

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Characteristics this link keeps subscribed across reconnects."""
        return tuple(self._subscriptions)

    def start(self) -> None:
        """Start (or, after giving up, restart) supervision; a no-op while it runs."""
        if self._state is LinkState.CLOSED:
            raise TransportClosedError("link is closed", address=self.address)
        if self._task is not None and not self._task.done():
            return
        self._state = LinkState.CONNECTING  # at once, so wait_connected() does not see a previous give-up
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ble-link-{self.address}")
        self._task.add_done_callback(self._task_done)

    async def wait_connected(self) -> None:
        """Return once connected; raise the last error if the link gives up, TransportClosedError if closed."""
        if self._state is LinkState.CONNECTED:
            return
        if self._state is LinkState.CLOSED:
            raise TransportClosedError("link is closed", address=self.address)
        if self._state is LinkState.GAVE_UP and self.last_error is not None:
            raise self.last_error
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    async def subscribe(self, char_uuid: str | int, handler: NotificationHandler) -> None:
        """Receive notifications or indications of a characteristic, now and after every reconnect.

        Replacing the handler of a subscribed characteristic takes effect at once without GATT traffic.
        """
        self._ensure_open()
        uuid = normalize_uuid(char_uuid)
        self._subscriptions[uuid] = handler
        connection = self._connection
        if connection is None or uuid in self._enabled:
            return  # enabled when the next connection comes up
        try:
            await self._operation(connection.start_notify(uuid, self._deliverer(uuid)))
        except DeviceGoneError:
            return  # the reconnect will enable it
        except BaseException:
            if self._subscriptions.get(uuid) is handler:
                del self._subscriptions[uuid]
            raise
        if connection is self._connection:
            self._enabled.add(uuid)

    async def unsubscribe(self, char_uuid: str | int) -> None:
        """Stop receiving a characteristic; later values are dropped even if the device keeps sending."""
        uuid = normalize_uuid(char_uuid)
        self._subscriptions.pop(uuid, None)
        connection = self._connection
        if connection is None or uuid not in self._enabled:
            return
        self._enabled.discard(uuid)
        with contextlib.suppress(DeviceGoneError):  # CCCD state dies with the link anyway
            await self._operation(connection.stop_notify(uuid))

    async def read(self, char_uuid: str | int) -> bytes:
        """Read a characteristic value (e.g. Battery Level) over the current connection."""
        self._ensure_open()
        connection = self._connection
        if connection is None:
            raise NotConnectedError(f"not connected ({self._state})", address=self.address)
        return await self._operation(connection.read(normalize_uuid(char_uuid)))

    async def close(self) -> None:
        """Stop supervising, disconnect, and fail pending waiters with TransportClosedError."""
        if self._state is LinkState.CLOSED:
            return
        self._generation += 1
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        connection, self._connection = self._connection, None
        self._state = LinkState.CLOSED
        self._subscriptions.clear()
        self._enabled.clear()
        if connection is not None:
            await self._quiet_disconnect(connection)
        self._resolve_waiters(TransportClosedError("link closed", address=self.address))
        _log.info("ble.link.closed", extra={"address": self.address})

    # --- supervision ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            self._state = LinkState.CONNECTING
            try:
                connection = await self._attempt()
            except Exception as exc:
                error = self._as_transport_error(exc)
                delay = retry_delay(type(error), attempt, jitter_sample=self._rng.random(), policy=self._policy)
                if delay is None:
                    self._give_up(error, attempt)
                    return
                self.last_error = error
                self._state = LinkState.BACKING_OFF
                self._emit(LinkEventKind.RECONNECTING, attempt=attempt + 1, delay=delay, error=error)
                await self._clock.sleep(delay)
                continue
            self._connected(connection, attempt)
            attempt = 0
            await self._lost.wait()
            error = await self._disconnected(connection)
            if not is_retryable(type(error), self._policy):
                self._give_up(error, 0)
                return
            # A reconnect cycle always gets at least one attempt, whatever max_attempts says.
            delay = backoff_delay(type(error), 1, jitter_sample=self._rng.random(), policy=self._policy)
            self._state = LinkState.BACKING_OFF
            self._emit(LinkEventKind.RECONNECTING, attempt=1, delay=delay, error=error)
            await self._clock.sleep(delay)

    async def _attempt(self) -> BackendConnection:
        self._generation += 1
        on_disconnect = functools.partial(self._on_disconnect, self._generation)
        self._lost.clear()
        self._enabled = set()
        timeout = self._policy.connect_timeout
        async with self._gate.connect_permit():
            try:
                async with asyncio.timeout(timeout * _SAFETY_FACTOR + _SAFETY_MARGIN):
                    connection = await self._backend.connect(self.address, timeout=timeout, on_disconnect=on_disconnect)
            except TimeoutError as exc:
                raise ConnectionTimeoutError("connect timed out", address=self.address) from exc
        try:
            await self._enable_subscriptions(connection)
        except BaseException:
            await self._quiet_disconnect(connection)
            raise
        return connection

    async def _enable_subscriptions(self, connection: BackendConnection) -> None:
        # Loop until nothing is pending: subscribe() may add characteristics while we are awaiting here.
        while pending := [uuid for uuid in self._subscriptions if uuid not in self._enabled]:
            for uuid in pending:
                await self._operation(connection.start_notify(uuid, self._deliverer(uuid)))
                self._enabled.add(uuid)

    def _connected(self, connection: BackendConnection, attempt: int) -> None:
        self._connection = connection
        self._state = LinkState.CONNECTED
        self.last_error = None
        self.rssi = connection.rssi if connection.rssi is not None else self.rssi
        _log.info("ble.link.connected", extra={"address": self.address, "attempt": attempt})
        self._emit(LinkEventKind.CONNECTED, attempt=attempt, rssi=connection.rssi)
        self._resolve_waiters(None)

    async def _disconnected(self, connection: BackendConnection) -> DeviceGoneError:
        self._connection = None
        self._enabled = set()
        error = DeviceGoneError("connection lost", address=self.address)
        self.last_error = error
        _log.info("ble.link.disconnected", extra={"address": self.address})
        self._emit(LinkEventKind.DISCONNECTED, error=error)
        await self._quiet_disconnect(connection)  # release stack resources of a half-dead link
        return error

    def _give_up(self, error: BleTransportError, attempt: int) -> None:
        self._state = LinkState.GAVE_UP
        self.last_error = error
        _log.warning(
            "ble.link.gave_up",
            extra={"address": self.address, "attempts": attempt, "error": type(error).__name__},
        )
        self._emit(LinkEventKind.GAVE_UP, attempt=attempt, error=error)
        self._resolve_waiters(error)

    def _on_disconnect(self, generation: int) -> None:
        if generation == self._generation:
            self._lost.set()

    def _deliverer(self, uuid: str) -> RawNotificationCallback:
        subscriptions = self._subscriptions
        now = self._clock.now
        address = self.address

        def deliver(data: bytes) -> None:
            handler = subscriptions.get(uuid)
            if handler is None:
                return
            try:
                handler(uuid, data, now())
            except Exception:
                _log.exception("ble.notification_handler_failed", extra={"address": address, "char": uuid})

        return deliver

    # --- helpers -------------------------------------------------------------------------------------

    async def _operation(self, awaitable: Awaitable[_T]) -> _T:
        try:
            async with asyncio.timeout(self._policy.operation_timeout):
                return await awaitable
        except TimeoutError as exc:
            raise ConnectionTimeoutError("GATT operation timed out", address=self.address) from exc

    async def _quiet_disconnect(self, connection: BackendConnection) -> None:
        try:
            async with asyncio.timeout(self._policy.operation_timeout):
                await connection.disconnect()
        except (BleTransportError, TimeoutError) as exc:
            _log.warning("ble.link.disconnect_failed", extra={"address": self.address, "error": repr(exc)})

    def _as_transport_error(self, exc: Exception) -> BleTransportError:
        if isinstance(exc, BleTransportError):
            return exc
        # A backend broke its contract; keep supervising rather than let the device go dark silently.
        _log.error("ble.link.unexpected_error", exc_info=exc, extra={"address": self.address})
        error = BleTransportError(f"unexpected {type(exc).__name__}: {exc}", address=self.address)
        error.__cause__ = exc
        return error

    def _emit(
        self,
        kind: LinkEventKind,
        *,
        attempt: int = 0,
        delay: float | None = None,
        error: BleTransportError | None = None,
        rssi: int | None = None,
    ) -> None:
        self._emit_event(
            LinkEvent(
                kind=kind,
                address=self.address,
                at=self._clock.now(),
                attempt=attempt,
                delay=delay,
                error=error,
                rssi=rssi,
            )
        )

    def _resolve_waiters(self, error: BaseException | None) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if future.done():
                continue
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    def _ensure_open(self) -> None:
        if self._state is LinkState.CLOSED:
            raise TransportClosedError("link is closed", address=self.address)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, Exception):
            # Only a bug gets here (the loop converts backend errors); fail waiters instead of hanging them.
            _log.error("ble.link.supervisor_crashed", exc_info=exc, extra={"address": self.address})
            self._give_up(self._as_transport_error(exc), 0)
