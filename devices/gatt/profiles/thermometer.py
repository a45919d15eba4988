"""Temperature Measurement 0x2A1C and Intermediate Temperature 0x2A1E (HTS 1.0; GATT Supplement).

Flags (UINT8): bit 0 unit (0 Celsius, 1 Fahrenheit); bit 1 Time Stamp present; bit 2 Temperature Type
present (UINT8 body location); bits 3-7 reserved. The value is a 32-bit IEEE 11073 FLOAT.
Temperature Type codes 1-9 are defined (HTS 1.0, Temperature Type); 0 and 10-255 are reserved and
decode as an unknown location, since the site does not change the value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from devices.gatt.fields import DATE_TIME, FLOAT, UINT8, Codec, Enumeration
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec, check, is_number
from devices.gatt.reading import BODY_TEMPERATURE, Reading, quality_of
from devices.gatt.uuids import INTERMEDIATE_TEMPERATURE, TEMPERATURE_MEASUREMENT
from proto.units import fahrenheit_to_celsius

TemperatureUnit = Literal["C", "F"]

FLAG_FAHRENHEIT: Final = 0x01
FLAG_TIMESTAMP: Final = 0x02
FLAG_TYPE: Final = 0x04

TEMPERATURE_TYPES: Final = Enumeration("temperature type", {
    1: "armpit",
    2: "body",
    3: "ear",
    4: "finger",
    5: "gastrointestinal_tract",
    6: "mouth",
    7: "rectum",
    8: "toe",
    9: "tympanum",
})
TYPE_FIELD: Final = Codec("UINT8", UINT8.fmt, 1, TEMPERATURE_TYPES.name_of, TEMPERATURE_TYPES.code_of)

_FIELDS: Final = (
    Field("value", FLOAT),
    Field("timestamp", DATE_TIME, when=FLAG_TIMESTAMP),
    Field("type", TYPE_FIELD, when=FLAG_TYPE),
)
MEASUREMENT_LAYOUT: Final = Layout(TEMPERATURE_MEASUREMENT, _FIELDS, value_flags=FLAG_FAHRENHEIT)
INTERMEDIATE_LAYOUT: Final = Layout(INTERMEDIATE_TEMPERATURE, _FIELDS, value_flags=FLAG_FAHRENHEIT)


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    """A body temperature in `unit` ('C' or 'F'); None is NaN/NRes. `type` is the body site (None: not given)."""

    value: float | None
    unit: TemperatureUnit = "C"
    timestamp: datetime | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class IntermediateTemperature(TemperatureMeasurement):
    """A temperature while the measurement is still settling (0x2A1E): same fields, not final."""


def _parse(layout: Layout, payload: bytes) -> tuple[float | None, TemperatureUnit, datetime | None, str | None]:
    flags, v = layout.unpack(payload)
    return v["value"], ("F" if flags & FLAG_FAHRENHEIT else "C"), v.get("timestamp"), v.get("type")


def parse_measurement(payload: bytes) -> TemperatureMeasurement:
    """The measurement in a 0x2A1C payload; raises GattDecodeError if malformed."""
    return TemperatureMeasurement(*_parse(MEASUREMENT_LAYOUT, payload))


def parse_intermediate(payload: bytes) -> IntermediateTemperature:
    """The measurement in a 0x2A1E payload; raises GattDecodeError if malformed."""
    return IntermediateTemperature(*_parse(INTERMEDIATE_LAYOUT, payload))


def _encode(layout: Layout, m: TemperatureMeasurement) -> bytes:
    check(layout.characteristic, m.unit in ("C", "F"), f"unit must be 'C' or 'F', not {m.unit!r}")
    flags = (
        (FLAG_FAHRENHEIT if m.unit == "F" else 0)
        | (FLAG_TIMESTAMP if m.timestamp is not None else 0)
        | (FLAG_TYPE if m.type is not None else 0)
    )
    return layout.pack(flags, {"value": m.value, "timestamp": m.timestamp, "type": m.type})


def encode_measurement(m: TemperatureMeasurement) -> bytes:
    """The 0x2A1C payload for `m` (None encodes as NaN)."""
    return _encode(MEASUREMENT_LAYOUT, m)


def encode_intermediate(m: IntermediateTemperature) -> bytes:
    """The 0x2A1E payload for `m`."""
    return _encode(INTERMEDIATE_LAYOUT, m)


_INTERMEDIATE_FLAGS: Final = ("intermediate",)


def readings(m: TemperatureMeasurement) -> list[Reading]:
    """One body_temperature reading in Cel (none for NaN/NRes/INF); intermediate ones are flagged so."""
    if not is_number(m.value):
        return []
    assert m.value is not None
    intermediate = isinstance(m, IntermediateTemperature)
    flags = _INTERMEDIATE_FLAGS if intermediate else ()
    fahrenheit = m.unit == "F"
    return [Reading(
        BODY_TEMPERATURE,
        fahrenheit_to_celsius(m.value) if fahrenheit else m.value,
        "Cel",
        measured_at=m.timestamp,
        flags=flags,
        quality=quality_of(flags),
        intermediate=intermediate,
        source_unit="[degF]" if fahrenheit else None,
        location=m.type,
    )]


MEASUREMENT_CODEC: Final[CharacteristicCodec[TemperatureMeasurement]] = characteristic_codec(
    TEMPERATURE_MEASUREMENT, "Temperature Measurement", (TemperatureMeasurement,),
    parse=parse_measurement, encode=encode_measurement, readings=readings,
)
INTERMEDIATE_CODEC: Final[CharacteristicCodec[IntermediateTemperature]] = characteristic_codec(
    INTERMEDIATE_TEMPERATURE, "Intermediate Temperature", (IntermediateTemperature,),
    parse=parse_intermediate, encode=encode_intermediate, readings=readings,
)
