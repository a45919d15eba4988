"""`Reading`, what decoding a GATT notification yields, and the one table from status names to Quality.

A Reading is one value in its kind's canonical UCUM unit (proto.vocabulary), with the device's
timestamp and the status conditions the device reported, both as readable names (`flags`) and as the
shared Quality bits (`quality`) the edge uses to tell artefacts from clinical alarms.

Most kinds are vital signs from proto.vocabulary. Two are device status, never vitals, and must not
be stored or scored as observations of the patient: `battery_level` (Battery Service, %) and
`cuff_pressure` (the inflating cuff's pressure from Intermediate Cuff Pressure, mm[Hg]).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from proto import vocabulary
from proto.quality import Quality

# Vital-sign kinds the GATT codecs produce (names and units from proto.vocabulary).
HEART_RATE: Final = "heart_rate"
SPO2: Final = "spo2"
SYSTOLIC_BP: Final = "systolic_bp"
DIASTOLIC_BP: Final = "diastolic_bp"
MEAN_BP: Final = "mean_bp"
BODY_TEMPERATURE: Final = "body_temperature"
GLUCOSE: Final = "glucose"
BODY_WEIGHT: Final = "body_weight"
BODY_HEIGHT: Final = "body_height"
BMI: Final = "bmi"
RR_INTERVAL: Final = "rr_interval"
ENERGY_EXPENDED: Final = "energy_expended"

# Device-status kinds: state of the device, not observations of the patient (not in proto.vocabulary).
BATTERY_LEVEL: Final = "battery_level"
CUFF_PRESSURE: Final = "cuff_pressure"
DEVICE_STATUS_UNITS: Final[Mapping[str, str]] = MappingProxyType({BATTERY_LEVEL: "%", CUFF_PRESSURE: "mm[Hg]"})


def unit_of(kind: str) -> str:
    """The canonical unit of a kind the codecs produce (a vital sign or a device-status kind)."""
    status_unit = DEVICE_STATUS_UNITS.get(kind)
    return status_unit if status_unit is not None else vocabulary.kind(kind).unit


def is_device_status(kind: str) -> bool:
    """Whether readings of `kind` describe the device rather than the patient."""
    return kind in DEVICE_STATUS_UNITS


# Every status name a codec can put in Reading.flags -> the shared Quality bits it raises.
# Quality.NONE marks conditions worth showing but that do not make the value less trustworthy, or that
# must still alarm (a glucose result above what the meter can process is a real, severe high).
FLAG_QUALITY: Final[Mapping[str, Quality]] = MappingProxyType({
    # Any profile: an intermediate (not final) value (0x2A36, 0x2A1E).
    "intermediate": Quality.EARLY_ESTIMATE,
    # Heart Rate Measurement Flags bits 1-2, sensor contact (HRS 1.0; GATT Supplement, Heart Rate Measurement).
    "sensor_contact_not_detected": Quality.SENSOR_CONTACT_LOST,
    # Blood Pressure Measurement Status field (BLS 1.1.1; GATT Supplement, Blood Pressure Measurement).
    "body_movement": Quality.MOTION,
    "cuff_too_loose": Quality.CUFF_FIT,
    "irregular_pulse": Quality.IRREGULAR_PULSE,
    "pulse_rate_above_range": Quality.NONE,
    "pulse_rate_below_range": Quality.NONE,
    "improper_position": Quality.IMPROPER_POSITION,
    # PLX Measurement Status field (PLXS 1.0.1).
    "measurement_ongoing": Quality.EARLY_ESTIMATE,
    "early_estimate": Quality.EARLY_ESTIMATE,
    "validated_data": Quality.NONE,
    "fully_qualified_data": Quality.NONE,
    "stored_data": Quality.NONE,
    "demonstration_data": Quality.SIMULATED,
    "testing_data": Quality.SIMULATED,
    "calibration_ongoing": Quality.SIGNAL_QUESTIONABLE,
    "measurement_unavailable": Quality.DEVICE_FAULT,
    "questionable_measurement": Quality.SIGNAL_QUESTIONABLE,
    "invalid_measurement": Quality.DEVICE_FAULT,
    # PLX Device and Sensor Status field (PLXS 1.0.1).
    "extended_display_update_ongoing": Quality.NONE,
    "equipment_malfunction": Quality.DEVICE_FAULT,
    "signal_processing_irregularity": Quality.SIGNAL_QUESTIONABLE,
    "inadequate_signal": Quality.SIGNAL_QUESTIONABLE,
    "poor_signal": Quality.SIGNAL_QUESTIONABLE,
    "low_perfusion": Quality.LOW_PERFUSION,
    "erratic_signal": Quality.SIGNAL_QUESTIONABLE,
    "non_pulsatile_signal": Quality.SIGNAL_QUESTIONABLE,
    "questionable_pulse": Quality.SIGNAL_QUESTIONABLE,
    "signal_analysis_ongoing": Quality.SIGNAL_QUESTIONABLE,
    "sensor_interference": Quality.SIGNAL_QUESTIONABLE,
    "sensor_unconnected": Quality.SENSOR_CONTACT_LOST,
    "unknown_sensor": Quality.DEVICE_FAULT,
    "sensor_displaced": Quality.SENSOR_DISPLACED,
    "sensor_malfunction": Quality.DEVICE_FAULT,
    "sensor_disconnected": Quality.SENSOR_CONTACT_LOST,
    # PLX Spot-check flags bit 4: the timestamp is not wall-clock time.
    "device_clock_not_set": Quality.NONE,
    # Glucose Sensor Status Annunciation field (GLS 1.0.1); sensor_malfunction is shared with PLX above.
    "device_battery_low": Quality.NONE,
    "sample_size_insufficient": Quality.DEVICE_FAULT,
    "strip_insertion_error": Quality.DEVICE_FAULT,
    "strip_type_incorrect": Quality.DEVICE_FAULT,
    "result_above_range": Quality.NONE,
    "result_below_range": Quality.NONE,
    "temperature_too_high": Quality.DEVICE_FAULT,
    "temperature_too_low": Quality.DEVICE_FAULT,
    "read_interrupted": Quality.DEVICE_FAULT,
    "general_device_fault": Quality.DEVICE_FAULT,
    "time_fault": Quality.NONE,
})


@functools.lru_cache(maxsize=1024)
def quality_of(flags: tuple[str, ...]) -> Quality:
    """The Quality bits for a tuple of status names (KeyError for a name missing from FLAG_QUALITY)."""
    quality = Quality.NONE
    for name in flags:
        quality |= FLAG_QUALITY[name]
    return quality


@dataclass(frozen=True, slots=True, init=False)
class Reading:
    """One decoded value in its canonical unit.

    `measured_at` is the device's own timestamp, naive local device time as the spec carries it (None
    when the payload has none or it is unknown); `flags` the device-reported status names in spec
    order; `quality` those mapped through FLAG_QUALITY. `source_unit` is the UCUM unit the device
    reported in when a conversion was applied (None when it already sent the canonical unit).
    """

    kind: str
    value: float
    unit: str
    measured_at: datetime | None
    flags: tuple[str, ...]
    quality: Quality
    intermediate: bool
    source_unit: str | None
    user_id: int | None
    sequence_number: int | None
    location: str | None

    def __init__(
        self,
        kind: str,
        value: float,
        unit: str,
        measured_at: datetime | None = None,
        flags: tuple[str, ...] = (),
        quality: Quality = Quality.NONE,
        intermediate: bool = False,
        source_unit: str | None = None,
        user_id: int | None = None,
        sequence_number: int | None = None,
        location: str | None = None,
    ) -> None:
        # Same contract as the generated frozen __init__, but sets the slots through their descriptors:
        # the generated one pays object.__setattr__ per field, which doubles the cost of decoding.
        _set_kind(self, kind)
        _set_value(self, value)
        _set_unit(self, unit)
        _set_measured_at(self, measured_at)
        _set_flags(self, flags)
        _set_quality(self, quality)
        _set_intermediate(self, intermediate)
        _set_source_unit(self, source_unit)
        _set_user_id(self, user_id)
        _set_sequence_number(self, sequence_number)
        _set_location(self, location)


def _slot_setter(name: str) -> Callable[[Reading, Any], None]:
    setter: Callable[[Reading, Any], None] = Reading.__dict__[name].__set__
    return setter


_set_kind = _slot_setter("kind")
_set_value = _slot_setter("value")
_set_unit = _slot_setter("unit")
_set_measured_at = _slot_setter("measured_at")
_set_flags = _slot_setter("flags")
_set_quality = _slot_setter("quality")
_set_intermediate = _slot_setter("intermediate")
_set_source_unit = _slot_setter("source_unit")
_set_user_id = _slot_setter("user_id")
_set_sequence_number = _slot_setter("sequence_number")
_set_location = _slot_setter("location")
