"""Heart Rate Measurement 0x2A37 (Heart Rate Service 1.0; GATT Specification Supplement).

Flags (UINT8): bit 0 value format (0 UINT8, 1 UINT16 bpm); bits 1-2 sensor contact (bit 2 = the
feature is supported, bit 1 = contact detected); bit 3 Energy Expended present (UINT16, kJ); bit 4
RR-Interval present (UINT16 each, 1/1024 s); bits 5-7 reserved. RR-Intervals are the last field and
fill the rest of the notification (one or more), so their count is the leftover length / 2 and an odd
leftover byte is garbage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from devices.gatt.fields import UINT8, UINT16
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec, check
from devices.gatt.reading import ENERGY_EXPENDED, HEART_RATE, RR_INTERVAL, Reading, quality_of
from devices.gatt.uuids import HEART_RATE_MEASUREMENT

FLAG_UINT16: Final = 0x01
FLAG_CONTACT_DETECTED: Final = 0x02
FLAG_CONTACT_SUPPORTED: Final = 0x04
FLAG_ENERGY_EXPENDED: Final = 0x08
FLAG_RR_INTERVALS: Final = 0x10
RR_UNITS_PER_SECOND: Final = 1024  # RR-Interval resolution is 1/1024 s (HRS 1.0)

LAYOUT: Final = Layout(
    HEART_RATE_MEASUREMENT,
    (
        Field("bpm", UINT8, unless=FLAG_UINT16),
        Field("bpm", UINT16, when=FLAG_UINT16),
        Field("energy_expended", UINT16, when=FLAG_ENERGY_EXPENDED),
        Field("rr_intervals", UINT16, when=FLAG_RR_INTERVALS, repeated=True),
    ),
    value_flags=FLAG_CONTACT_DETECTED | FLAG_CONTACT_SUPPORTED,
)

NO_CONTACT: Final = "sensor_contact_not_detected"


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """A heart rate notification.

    `sensor_contact` is None when the sensor does not support contact detection; `energy_expended` is
    kJ since the last reset; `rr_intervals_s` are beat-to-beat intervals in seconds (1/1024 s steps).
    """

    bpm: int
    sensor_contact: bool | None = None
    energy_expended: int | None = None
    rr_intervals_s: tuple[float, ...] = ()


def parse(payload: bytes) -> HeartRateMeasurement:
    """The measurement in a 0x2A37 payload; raises GattDecodeError if malformed."""
    flags, values = LAYOUT.unpack(payload)
    return HeartRateMeasurement(
        bpm=values["bpm"],
        sensor_contact=bool(flags & FLAG_CONTACT_DETECTED) if flags & FLAG_CONTACT_SUPPORTED else None,
        energy_expended=values.get("energy_expended"),
        rr_intervals_s=tuple(raw / RR_UNITS_PER_SECOND for raw in values.get("rr_intervals", ())),
    )


def encode(m: HeartRateMeasurement) -> bytes:
    """The 0x2A37 payload for `m`: UINT8 format when bpm fits, optional fields flagged as present."""
    check(HEART_RATE_MEASUREMENT, 0 <= m.bpm <= 0xFFFF, f"bpm {m.bpm} out of range 0..65535")
    flags = FLAG_UINT16 if m.bpm > 0xFF else 0
    if m.sensor_contact is not None:
        flags |= FLAG_CONTACT_SUPPORTED | (FLAG_CONTACT_DETECTED if m.sensor_contact else 0)
    if m.energy_expended is not None:
        flags |= FLAG_ENERGY_EXPENDED
    rr_raw = tuple(round(s * RR_UNITS_PER_SECOND) for s in m.rr_intervals_s)
    if rr_raw:
        flags |= FLAG_RR_INTERVALS
    return LAYOUT.pack(flags, {"bpm": m.bpm, "energy_expended": m.energy_expended, "rr_intervals": rr_raw})


def _status(sensor_contact: bool | None) -> tuple[str, ...]:
    return (NO_CONTACT,) if sensor_contact is False else ()


def readings(m: HeartRateMeasurement) -> list[Reading]:
    """Heart rate, then energy expended, then one rr_interval reading per RR-Interval, in order."""
    flags = _status(m.sensor_contact)
    quality = quality_of(flags)
    out = [Reading(HEART_RATE, float(m.bpm), "/min", flags=flags, quality=quality)]
    if m.energy_expended is not None:
        out.append(Reading(ENERGY_EXPENDED, float(m.energy_expended), "kJ", flags=flags, quality=quality))
    out.extend(Reading(RR_INTERVAL, rr, "s", flags=flags, quality=quality) for rr in m.rr_intervals_s)
    return out


# Fast path for the commonest notification: 2 bytes, UINT8 bpm, no optional field.
_SLOW_FLAGS: Final = FLAG_UINT16 | FLAG_ENERGY_EXPENDED | FLAG_RR_INTERVALS
_CONTACT_BITS: Final = FLAG_CONTACT_SUPPORTED | FLAG_CONTACT_DETECTED
# Flag bits 1-2 -> (status names, their Quality), precomputed for the fast path.
_CONTACT: Final = {
    0: ((), quality_of(())),
    FLAG_CONTACT_DETECTED: ((), quality_of(())),  # "detected" without "supported": not supported (HRS 1.0)
    FLAG_CONTACT_SUPPORTED: ((NO_CONTACT,), quality_of((NO_CONTACT,))),
    _CONTACT_BITS: ((), quality_of(())),
}


def decode(payload: bytes) -> list[Reading]:
    """Readings of a 0x2A37 payload (same result as readings(parse(payload)), faster for the 2-byte form)."""
    if len(payload) == 2:
        flags = payload[0]
        if not flags & _SLOW_FLAGS:
            status, quality = _CONTACT[flags & _CONTACT_BITS]
            return [Reading(HEART_RATE, float(payload[1]), "/min", None, status, quality)]
    return readings(parse(payload))


CODEC: Final[CharacteristicCodec[HeartRateMeasurement]] = characteristic_codec(
    HEART_RATE_MEASUREMENT, "Heart Rate Measurement", (HeartRateMeasurement,),
    parse=parse, encode=encode, readings=readings, decode=decode,
)
