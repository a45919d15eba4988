"""The small low-level interface each radio implementation provides (bleak, simulator).

Everything above it (retry, backoff, reconnect, re-subscribe, events, concurrency) is shared code in
`devices.ble.link` and `devices.ble.transport`, so the edge runs the same logic against hardware and simulators.
Implementations raise only `devices.ble.errors` types.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from devices.ble.models import DiscoveredDevice

# Receives the raw value of one notification or indication, called on the event loop.
RawNotificationCallback = Callable[[bytes], None]


class BackendConnection(Protocol):
    """One live GATT connection to one peripheral."""

    @property
    def address(self) -> str: ...

    @property
    def rssi(self) -> int | None:
        """Signal strength of the advertisement the connection was made from, when known."""
        ...

    @property
    def is_connected(self) -> bool: ...

    async def start_notify(self, char_uuid: str, callback: RawNotificationCallback) -> None:
        """Enable notifications or indications (whichever the characteristic has) by writing its CCCD."""
        ...

    async def stop_notify(self, char_uuid: str) -> None: ...

    async def read(self, char_uuid: str) -> bytes: ...

    async def disconnect(self) -> None:
        """Close the link; idempotent, never raises for an already dropped link."""
        ...


class BleBackend(Protocol):
    """Scanning and connecting on one adapter."""

    async def scan(self, *, service_uuids: frozenset[str], timeout: float) -> list[DiscoveredDevice]:
        """Advertisers seen during `timeout` seconds that advertise any of `service_uuids` (all if empty)."""
        ...

    async def connect(self, address: str, *, timeout: float, on_disconnect: Callable[[], None]) -> BackendConnection:
        """Connect and discover services. `on_disconnect` is called on the loop when the link drops;
        like bleak's disconnected_callback it may also fire after a local disconnect()."""
        ...

    async def close(self) -> None:
        """Release adapter resources; connections are closed by their owners first."""
        ...
