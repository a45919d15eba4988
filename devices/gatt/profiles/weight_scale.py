"""Weight Measurement 0x2A9D (Weight Scale Service 1.0; GATT Supplement).

Flags (UINT8): bit 0 units (0 SI, 1 imperial); bit 1 Time Stamp present; bit 2 User ID present
(UINT8, 0xFF = unknown user); bit 3 BMI and Height present; bits 4-7 reserved. Fixed-point fields:
Weight UINT16 at 0.005 kg (SI) or 0.01 lb (imperial), 0xFFFF = measurement unsuccessful; BMI UINT16 at
0.1 kg/m2; Height UINT16 at 0.001 m (SI) or 0.1 in (imperial).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from devices.gatt.fields import DATE_TIME, UINT8, UINT16
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec, check, unscaled, user_of
from devices.gatt.reading import BMI, BODY_HEIGHT, BODY_WEIGHT, Reading
from devices.gatt.uuids import WEIGHT_MEASUREMENT
from proto.units import inch_to_m, lb_to_kg

WeightUnit = Literal["kg", "lb"]

FLAG_IMPERIAL: Final = 0x01
FLAG_TIMESTAMP: Final = 0x02
FLAG_USER_ID: Final = 0x04
FLAG_BMI_HEIGHT: Final = 0x08

MEASUREMENT_UNSUCCESSFUL: Final = 0xFFFF
# Resolutions as divisors (value = raw / divisor), per WSS 1.0 Weight Measurement.
WEIGHT_DIVISOR: Final = {"kg": 200, "lb": 100}  # 0.005 kg, 0.01 lb
HEIGHT_DIVISOR: Final = {"kg": 1000, "lb": 10}  # 0.001 m, 0.1 in (keyed by the unit system's mass unit)
BMI_DIVISOR: Final = 10  # 0.1 kg/m2

LAYOUT: Final = Layout(
    WEIGHT_MEASUREMENT,
    (
        Field("weight", UINT16),
        Field("timestamp", DATE_TIME, when=FLAG_TIMESTAMP),
        Field("user_id", UINT8, when=FLAG_USER_ID),
        Field("bmi", UINT16, when=FLAG_BMI_HEIGHT),
        Field("height", UINT16, when=FLAG_BMI_HEIGHT),
    ),
    value_flags=FLAG_IMPERIAL,
)


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    """A weight in `unit` ('kg' with heights in m, or 'lb' with heights in inches).

    `weight` None means the scale reported "measurement unsuccessful". `bmi` and `height` are sent
    together or not at all.
    """

    weight: float | None
    unit: WeightUnit = "kg"
    timestamp: datetime | None = None
    user_id: int | None = None
    bmi: float | None = None
    height: float | None = None


def parse(payload: bytes) -> WeightMeasurement:
    """The measurement in a 0x2A9D payload; raises GattDecodeError if malformed."""
    flags, v = LAYOUT.unpack(payload)
    unit: WeightUnit = "lb" if flags & FLAG_IMPERIAL else "kg"
    weight_raw = v["weight"]
    bmi_raw, height_raw = v.get("bmi"), v.get("height")
    return WeightMeasurement(
        weight=None if weight_raw == MEASUREMENT_UNSUCCESSFUL else weight_raw / WEIGHT_DIVISOR[unit],
        unit=unit,
        timestamp=v.get("timestamp"),
        user_id=v.get("user_id"),
        bmi=None if bmi_raw is None else bmi_raw / BMI_DIVISOR,
        height=None if height_raw is None else height_raw / HEIGHT_DIVISOR[unit],
    )


def encode(m: WeightMeasurement) -> bytes:
    """The 0x2A9D payload for `m`, values rounded to the field resolutions."""
    char = WEIGHT_MEASUREMENT
    check(char, m.unit in ("kg", "lb"), f"unit must be 'kg' or 'lb', not {m.unit!r}")
    check(char, (m.bmi is None) == (m.height is None), "BMI and height are sent together or not at all")
    flags = (
        (FLAG_IMPERIAL if m.unit == "lb" else 0)
        | (FLAG_TIMESTAMP if m.timestamp is not None else 0)
        | (FLAG_USER_ID if m.user_id is not None else 0)
        | (FLAG_BMI_HEIGHT if m.bmi is not None else 0)
    )
    weight = (
        MEASUREMENT_UNSUCCESSFUL if m.weight is None
        else unscaled(char, "weight", m.weight, WEIGHT_DIVISOR[m.unit], MEASUREMENT_UNSUCCESSFUL - 1)
    )
    bmi = None if m.bmi is None else unscaled(char, "bmi", m.bmi, BMI_DIVISOR, 0xFFFF)
    height = None if m.height is None else unscaled(char, "height", m.height, HEIGHT_DIVISOR[m.unit], 0xFFFF)
    return LAYOUT.pack(flags, {
        "weight": weight, "timestamp": m.timestamp, "user_id": m.user_id, "bmi": bmi, "height": height,
    })


def readings(m: WeightMeasurement) -> list[Reading]:
    """body_weight (kg), bmi (kg/m2) and body_height (m) readings; none for an unsuccessful weighing."""
    user = user_of(m.user_id)

    def reading(kind: str, value: float, unit: str, source_unit: str | None = None) -> Reading:
        return Reading(kind, value, unit, m.timestamp, source_unit=source_unit, user_id=user)

    imperial = m.unit == "lb"
    out = []
    if m.weight is not None:
        out.append(reading(BODY_WEIGHT, lb_to_kg(m.weight), "kg", "[lb_av]") if imperial
                   else reading(BODY_WEIGHT, m.weight, "kg"))
    if m.bmi is not None:
        out.append(reading(BMI, m.bmi, "kg/m2"))
    if m.height is not None:
        out.append(reading(BODY_HEIGHT, inch_to_m(m.height), "m", "[in_i]") if imperial
                   else reading(BODY_HEIGHT, m.height, "m"))
    return out


CODEC: Final[CharacteristicCodec[WeightMeasurement]] = characteristic_codec(
    WEIGHT_MEASUREMENT, "Weight Measurement", (WeightMeasurement,),
    parse=parse, encode=encode, readings=readings,
)
