"""BLE transport: scan for health devices, keep supervised links, move notification bytes to the caller.

The same `ConnectionManager` retry/reconnect code runs over bleak (`BleakTransport`, real adapters) and over
the in-process simulator (`SimulatedTransport`). Parsing lives in `devices.gatt`; this package moves bytes.
`BleakTransport` is imported lazily so hosts without bleak (the cloud) can use the simulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devices.ble.backend import BackendConnection, BleBackend
from devices.ble.backoff import RetryPolicy, backoff_delay, is_retryable, retry_delay
from devices.ble.clock import SYSTEM_CLOCK, Clock, SystemClock
from devices.ble.errors import (
    AdapterUnavailableError,
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionTimeoutError,
    DeviceGoneError,
    DeviceNotFoundError,
    NotConnectedError,
    OutOfConnectionSlotsError,
    PairingRequiredError,
    TransportClosedError,
)
from devices.ble.events import EventStream
from devices.ble.link import DeviceLink
from devices.ble.models import (
    CharProperty,
    DiscoveredDevice,
    EventHandler,
    LinkEvent,
    LinkEventKind,
    LinkState,
    NotificationHandler,
    normalize_address,
)
from devices.ble.sim_backend import SimulatedBackend, SimulatedTransport
from devices.ble.sim_radio import AirFault, SimulatedPeripheral, SimulatedRadio, SimulationError
from devices.ble.transport import BleTransport, ConnectionManager
from devices.ble.uuids import HEALTH_SERVICE_UUIDS, normalize_uuid, uuid16

if TYPE_CHECKING:
    from devices.ble.bleak_adapter import BleakBackend, BleakTransport

__all__ = [
    "HEALTH_SERVICE_UUIDS",
    "SYSTEM_CLOCK",
    "AdapterUnavailableError",
    "AirFault",
    "BackendConnection",
    "BleBackend",
    "BleTransport",
    "BleTransportError",
    "BleakBackend",
    "BleakTransport",
    "CharProperty",
    "CharacteristicNotFoundError",
    "Clock",
    "ConnectionManager",
    "ConnectionTimeoutError",
    "DeviceGoneError",
    "DeviceLink",
    "DeviceNotFoundError",
    "DiscoveredDevice",
    "EventHandler",
    "EventStream",
    "LinkEvent",
    "LinkEventKind",
    "LinkState",
    "NotConnectedError",
    "NotificationHandler",
    "OutOfConnectionSlotsError",
    "PairingRequiredError",
    "RetryPolicy",
    "SimulatedBackend",
    "SimulatedPeripheral",
    "SimulatedRadio",
    "SimulatedTransport",
    "SimulationError",
    "SystemClock",
    "TransportClosedError",
    "backoff_delay",
    "is_retryable",
    "normalize_address",
    "normalize_uuid",
    "retry_delay",
    "uuid16",
]


def __getattr__(name: str) -> Any:
    if name in ("BleakBackend", "BleakTransport"):
        from devices.ble import bleak_adapter

        return getattr(bleak_adapter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
