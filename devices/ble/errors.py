"""Typed errors of the BLE transport; adapters translate library errors into these."""

from __future__ import annotations


class BleTransportError(Exception):
    """Base of every BLE transport error; a bare instance is a transient radio or stack failure."""

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} [{self.address}]" if self.address else text


class DeviceNotFoundError(BleTransportError):
    """The adapter does not know the device: it was never seen advertising or has been forgotten."""


class OutOfConnectionSlotsError(BleTransportError):
    """No connection slot is free on the adapter (or the peripheral accepts no more centrals)."""


class DeviceGoneError(BleTransportError):
    """The link dropped (out of range, powered off, remote disconnect) before or during an operation."""


class NotConnectedError(DeviceGoneError):
    """An operation needs a connected link and the device is currently not connected."""


class ConnectionTimeoutError(BleTransportError):
    """A connect or GATT operation did not complete in time; usually weak signal or a sleeping device."""


class AdapterUnavailableError(BleTransportError):
    """The local adapter is missing, powered off, or bluetoothd/D-Bus refuses us (permissions)."""


class CharacteristicNotFoundError(BleTransportError):
    """The device has no such characteristic, or it lacks the property asked for; retrying cannot help."""


class PairingRequiredError(BleTransportError):
    """The device needs an encrypted, bonded link (ATT insufficient authentication/encryption)."""


class TransportClosedError(BleTransportError):
    """The transport or link has been shut down."""
