"""Values the transport hands to its callers: discovered devices, link states and link events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from devices.ble.errors import BleTransportError

# (characteristic uuid, payload, receive time in seconds since the epoch) -> None.
# Called on the event loop for every notification or indication; it must not block.
NotificationHandler = Callable[[str, bytes, float], None]


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    """One advertiser seen by a scan. `name` is the advertised local name; it may be None."""

    address: str
    name: str | None
    rssi: int
    service_uuids: tuple[str, ...]


class CharProperty(StrEnum):
    """GATT characteristic properties (Core v5.4, Vol 3, Part G, 3.3.1.1); values match bleak's names."""

    READ = "read"
    WRITE = "write"
    NOTIFY = "notify"
    INDICATE = "indicate"


class LinkState(StrEnum):
    """Where a device link is in its life cycle."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backing_off"
    GAVE_UP = "gave_up"
    CLOSED = "closed"


class LinkEventKind(StrEnum):
    """What happened to a device link."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"
    GAVE_UP = "gave_up"
    RSSI = "rssi"


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A link event. `attempt` is the attempt that succeeded (connected), failed (gave_up) or comes next
    (reconnecting, after `delay` seconds); `error` is the cause of disconnected/reconnecting/gave_up."""

    kind: LinkEventKind
    address: str
    at: float
    attempt: int = 0
    delay: float | None = None
    error: BleTransportError | None = None
    rssi: int | None = None


EventHandler = Callable[[LinkEvent], None]


def normalize_address(address: str) -> str:
    """Canonical form of a device address: BlueZ's upper-case "AA:BB:CC:DD:EE:FF" (macOS UUIDs upper-cased)."""
    return address.strip().upper()
