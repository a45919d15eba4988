"""Glucose Measurement 0x2A18 (Glucose Service/Profile 1.0.1; GATT Supplement).

Flags (UINT8): bit 0 Time Offset present (SINT16 minutes, added to Base Time); bit 1 Glucose
Concentration (SFLOAT) and Type-Sample Location (UINT8) present; bit 2 concentration unit (0 kg/L,
1 mol/L); bit 3 Sensor Status Annunciation present (16 bits); bit 4 a Glucose Measurement Context
(0x2A34) follows; bits 5-7 reserved. Sequence Number (UINT16) and Base Time always come first.

Type-Sample Location: Type in the low nibble, Sample Location in the high nibble. Reserved codes raise:
whether a record is a patient sample or a control-solution test depends on them, so a code we do not
know cannot be passed on as a patient's glucose. Control-solution results yield no reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from devices.gatt.errors import FieldValueError
from devices.gatt.fields import DATE_TIME, SFLOAT, SINT16, UINT8, UINT16, BitNames, Codec, Enumeration
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec, check, is_number
from devices.gatt.reading import GLUCOSE, Reading, quality_of
from devices.gatt.uuids import GLUCOSE_MEASUREMENT
from proto.units import kg_per_l_to_mmol_l, mol_per_l_to_mmol_l

GlucoseUnit = Literal["kg/L", "mol/L"]

FLAG_TIME_OFFSET: Final = 0x01
FLAG_CONCENTRATION: Final = 0x02
FLAG_MOL_PER_L: Final = 0x04
FLAG_SENSOR_STATUS: Final = 0x08
FLAG_CONTEXT_FOLLOWS: Final = 0x10

SAMPLE_TYPES: Final = Enumeration("glucose sample type", {
    1: "capillary_whole_blood",
    2: "capillary_plasma",
    3: "venous_whole_blood",
    4: "venous_plasma",
    5: "arterial_whole_blood",
    6: "arterial_plasma",
    7: "undetermined_whole_blood",
    8: "undetermined_plasma",
    9: "interstitial_fluid",
    10: "control_solution",
})
SAMPLE_LOCATIONS: Final = Enumeration("glucose sample location", {
    1: "finger",
    2: "alternate_site_test",
    3: "earlobe",
    4: "control_solution",
    15: "not_available",
})
CONTROL_SOLUTION: Final = "control_solution"
LOCATION_NOT_AVAILABLE: Final = "not_available"

# Sensor Status Annunciation (16 bits; bits 12-15 reserved).
SENSOR_STATUS: Final = BitNames.single({
    0: "device_battery_low",
    1: "sensor_malfunction",
    2: "sample_size_insufficient",
    3: "strip_insertion_error",
    4: "strip_type_incorrect",
    5: "result_above_range",
    6: "result_below_range",
    7: "temperature_too_high",
    8: "temperature_too_low",
    9: "read_interrupted",
    10: "general_device_fault",
    11: "time_fault",
})


def _decode_type_location(raw: int) -> tuple[str, str]:
    sample_type = SAMPLE_TYPES.name_of(raw & 0x0F)
    location = SAMPLE_LOCATIONS.name_of(raw >> 4)
    if sample_type is None:
        raise FieldValueError(f"reserved glucose sample type {raw & 0x0F}")
    if location is None:
        raise FieldValueError(f"reserved glucose sample location {raw >> 4}")
    return sample_type, location


def _encode_type_location(value: tuple[str, str]) -> int:
    sample_type, location = value
    return SAMPLE_TYPES.code_of(sample_type) | SAMPLE_LOCATIONS.code_of(location) << 4


TYPE_LOCATION_FIELD: Final = Codec("UINT8", UINT8.fmt, 1, _decode_type_location, _encode_type_location)
SENSOR_STATUS_FIELD: Final = Codec("UINT16", UINT16.fmt, 2, SENSOR_STATUS.names, SENSOR_STATUS.encode)

LAYOUT: Final = Layout(
    GLUCOSE_MEASUREMENT,
    (
        Field("sequence_number", UINT16),
        Field("base_time", DATE_TIME),
        Field("time_offset", SINT16, when=FLAG_TIME_OFFSET),
        Field("concentration", SFLOAT, when=FLAG_CONCENTRATION),
        Field("type_location", TYPE_LOCATION_FIELD, when=FLAG_CONCENTRATION),
        Field("sensor_status", SENSOR_STATUS_FIELD, when=FLAG_SENSOR_STATUS),
    ),
    value_flags=FLAG_MOL_PER_L | FLAG_CONTEXT_FOLLOWS,
)
# Byte offset of Time Offset: after flags (1), sequence number (2) and base time (7).
_TIME_OFFSET_AT: Final = 10


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    """One stored glucose record.

    `concentration` is in `unit` (None: the record has none, or it is NaN/NRes); `time_offset_min` is
    added to `base_time` (None when unknown) to give the measurement time. `sensor_status` is None when
    the annunciation field is absent.
    """

    sequence_number: int
    base_time: datetime | None
    concentration: float | None = None
    unit: GlucoseUnit = "kg/L"
    sample_type: str = "capillary_whole_blood"
    sample_location: str = "finger"
    time_offset_min: int | None = None
    sensor_status: tuple[str, ...] | None = None
    context_follows: bool = False

    @property
    def measured_at(self) -> datetime | None:
        """Base time plus time offset: the device-local time of the measurement."""
        if self.base_time is None:
            return None
        return self.base_time + timedelta(minutes=self.time_offset_min or 0)


def parse(payload: bytes) -> GlucoseMeasurement:
    """The record in a 0x2A18 payload; raises GattDecodeError if malformed."""
    flags, v = LAYOUT.unpack(payload)
    sample_type, location = v.get("type_location", ("capillary_whole_blood", "finger"))
    m = GlucoseMeasurement(
        sequence_number=v["sequence_number"],
        base_time=v["base_time"],
        concentration=v.get("concentration"),
        unit="mol/L" if flags & FLAG_MOL_PER_L else "kg/L",
        sample_type=sample_type,
        sample_location=location,
        time_offset_min=v.get("time_offset"),
        sensor_status=v.get("sensor_status"),
        context_follows=bool(flags & FLAG_CONTEXT_FOLLOWS),
    )
    try:
        m.measured_at  # noqa: B018 - checks that base time + offset is a representable datetime
    except OverflowError:
        raise LAYOUT.error(_TIME_OFFSET_AT, "base time plus time offset is past year 9999") from None
    return m


def encode(m: GlucoseMeasurement) -> bytes:
    """The 0x2A18 payload for `m` (concentration, type and location sent only with a concentration)."""
    check(GLUCOSE_MEASUREMENT, m.unit in ("kg/L", "mol/L"), f"unit must be 'kg/L' or 'mol/L', not {m.unit!r}")
    flags = (
        (FLAG_TIME_OFFSET if m.time_offset_min is not None else 0)
        | (FLAG_CONCENTRATION if m.concentration is not None else 0)
        | (FLAG_MOL_PER_L if m.unit == "mol/L" else 0)
        | (FLAG_SENSOR_STATUS if m.sensor_status is not None else 0)
        | (FLAG_CONTEXT_FOLLOWS if m.context_follows else 0)
    )
    return LAYOUT.pack(flags, {
        "sequence_number": m.sequence_number, "base_time": m.base_time, "time_offset": m.time_offset_min,
        "concentration": m.concentration, "type_location": (m.sample_type, m.sample_location),
        "sensor_status": m.sensor_status,
    })


def readings(m: GlucoseMeasurement) -> list[Reading]:
    """One glucose reading in mmol/L, or none: no concentration, a special value, or a control-solution test."""
    if not is_number(m.concentration) or CONTROL_SOLUTION in (m.sample_type, m.sample_location):
        return []
    assert m.concentration is not None
    to_mmol_l = mol_per_l_to_mmol_l if m.unit == "mol/L" else kg_per_l_to_mmol_l
    flags = m.sensor_status or ()
    return [Reading(
        GLUCOSE, to_mmol_l(m.concentration), "mmol/L",
        measured_at=m.measured_at,
        flags=flags,
        quality=quality_of(flags),
        source_unit=m.unit,
        sequence_number=m.sequence_number,
        location=None if m.sample_location == LOCATION_NOT_AVAILABLE else m.sample_location,
    )]


CODEC: Final[CharacteristicCodec[GlucoseMeasurement]] = characteristic_codec(
    GLUCOSE_MEASUREMENT, "Glucose Measurement", (GlucoseMeasurement,),
    parse=parse, encode=encode, readings=readings,
)
