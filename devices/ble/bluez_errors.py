"""Classify BlueZ, D-Bus and ATT failures into our error types. Pure: it reads text and codes only, so the
rules are testable without bleak, and the bleak adapter stays a thin translation layer."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Final

from devices.ble.errors import (
    AdapterUnavailableError,
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionTimeoutError,
    DeviceGoneError,
    DeviceNotFoundError,
    OutOfConnectionSlotsError,
    PairingRequiredError,
)

# First match wins. Connection failure reasons are BlueZ's machine-readable strings (src/error.h, BlueZ >= 5.62)
# with the strerror() text older BlueZ sent for the same errno; slot texts are bleak-retry-connector's
# OUT_OF_SLOTS_ERRORS and the HCI status names of Core v5.4, Vol 1, Part F, 1.3.
_RULES: Final[tuple[tuple[re.Pattern[str], type[BleTransportError]], ...]] = tuple(
    (re.compile(pattern, re.IGNORECASE), error_type)
    for pattern, error_type in (
        (r"connection slot|available connection", OutOfConnectionSlotsError),
        (r"le-connection-concurrent-connection-limit|too many links", OutOfConnectionSlotsError),  # EMLINK
        (r"connection limit exceeded|limited resources", OutOfConnectionSlotsError),  # HCI 0x09, 0x0D
        (r"le-connection-key-missing|org\.bluez\.error\.authentication", PairingRequiredError),
        (r"insufficient (authentication|encryption|authorization)|not paired", PairingRequiredError),
        (r"adapter '.*' not found|no bluetooth adapters", AdapterUnavailableError),
        (r"le-connection-adapter-not-powered", AdapterUnavailableError),
        (r"org\.bluez\.error\.notready|resource not ready", AdapterUnavailableError),  # powered off
        # bluetoothd not running / D-Bus policy refuses us (not root, not in the bluetooth group)
        (r"org\.freedesktop\.dbus\.error\.(serviceunknown|accessdenied)", AdapterUnavailableError),
        (r"org\.freedesktop\.dbus\.error\.unknownobject|org\.bluez\.error\.doesnotexist", DeviceNotFoundError),
        (r"device with address .* was not found", DeviceNotFoundError),
        # StartNotify on a characteristic without notify/indicate; read/write on one without the property
        (r"org\.bluez\.error\.notsupported|org\.bluez\.error\.notpermitted", CharacteristicNotFoundError),
        (r"le-connection-timeout|connection timed out", ConnectionTimeoutError),
        (r"le-connection-abort-by-remote|org\.bluez\.error\.notconnected", DeviceGoneError),
        (r"\bnot connected\b|device disconnected|connection reset by peer", DeviceGoneError),
    )
)

# ATT error codes, Core v5.4, Vol 3, Part F, 3.4.1.1, Table 3.4.
_ATT_ERRORS: Final = MappingProxyType(
    {
        0x01: CharacteristicNotFoundError,  # Invalid Handle
        0x02: CharacteristicNotFoundError,  # Read Not Permitted
        0x03: CharacteristicNotFoundError,  # Write Not Permitted
        0x05: PairingRequiredError,  # Insufficient Authentication
        0x06: CharacteristicNotFoundError,  # Request Not Supported
        0x08: PairingRequiredError,  # Insufficient Authorization
        0x0A: CharacteristicNotFoundError,  # Attribute Not Found
        0x0C: PairingRequiredError,  # Insufficient Encryption Key Size
        0x0F: PairingRequiredError,  # Insufficient Encryption
    }
)


def classify_error_text(text: str) -> type[BleTransportError]:
    """Error type for a BlueZ/D-Bus/bleak message; unknown text is a transient `BleTransportError`
    (e.g. "le-connection-abort-by-local", "org.bluez.Error.InProgress", ESP32 proxy GATT errors)."""
    for pattern, error_type in _RULES:
        if pattern.search(text):
            return error_type
    return BleTransportError


def classify_att_error(code: int) -> type[BleTransportError]:
    """Error type for an ATT Error Response code; codes not listed are transient."""
    return _ATT_ERRORS.get(code, BleTransportError)
