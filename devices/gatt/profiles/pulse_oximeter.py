"""PLX Spot-check Measurement 0x2A5E and PLX Continuous Measurement 0x2A5F (PLXS 1.0.1; GATT Supplement).

Spot-check flags (UINT8): bit 0 Timestamp present; bit 1 Measurement Status present (16 bits); bit 2
Device and Sensor Status present (24 bits); bit 3 Pulse Amplitude Index present (SFLOAT, %); bit 4
device clock is not set; bits 5-7 reserved. Then SpO2 (SFLOAT, %) and PR (SFLOAT, /min), always.

Continuous flags (UINT8): bit 0 SpO2PR-Fast present; bit 1 SpO2PR-Slow present; bit 2 Measurement
Status; bit 3 Device and Sensor Status; bit 4 Pulse Amplitude Index; bits 5-7 reserved. SpO2PR-Normal
always comes first; Fast and Slow are the same pair averaged over shorter / longer windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from devices.gatt.fields import DATE_TIME, SFLOAT, UINT16, UINT24, BitNames, Codec
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec, is_number
from devices.gatt.reading import HEART_RATE, SPO2, Reading, quality_of
from devices.gatt.uuids import PLX_CONTINUOUS_MEASUREMENT, PLX_SPOT_CHECK_MEASUREMENT

# Measurement Status (16 bits; bits 0-4 reserved).
MEASUREMENT_STATUS: Final = BitNames.single({
    5: "measurement_ongoing",
    6: "early_estimate",
    7: "validated_data",
    8: "fully_qualified_data",
    9: "stored_data",
    10: "demonstration_data",
    11: "testing_data",
    12: "calibration_ongoing",
    13: "measurement_unavailable",
    14: "questionable_measurement",
    15: "invalid_measurement",
})
# Device and Sensor Status (24 bits; bits 16-23 reserved).
DEVICE_STATUS: Final = BitNames.single({
    0: "extended_display_update_ongoing",
    1: "equipment_malfunction",
    2: "signal_processing_irregularity",
    3: "inadequate_signal",
    4: "poor_signal",
    5: "low_perfusion",
    6: "erratic_signal",
    7: "non_pulsatile_signal",
    8: "questionable_pulse",
    9: "signal_analysis_ongoing",
    10: "sensor_interference",
    11: "sensor_unconnected",
    12: "unknown_sensor",
    13: "sensor_displaced",
    14: "sensor_malfunction",
    15: "sensor_disconnected",
})


def _device_status_names(raw: bytes) -> tuple[str, ...]:
    return DEVICE_STATUS.names(int.from_bytes(raw, "little"))


def _device_status_raw(names: tuple[str, ...]) -> bytes:
    return DEVICE_STATUS.encode(names).to_bytes(3, "little")


MEASUREMENT_STATUS_FIELD: Final = Codec("UINT16", UINT16.fmt, 2, MEASUREMENT_STATUS.names, MEASUREMENT_STATUS.encode)
DEVICE_STATUS_FIELD: Final = Codec("UINT24", UINT24.fmt, 3, _device_status_names, _device_status_raw)

SPOT_TIMESTAMP: Final = 0x01
SPOT_MEASUREMENT_STATUS: Final = 0x02
SPOT_DEVICE_STATUS: Final = 0x04
SPOT_PULSE_AMPLITUDE: Final = 0x08
SPOT_CLOCK_NOT_SET: Final = 0x10

CONT_FAST: Final = 0x01
CONT_SLOW: Final = 0x02
CONT_MEASUREMENT_STATUS: Final = 0x04
CONT_DEVICE_STATUS: Final = 0x08
CONT_PULSE_AMPLITUDE: Final = 0x10

SPOT_CHECK_LAYOUT: Final = Layout(
    PLX_SPOT_CHECK_MEASUREMENT,
    (
        Field("spo2", SFLOAT),
        Field("pulse_rate", SFLOAT),
        Field("timestamp", DATE_TIME, when=SPOT_TIMESTAMP),
        Field("measurement_status", MEASUREMENT_STATUS_FIELD, when=SPOT_MEASUREMENT_STATUS),
        Field("device_status", DEVICE_STATUS_FIELD, when=SPOT_DEVICE_STATUS),
        Field("pulse_amplitude_index", SFLOAT, when=SPOT_PULSE_AMPLITUDE),
    ),
    value_flags=SPOT_CLOCK_NOT_SET,
)
CONTINUOUS_LAYOUT: Final = Layout(
    PLX_CONTINUOUS_MEASUREMENT,
    (
        Field("spo2", SFLOAT),
        Field("pulse_rate", SFLOAT),
        Field("spo2_fast", SFLOAT, when=CONT_FAST),
        Field("pulse_rate_fast", SFLOAT, when=CONT_FAST),
        Field("spo2_slow", SFLOAT, when=CONT_SLOW),
        Field("pulse_rate_slow", SFLOAT, when=CONT_SLOW),
        Field("measurement_status", MEASUREMENT_STATUS_FIELD, when=CONT_MEASUREMENT_STATUS),
        Field("device_status", DEVICE_STATUS_FIELD, when=CONT_DEVICE_STATUS),
        Field("pulse_amplitude_index", SFLOAT, when=CONT_PULSE_AMPLITUDE),
    ),
)


@dataclass(frozen=True, slots=True)
class PlxSpotCheck:
    """A spot-check SpO2 (%) and pulse rate (/min); None is NaN/NRes.

    Status fields are None when absent, else the set conditions in spec order. `clock_not_set` means the
    timestamp counts from an arbitrary origin, so readings carry no measured_at.
    """

    spo2: float | None
    pulse_rate: float | None
    timestamp: datetime | None = None
    measurement_status: tuple[str, ...] | None = None
    device_status: tuple[str, ...] | None = None
    pulse_amplitude_index: float | None = None
    clock_not_set: bool = False


@dataclass(frozen=True, slots=True)
class PlxContinuous:
    """A continuous SpO2 (%) / pulse rate (/min) sample, with the optional fast and slow averages."""

    spo2: float | None
    pulse_rate: float | None
    spo2_fast: float | None = None
    pulse_rate_fast: float | None = None
    spo2_slow: float | None = None
    pulse_rate_slow: float | None = None
    measurement_status: tuple[str, ...] | None = None
    device_status: tuple[str, ...] | None = None
    pulse_amplitude_index: float | None = None


def parse_spot_check(payload: bytes) -> PlxSpotCheck:
    """The measurement in a 0x2A5E payload; raises GattDecodeError if malformed."""
    flags, v = SPOT_CHECK_LAYOUT.unpack(payload)
    return PlxSpotCheck(
        v["spo2"], v["pulse_rate"], v.get("timestamp"), v.get("measurement_status"), v.get("device_status"),
        v.get("pulse_amplitude_index"), bool(flags & SPOT_CLOCK_NOT_SET),
    )


def parse_continuous(payload: bytes) -> PlxContinuous:
    """The measurement in a 0x2A5F payload; raises GattDecodeError if malformed."""
    _, v = CONTINUOUS_LAYOUT.unpack(payload)
    return PlxContinuous(
        v["spo2"], v["pulse_rate"], v.get("spo2_fast"), v.get("pulse_rate_fast"), v.get("spo2_slow"),
        v.get("pulse_rate_slow"), v.get("measurement_status"), v.get("device_status"), v.get("pulse_amplitude_index"),
    )


def _present(flag: int, *values: Any) -> int:
    return flag if any(v is not None for v in values) else 0


def encode_spot_check(m: PlxSpotCheck) -> bytes:
    """The 0x2A5E payload for `m`."""
    flags = (
        _present(SPOT_TIMESTAMP, m.timestamp)
        | _present(SPOT_MEASUREMENT_STATUS, m.measurement_status)
        | _present(SPOT_DEVICE_STATUS, m.device_status)
        | _present(SPOT_PULSE_AMPLITUDE, m.pulse_amplitude_index)
        | (SPOT_CLOCK_NOT_SET if m.clock_not_set else 0)
    )
    return SPOT_CHECK_LAYOUT.pack(flags, {
        "spo2": m.spo2, "pulse_rate": m.pulse_rate, "timestamp": m.timestamp,
        "measurement_status": m.measurement_status, "device_status": m.device_status,
        "pulse_amplitude_index": m.pulse_amplitude_index,
    })


def encode_continuous(m: PlxContinuous) -> bytes:
    """The 0x2A5F payload for `m`: a Fast or Slow pair is sent when either of its values is set."""
    flags = (
        _present(CONT_FAST, m.spo2_fast, m.pulse_rate_fast)
        | _present(CONT_SLOW, m.spo2_slow, m.pulse_rate_slow)
        | _present(CONT_MEASUREMENT_STATUS, m.measurement_status)
        | _present(CONT_DEVICE_STATUS, m.device_status)
        | _present(CONT_PULSE_AMPLITUDE, m.pulse_amplitude_index)
    )
    return CONTINUOUS_LAYOUT.pack(flags, {
        "spo2": m.spo2, "pulse_rate": m.pulse_rate, "spo2_fast": m.spo2_fast, "pulse_rate_fast": m.pulse_rate_fast,
        "spo2_slow": m.spo2_slow, "pulse_rate_slow": m.pulse_rate_slow,
        "measurement_status": m.measurement_status, "device_status": m.device_status,
        "pulse_amplitude_index": m.pulse_amplitude_index,
    })


def _readings(
    spo2: float | None, pulse_rate: float | None, flags: tuple[str, ...], measured_at: datetime | None,
) -> list[Reading]:
    quality = quality_of(flags)
    out = []
    if is_number(spo2):
        assert spo2 is not None
        out.append(Reading(SPO2, spo2, "%", measured_at, flags, quality))
    if is_number(pulse_rate):
        assert pulse_rate is not None
        out.append(Reading(HEART_RATE, pulse_rate, "/min", measured_at, flags, quality))
    return out


def readings_spot_check(m: PlxSpotCheck) -> list[Reading]:
    """SpO2 and pulse-rate readings; flags are the measurement then device/sensor status conditions."""
    clock = ("device_clock_not_set",) if m.clock_not_set else ()
    flags = (*(m.measurement_status or ()), *(m.device_status or ()), *clock)
    return _readings(m.spo2, m.pulse_rate, flags, None if m.clock_not_set else m.timestamp)


def readings_continuous(m: PlxContinuous) -> list[Reading]:
    """SpO2 and pulse-rate readings of the Normal pair (Fast/Slow averages stay in the parsed measurement)."""
    flags = (*(m.measurement_status or ()), *(m.device_status or ()))
    return _readings(m.spo2, m.pulse_rate, flags, None)


SPOT_CHECK_CODEC: Final[CharacteristicCodec[PlxSpotCheck]] = characteristic_codec(
    PLX_SPOT_CHECK_MEASUREMENT, "PLX Spot-check Measurement", (PlxSpotCheck,),
    parse=parse_spot_check, encode=encode_spot_check, readings=readings_spot_check,
)
CONTINUOUS_CODEC: Final[CharacteristicCodec[PlxContinuous]] = characteristic_codec(
    PLX_CONTINUOUS_MEASUREMENT, "PLX Continuous Measurement", (PlxContinuous,),
    parse=parse_continuous, encode=encode_continuous, readings=readings_continuous,
)
