"""Respiratory Rate Measurement of the telemed chest patch: a vendor characteristic, laid out like the SIG ones.

No Bluetooth SIG service carries a respiratory rate, so the patch (impedance pneumography) exposes a vendor
service with one notified characteristic (128-bit UUIDs below; devices.ble.uuids carries the same values for
the scan filter). Its value follows the conventions of the SIG health measurements, little-endian:

    Flags (UINT8)            bit 0 Time Stamp present; bit 1 Status present; bits 2-7 reserved (ignored)
    Respiratory Rate         SFLOAT (IEEE 11073-20601), breaths/min; NaN when no rate can be counted
    Time Stamp (optional)    Date Time (7 bytes, device-local time), when the rate was computed
    Status (optional)        UINT8: bit 0 electrode contact not detected, bit 1 body movement during the
                             counting window, bit 2 poor signal, bit 3 early estimate (fewer breaths than a
                             full window since contact), bit 4 device battery low, bits 5-7 reserved

The status names are the ones the SIG profiles use for the same conditions, so they map to the same
Quality bits (devices.gatt.reading.FLAG_QUALITY). A notification with a NaN rate yields no reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from devices.gatt.errors import GattDecodeError, GattEncodeError
from devices.gatt.fields import DATE_TIME, SFLOAT, UINT8, BitNames, Codec
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec, is_number
from devices.gatt.reading import Reading, quality_of

# Vendor UUIDs: one random (version 4) base; service and characteristic differ in the first group only.
SERVICE_UUID: Final = "2ba70001-ec60-4ce7-9da5-e5eb1420c710"
RESPIRATORY_RATE_UUID: Final = "2ba70002-ec60-4ce7-9da5-e5eb1420c710"
# Not a SIG 16-bit UUID: errors label it "?" (devices.gatt.errors); look it up by RESPIRATORY_RATE_UUID.
CHARACTERISTIC: Final = -1
NAME: Final = "Chest Patch Respiratory Rate"

RESPIRATORY_RATE: Final = "respiratory_rate"

FLAG_TIMESTAMP: Final = 0x01
FLAG_STATUS: Final = 0x02

STATUS: Final = BitNames.single({
    0: "sensor_contact_not_detected",
    1: "body_movement",
    2: "poor_signal",
    3: "early_estimate",
    4: "device_battery_low",
})
STATUS_FIELD: Final = Codec("UINT8", UINT8.fmt, 1, STATUS.names, STATUS.encode)

LAYOUT: Final = Layout(
    CHARACTERISTIC,
    (
        Field("rate", SFLOAT),
        Field("timestamp", DATE_TIME, when=FLAG_TIMESTAMP),
        Field("status", STATUS_FIELD, when=FLAG_STATUS),
    ),
)


@dataclass(frozen=True, slots=True)
class RespiratoryRateMeasurement:
    """A breathing rate in breaths/min (None: NaN, nothing counted); `status` None when the field is absent."""

    rate: float | None
    timestamp: datetime | None = None
    status: tuple[str, ...] | None = None


def parse(payload: bytes) -> RespiratoryRateMeasurement:
    """The measurement in a chest-patch payload; raises GattDecodeError if malformed."""
    try:
        _, v = LAYOUT.unpack(payload)
    except GattDecodeError as exc:
        raise GattDecodeError(CHARACTERISTIC, exc.offset, f"{NAME}: {exc.reason}") from None
    return RespiratoryRateMeasurement(v["rate"], v.get("timestamp"), v.get("status"))


def encode(m: RespiratoryRateMeasurement) -> bytes:
    """The payload for `m` (None rate encodes as NaN)."""
    flags = (FLAG_TIMESTAMP if m.timestamp is not None else 0) | (FLAG_STATUS if m.status is not None else 0)
    try:
        return LAYOUT.pack(flags, {"rate": m.rate, "timestamp": m.timestamp, "status": m.status})
    except GattEncodeError as exc:
        raise GattEncodeError(CHARACTERISTIC, f"{NAME}: {exc.reason}") from None


def readings(m: RespiratoryRateMeasurement) -> list[Reading]:
    """One respiratory_rate reading in /min with the status names as flags; none for NaN/NRes/INF."""
    if not is_number(m.rate):
        return []
    assert m.rate is not None
    flags = m.status or ()
    return [Reading(RESPIRATORY_RATE, m.rate, "/min", m.timestamp, flags, quality_of(flags))]


CODEC: Final[CharacteristicCodec[RespiratoryRateMeasurement]] = characteristic_codec(
    CHARACTERISTIC, NAME, (RespiratoryRateMeasurement,), parse=parse, encode=encode, readings=readings,
)
