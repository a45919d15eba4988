"""The BLE transport the edge collector uses: the `BleTransport` interface and `ConnectionManager`, its one
implementation over any `BleBackend` (bleak on real adapters, the in-process simulator elsewhere)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Protocol, Self

from devices.ble.backend import BleBackend
from devices.ble.backoff import RetryPolicy
from devices.ble.clock import SYSTEM_CLOCK, Clock
from devices.ble.errors import ConnectionTimeoutError, NotConnectedError, TransportClosedError
from devices.ble.events import EventHub, EventStream
from devices.ble.gate import AdapterGate
from devices.ble.link import DeviceLink
from devices.ble.models import (
    DiscoveredDevice,
    EventHandler,
    LinkEvent,
    LinkEventKind,
    NotificationHandler,
    normalize_address,
)
from devices.ble.uuids import HEALTH_SERVICE_UUIDS, normalize_uuid

_log = logging.getLogger(__name__)


class BleTransport(Protocol):
    """Scan for health devices, keep supervised links to them, and move bytes; knows nothing of parsing."""

    async def scan(
        self,
        *,
        service_uuids: Iterable[str | int] = HEALTH_SERVICE_UUIDS,
        allowlist: Iterable[str] | None = None,
        timeout: float = 5.0,
    ) -> list[DiscoveredDevice]:
        """Devices advertising any of `service_uuids` (any device if empty), limited to `allowlist`
        addresses when given, strongest signal first."""
        ...

    async def connect(
        self,
        address: str,
        *,
        subscriptions: Mapping[str | int, NotificationHandler] | None = None,
        wait: bool = True,
    ) -> DeviceLink:
        """Supervise a link to `address` (idempotent) with these subscriptions. With `wait`, return once
        connected or raise the typed error the link gave up on."""
        ...

    def link(self, address: str) -> DeviceLink | None:
        """The supervised link to `address`, if any."""
        ...

    async def read(self, address: str, char_uuid: str | int) -> bytes:
        """Read a characteristic of a connected device."""
        ...

    async def disconnect(self, address: str) -> None:
        """Stop supervising `address` and close its link."""
        ...

    def add_event_handler(self, handler: EventHandler) -> Callable[[], None]:
        """Call `handler` for every link event; returns the function that unregisters it."""
        ...

    def events(self, maxlen: int = 4096) -> EventStream:
        """An async iterator of link events from now until close()."""
        ...

    async def close(self) -> None:
        """Close every link and the adapter; leaves no task behind."""
        ...


class ConnectionManager:
    """`BleTransport` over a low-level backend: one supervised `DeviceLink` (one task) per device, a bounded
    number of concurrent connection attempts, scans that hold the adapter alone."""

    def __init__(
        self,
        backend: BleBackend,
        *,
        policy: RetryPolicy | None = None,
        max_concurrent_connects: int = 2,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self._backend = backend
        self._policy = policy or RetryPolicy()
        self._gate = AdapterGate(max_concurrent_connects)
        self._clock = clock
        self._rng = rng or random.Random()
        self._hub = EventHub()
        self._links: dict[str, DeviceLink] = {}
        self._closed = False

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    @property
    def links(self) -> Mapping[str, DeviceLink]:
        """Supervised links by normalised address."""
        return self._links

    async def scan(
        self,
        *,
        service_uuids: Iterable[str | int] = HEALTH_SERVICE_UUIDS,
        allowlist: Iterable[str] | None = None,
        timeout: float = 5.0,
    ) -> list[DiscoveredDevice]:
        self._ensure_open()
        wanted = frozenset(normalize_uuid(uuid) for uuid in service_uuids)
        allowed = None if allowlist is None else {normalize_address(address) for address in allowlist}
        async with self._gate.scan_permit():
            try:
                async with asyncio.timeout(timeout + self._policy.operation_timeout):
                    found = await self._backend.scan(service_uuids=wanted, timeout=timeout)
            except TimeoutError as exc:
                raise ConnectionTimeoutError("scan did not finish") from exc
        devices: dict[str, DiscoveredDevice] = {}
        for device in found:
            address = normalize_address(device.address)
            # The stack filters too, but BlueZ also reports devices it already knew; filter again here.
            if wanted and wanted.isdisjoint(device.service_uuids):
                continue
            if allowed is not None and address not in allowed:
                continue
            devices[address] = device
        result = sorted(devices.values(), key=lambda device: device.rssi, reverse=True)
        now = self._clock.now()
        for device in result:
            link = self._links.get(normalize_address(device.address))
            if link is not None:
                link.rssi = device.rssi
                self._hub.emit(LinkEvent(LinkEventKind.RSSI, link.address, now, rssi=device.rssi))
        _log.debug("ble.scan.done", extra={"found": len(found), "matched": len(result)})
        return result

    async def connect(
        self,
        address: str,
        *,
        subscriptions: Mapping[str | int, NotificationHandler] | None = None,
        wait: bool = True,
    ) -> DeviceLink:
        self._ensure_open()
        key = normalize_address(address)
        link = self._links.get(key)
        if link is None:
            link = DeviceLink(
                key,
                backend=self._backend,
                gate=self._gate,
                policy=self._policy,
                clock=self._clock,
                rng=self._rng,
                emit=self._hub.emit,
            )
            self._links[key] = link
        for char_uuid, handler in (subscriptions or {}).items():
            await link.subscribe(char_uuid, handler)
        link.start()
        if wait:
            await link.wait_connected()
        return link

    def link(self, address: str) -> DeviceLink | None:
        return self._links.get(normalize_address(address))

    async def read(self, address: str, char_uuid: str | int) -> bytes:
        link = self.link(address)
        if link is None:
            raise NotConnectedError("no link to this device; connect first", address=normalize_address(address))
        return await link.read(char_uuid)

    async def disconnect(self, address: str) -> None:
        link = self._links.pop(normalize_address(address), None)
        if link is not None:
            await link.close()

    def add_event_handler(self, handler: EventHandler) -> Callable[[], None]:
        return self._hub.add_handler(handler)

    def events(self, maxlen: int = 4096) -> EventStream:
        return self._hub.stream(maxlen)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.close() for link in links))
        await self._backend.close()
        self._hub.close()
        _log.info("ble.transport.closed", extra={"links": len(links)})

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise TransportClosedError("transport is closed")
