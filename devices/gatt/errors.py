"""The typed errors of the GATT codecs: one for bytes we cannot decode, one for values we cannot encode."""

from __future__ import annotations


def characteristic_label(characteristic: int) -> str:
    """How a characteristic is named in messages: '0x2A37', or '?' when it is not a SIG 16-bit UUID."""
    return f"0x{characteristic:04X}" if characteristic >= 0 else "?"


class GattDecodeError(ValueError):
    """A payload that does not follow its characteristic's layout.

    `characteristic` is the 16-bit UUID (-1 when the UUID itself is not one we know) and `offset`
    the byte at which decoding failed, so a log line points at the exact fault.
    """

    def __init__(self, characteristic: int, offset: int, reason: str) -> None:
        super().__init__(f"{characteristic_label(characteristic)} at byte {offset}: {reason}")
        self.characteristic = characteristic
        self.offset = offset
        self.reason = reason

    def __reduce__(self) -> tuple[type[GattDecodeError], tuple[int, int, str]]:
        # Keeps the error picklable (process pools, multiprocessing queues) despite the custom __init__.
        return (type(self), (self.characteristic, self.offset, self.reason))


class UnknownCharacteristicError(GattDecodeError):
    """A characteristic (UUID) that no codec here handles."""

    def __init__(self, characteristic: int, uuid: str) -> None:
        GattDecodeError.__init__(self, characteristic, 0, f"unknown characteristic {uuid!r}")
        self.uuid = uuid

    def __reduce__(self) -> tuple[type[UnknownCharacteristicError], tuple[int, str]]:  # type: ignore[override]
        return (type(self), (self.characteristic, self.uuid))


class GattEncodeError(ValueError):
    """A measurement that cannot be represented in its characteristic's layout (out of range, inconsistent)."""

    def __init__(self, characteristic: int, reason: str) -> None:
        super().__init__(f"{characteristic_label(characteristic)}: {reason}")
        self.characteristic = characteristic
        self.reason = reason

    def __reduce__(self) -> tuple[type[GattEncodeError], tuple[int, str]]:
        return (type(self), (self.characteristic, self.reason))


class FieldValueError(ValueError):
    """Raised by a field codec for a value it rejects; the layout adds the characteristic and offset.

    Internal to the package: it never crosses the public API (the layout turns it into GattDecodeError
    or GattEncodeError).
    """
