"""Blood Pressure Measurement 0x2A35 and Intermediate Cuff Pressure 0x2A36 (BLS 1.1.1; GATT Supplement).

Both share one layout. Flags (UINT8): bit 0 unit (0 mmHg, 1 kPa); bit 1 Time Stamp present; bit 2
Pulse Rate present (SFLOAT, beats/min); bit 3 User ID present (UINT8, 0xFF = unknown user); bit 4
Measurement Status present (16 bits); bits 5-7 reserved. Three SFLOATs always follow the flags:
systolic, diastolic, mean arterial pressure. In 0x2A36 the first is the current cuff pressure and the
other two are unused (the spec says NaN; some devices send 0, so their content is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from devices.gatt.fields import DATE_TIME, SFLOAT, UINT8, BitName, BitNames, Codec
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec, check, is_number, user_of
from devices.gatt.reading import (
    CUFF_PRESSURE,
    DIASTOLIC_BP,
    HEART_RATE,
    MEAN_BP,
    SYSTOLIC_BP,
    Reading,
    quality_of,
)
from devices.gatt.uuids import BLOOD_PRESSURE_MEASUREMENT, INTERMEDIATE_CUFF_PRESSURE
from proto.units import kpa_to_mmhg

BloodPressureUnit = Literal["mmHg", "kPa"]

FLAG_KPA: Final = 0x01
FLAG_TIMESTAMP: Final = 0x02
FLAG_PULSE_RATE: Final = 0x04
FLAG_USER_ID: Final = 0x08
FLAG_STATUS: Final = 0x10

# Measurement Status: bits 3-4 are a 2-bit Pulse Rate Range (0 within range, 1 exceeds upper limit,
# 2 below lower limit, 3 reserved); bits 6-15 reserved.
STATUS: Final = BitNames((
    BitName("body_movement", 0x0001, 0x0001),
    BitName("cuff_too_loose", 0x0002, 0x0002),
    BitName("irregular_pulse", 0x0004, 0x0004),
    BitName("pulse_rate_above_range", 0x0018, 0x0008),
    BitName("pulse_rate_below_range", 0x0018, 0x0010),
    BitName("improper_position", 0x0020, 0x0020),
))
STATUS_FIELD: Final = Codec("UINT16", "H", 2, STATUS.names, STATUS.encode)

_FIELDS: Final = (
    Field("systolic", SFLOAT),
    Field("diastolic", SFLOAT),
    Field("mean", SFLOAT),
    Field("timestamp", DATE_TIME, when=FLAG_TIMESTAMP),
    Field("pulse_rate", SFLOAT, when=FLAG_PULSE_RATE),
    Field("user_id", UINT8, when=FLAG_USER_ID),
    Field("status", STATUS_FIELD, when=FLAG_STATUS),
)
MEASUREMENT_LAYOUT: Final = Layout(BLOOD_PRESSURE_MEASUREMENT, _FIELDS, value_flags=FLAG_KPA)
CUFF_LAYOUT: Final = Layout(INTERMEDIATE_CUFF_PRESSURE, _FIELDS, value_flags=FLAG_KPA)


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    """A final blood pressure result. Pressures in `unit`; None is NaN/NRes (not measured).

    `status` is None when the Measurement Status field is absent, else the set conditions in spec order.
    """

    systolic: float | None
    diastolic: float | None
    mean: float | None
    unit: BloodPressureUnit = "mmHg"
    timestamp: datetime | None = None
    pulse_rate: float | None = None
    user_id: int | None = None
    status: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class IntermediateCuffPressure:
    """The cuff pressure while a measurement is in progress (device status, not a blood pressure)."""

    cuff_pressure: float | None
    unit: BloodPressureUnit = "mmHg"
    timestamp: datetime | None = None
    pulse_rate: float | None = None
    user_id: int | None = None
    status: tuple[str, ...] | None = None


def _flags(characteristic: int, unit: str, timestamp: Any, pulse_rate: Any, user_id: Any, status: Any) -> int:
    check(characteristic, unit in ("mmHg", "kPa"), f"unit must be 'mmHg' or 'kPa', not {unit!r}")
    flags = FLAG_KPA if unit == "kPa" else 0
    if timestamp is not None:
        flags |= FLAG_TIMESTAMP
    if pulse_rate is not None:
        flags |= FLAG_PULSE_RATE
    if user_id is not None:
        flags |= FLAG_USER_ID
    if status is not None:
        flags |= FLAG_STATUS
    return flags


def _unit(flags: int) -> BloodPressureUnit:
    return "kPa" if flags & FLAG_KPA else "mmHg"


def parse_measurement(payload: bytes) -> BloodPressureMeasurement:
    """The measurement in a 0x2A35 payload; raises GattDecodeError if malformed."""
    flags, v = MEASUREMENT_LAYOUT.unpack(payload)
    return BloodPressureMeasurement(
        v["systolic"], v["diastolic"], v["mean"], _unit(flags),
        v.get("timestamp"), v.get("pulse_rate"), v.get("user_id"), v.get("status"),
    )


def parse_cuff(payload: bytes) -> IntermediateCuffPressure:
    """The cuff pressure in a 0x2A36 payload; raises GattDecodeError if malformed."""
    flags, v = CUFF_LAYOUT.unpack(payload)
    return IntermediateCuffPressure(
        v["systolic"], _unit(flags), v.get("timestamp"), v.get("pulse_rate"), v.get("user_id"), v.get("status"),
    )


def encode_measurement(m: BloodPressureMeasurement) -> bytes:
    """The 0x2A35 payload for `m` (None pressures encode as NaN)."""
    flags = _flags(BLOOD_PRESSURE_MEASUREMENT, m.unit, m.timestamp, m.pulse_rate, m.user_id, m.status)
    return MEASUREMENT_LAYOUT.pack(flags, {
        "systolic": m.systolic, "diastolic": m.diastolic, "mean": m.mean, "timestamp": m.timestamp,
        "pulse_rate": m.pulse_rate, "user_id": m.user_id, "status": m.status,
    })


def encode_cuff(m: IntermediateCuffPressure) -> bytes:
    """The 0x2A36 payload for `m`: diastolic and mean arterial pressure sent as NaN, as BLS requires."""
    flags = _flags(INTERMEDIATE_CUFF_PRESSURE, m.unit, m.timestamp, m.pulse_rate, m.user_id, m.status)
    return CUFF_LAYOUT.pack(flags, {
        "systolic": m.cuff_pressure, "diastolic": None, "mean": None, "timestamp": m.timestamp,
        "pulse_rate": m.pulse_rate, "user_id": m.user_id, "status": m.status,
    })


def _readings(
    pressures: tuple[tuple[str, float | None], ...], pulse_rate: float | None, unit: BloodPressureUnit,
    timestamp: datetime | None, user_id: int | None, flags: tuple[str, ...], intermediate: bool,
) -> list[Reading]:
    quality, user = quality_of(flags), user_of(user_id)
    kpa = unit == "kPa"
    out = [
        Reading(
            kind, kpa_to_mmhg(value) if kpa else value, "mm[Hg]", timestamp, flags, quality, intermediate,
            "kPa" if kpa else None, user,
        )
        for kind, value in pressures
        if value is not None and is_number(value)
    ]
    if pulse_rate is not None and is_number(pulse_rate):
        out.append(Reading(HEART_RATE, pulse_rate, "/min", timestamp, flags, quality, intermediate, None, user))
    return out


def readings_measurement(m: BloodPressureMeasurement) -> list[Reading]:
    """Systolic, diastolic, mean (mm[Hg]) and pulse rate readings; a NaN/NRes/INF value gives none."""
    pressures = ((SYSTOLIC_BP, m.systolic), (DIASTOLIC_BP, m.diastolic), (MEAN_BP, m.mean))
    return _readings(pressures, m.pulse_rate, m.unit, m.timestamp, m.user_id, m.status or (), False)


def readings_cuff(m: IntermediateCuffPressure) -> list[Reading]:
    """A cuff_pressure device-status reading and the intermediate pulse rate, both marked intermediate."""
    flags = ("intermediate", *(m.status or ()))
    return _readings(((CUFF_PRESSURE, m.cuff_pressure),), m.pulse_rate, m.unit, m.timestamp, m.user_id, flags, True)


MEASUREMENT_CODEC: Final[CharacteristicCodec[BloodPressureMeasurement]] = characteristic_codec(
    BLOOD_PRESSURE_MEASUREMENT, "Blood Pressure Measurement", (BloodPressureMeasurement,),
    parse=parse_measurement, encode=encode_measurement, readings=readings_measurement,
)
CUFF_CODEC: Final[CharacteristicCodec[IntermediateCuffPressure]] = characteristic_codec(
    INTERMEDIATE_CUFF_PRESSURE, "Intermediate Cuff Pressure", (IntermediateCuffPressure,),
    parse=parse_cuff, encode=encode_cuff, readings=readings_cuff,
)
