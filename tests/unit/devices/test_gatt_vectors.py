"""Published test vectors for every profile decode to exactly the expected readings.

Sources (cited per vector):
- Nordic: NordicSemiconductor/Android-BLE-Common-Library, ble-common/src/test/.../callback/*DataCallbackTest.java
- Spezi: StanfordSpezi/SpeziBluetooth, Tests/SpeziBluetoothServicesTests/PLXTests.swift
- Constructed: built byte by byte from the field definitions of the named spec, where no public vector exists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from devices.gatt import (
    BatteryLevel,
    BloodPressureMeasurement,
    GlucoseMeasurement,
    HeartRateMeasurement,
    IntermediateCuffPressure,
    IntermediateTemperature,
    PlxContinuous,
    PlxSpotCheck,
    Reading,
    TemperatureMeasurement,
    WeightMeasurement,
    decode,
    encode,
    parse,
)
from proto.quality import Quality
from proto.units import (
    fahrenheit_to_celsius,
    inch_to_m,
    kg_per_l_to_mmol_l,
    kpa_to_mmhg,
    lb_to_kg,
    mg_dl_to_mmol_l,
    mol_per_l_to_mmol_l,
)

# --- Heart Rate Measurement 0x2A37 -------------------------------------------------------------------


def test_hrs_uint8_with_contact_detected() -> None:
    # The brief's canonical example: flags 0x06 (contact supported + detected), 0x55 = 85 bpm.
    assert decode(0x2A37, bytes.fromhex("0655")) == [Reading("heart_rate", 85.0, "/min")]


def test_hrs_simple() -> None:
    # Nordic HeartRateMeasurementDataCallbackTest.onHeartRateMeasurementReceived_simple: {0, 85}.
    assert parse(0x2A37, bytes([0, 85])) == HeartRateMeasurement(bpm=85, sensor_contact=None)
    assert decode(0x2A37, bytes([0, 85])) == [Reading("heart_rate", 85.0, "/min")]


def test_hrs_no_contact_is_flagged_as_artefact() -> None:
    # Nordic ..._noContact: {0x04, 0xFF} = contact supported but not detected, 255 bpm.
    assert decode(0x2A37, bytes([0x04, 0xFF])) == [
        Reading("heart_rate", 255.0, "/min", flags=("sensor_contact_not_detected",),
                quality=Quality.SENSOR_CONTACT_LOST),
    ]


def test_hrs_uint8_with_energy_and_rr() -> None:
    # Nordic ..._uint8: {0b11110, 85, 50, 0, 33, 0}: EE 50 kJ, one RR of 33/1024 s.
    assert decode(0x2A37, bytes([0b11110, 85, 50, 0, 33, 0])) == [
        Reading("heart_rate", 85.0, "/min"),
        Reading("energy_expended", 50.0, "kJ"),
        Reading("rr_interval", 33 / 1024, "s"),
    ]


def test_hrs_uint16_with_three_rr_intervals() -> None:
    # Nordic ..._uint16: HR 257 (UINT16), EE 306 kJ, RR 1, 258 and 65535 (1/1024 s).
    payload = bytes([0b11111, 1, 1, 50, 1, 1, 0, 2, 1, 0xFF, 0xFF])
    assert parse(0x2A37, payload) == HeartRateMeasurement(
        bpm=257, sensor_contact=True, energy_expended=306, rr_intervals_s=(1 / 1024, 258 / 1024, 65535 / 1024),
    )
    assert decode(0x2A37, payload) == [
        Reading("heart_rate", 257.0, "/min"),
        Reading("energy_expended", 306.0, "kJ"),
        Reading("rr_interval", 1 / 1024, "s"),
        Reading("rr_interval", 258 / 1024, "s"),
        Reading("rr_interval", 65535 / 1024, "s"),
    ]
    assert encode(parse(0x2A37, payload)) == payload


# --- Blood Pressure Measurement 0x2A35 / Intermediate Cuff Pressure 0x2A36 ---------------------------

BPS_STATUS = ("body_movement", "cuff_too_loose", "irregular_pulse", "improper_position")
BPS_QUALITY = Quality.MOTION | Quality.CUFF_FIT | Quality.IRREGULAR_PULSE | Quality.IMPROPER_POSITION


def test_bps_full_mmhg_with_unknown_year() -> None:
    # Nordic BloodPressureMeasurementDataCallbackTest.onBloodPressureMeasurementReceived_full:
    # 138/88/120 mmHg, timestamp year 0 (unknown) 04-17 20:41:59, pulse 60, user 1, status 0b100111.
    payload = bytes.fromhex("1E8A00580078000000041114293B3C00012700")
    assert parse(0x2A35, payload) == BloodPressureMeasurement(
        systolic=138.0, diastolic=88.0, mean=120.0, unit="mmHg", timestamp=None, pulse_rate=60.0, user_id=1,
        status=BPS_STATUS,
    )
    common: dict[str, Any] = {"flags": BPS_STATUS, "quality": BPS_QUALITY, "user_id": 1}
    assert decode(0x2A35, payload) == [
        Reading("systolic_bp", 138.0, "mm[Hg]", **common),
        Reading("diastolic_bp", 88.0, "mm[Hg]", **common),
        Reading("mean_bp", 120.0, "mm[Hg]", **common),
        Reading("heart_rate", 60.0, "/min", **common),
    ]


def test_bps_kpa_is_converted_to_mmhg() -> None:
    # Nordic ..._some: 18.9/11/15.9 kPa, pulse 60, status cuff too loose + pulse rate below range.
    payload = bytes.fromhex("15BDF00B009FF03C001200")
    flags = ("cuff_too_loose", "pulse_rate_below_range")
    assert decode(0x2A35, payload) == [
        Reading("systolic_bp", kpa_to_mmhg(18.9), "mm[Hg]", flags=flags, quality=Quality.CUFF_FIT, source_unit="kPa"),
        Reading("diastolic_bp", kpa_to_mmhg(11.0), "mm[Hg]", flags=flags, quality=Quality.CUFF_FIT, source_unit="kPa"),
        Reading("mean_bp", kpa_to_mmhg(15.9), "mm[Hg]", flags=flags, quality=Quality.CUFF_FIT, source_unit="kPa"),
        Reading("heart_rate", 60.0, "/min", flags=flags, quality=Quality.CUFF_FIT),
    ]
    assert encode(parse(0x2A35, payload)) == payload


def test_bps_minimal() -> None:
    # Nordic ..._minimal: flags 0, 18.9/11/15.9 mmHg only.
    assert decode(0x2A35, bytes.fromhex("00BDF00B009FF0")) == [
        Reading("systolic_bp", 18.9, "mm[Hg]"),
        Reading("diastolic_bp", 11.0, "mm[Hg]"),
        Reading("mean_bp", 15.9, "mm[Hg]"),
    ]


def test_bps_kpa_conversion_is_exact() -> None:
    # 16.0 kPa (SFLOAT 160e-1 = 0xF0A0) is 120.0099 mm[Hg] with the vocabulary's 7.50062 factor.
    systolic = decode(0x2A35, bytes.fromhex("01A0F0FF07FF07"))
    assert systolic == [Reading("systolic_bp", 16.0 * 7.50062, "mm[Hg]", source_unit="kPa")]
    assert systolic[0].value == pytest.approx(120.0099, abs=5e-5)


def test_icp_full() -> None:
    # Nordic IntermediateCuffPressureDataCallbackTest._full: cuff 4 mmHg, diastolic/MAP sent as 0 (ignored).
    payload = bytes.fromhex("1E0400000000000000041114293B3C00012700")
    assert parse(0x2A36, payload) == IntermediateCuffPressure(
        cuff_pressure=4.0, unit="mmHg", timestamp=None, pulse_rate=60.0, user_id=1, status=BPS_STATUS,
    )
    flags = ("intermediate", *BPS_STATUS)
    common: dict[str, Any] = {
        "flags": flags, "quality": BPS_QUALITY | Quality.EARLY_ESTIMATE, "intermediate": True, "user_id": 1,
    }
    assert decode(0x2A36, payload) == [
        Reading("cuff_pressure", 4.0, "mm[Hg]", **common),
        Reading("heart_rate", 60.0, "/min", **common),
    ]


def test_icp_kpa_and_minimal() -> None:
    # Nordic ..._some (11.1 kPa, pulse 60) and ..._minimal (21.5 mmHg).
    flags = ("intermediate", "cuff_too_loose", "pulse_rate_below_range")
    quality = Quality.CUFF_FIT | Quality.EARLY_ESTIMATE
    assert decode(0x2A36, bytes.fromhex("156FF0000000003C001200")) == [
        Reading("cuff_pressure", kpa_to_mmhg(11.1), "mm[Hg]", flags=flags, quality=quality, intermediate=True,
                source_unit="kPa"),
        Reading("heart_rate", 60.0, "/min", flags=flags, quality=quality, intermediate=True),
    ]
    assert decode(0x2A36, bytes.fromhex("00D7F000000000")) == [
        Reading("cuff_pressure", 21.5, "mm[Hg]", flags=("intermediate",), quality=Quality.EARLY_ESTIMATE,
                intermediate=True),
    ]


def test_icp_encoder_sends_nan_for_unused_pressures() -> None:
    assert encode(IntermediateCuffPressure(cuff_pressure=21.5)) == bytes.fromhex("00D7F0FF07FF07")


# --- PLX Spot-check 0x2A5E / Continuous 0x2A5F -------------------------------------------------------


def test_plx_continuous_simple() -> None:
    # Spezi PLXTests.testVerySimpleMeasurementCoding: {0, 100, 0, 90, 0}.
    assert decode(0x2A5F, bytes([0, 100, 0, 90, 0])) == [
        Reading("spo2", 100.0, "%"), Reading("heart_rate", 90.0, "/min"),
    ]


def test_plx_continuous_with_status_and_pulse_amplitude() -> None:
    # Spezi testSimpleMeasurementCoding: SpO2 95, PR 90, measurement ongoing, empty device status, PAI 8.7.
    payload = bytes([28, 95, 0, 90, 0, 32, 0, 0, 0, 0, 87, 240])
    assert parse(0x2A5F, payload) == PlxContinuous(
        spo2=95.0, pulse_rate=90.0, measurement_status=("measurement_ongoing",), device_status=(),
        pulse_amplitude_index=8.7,
    )
    flags = ("measurement_ongoing",)
    assert decode(0x2A5F, payload) == [
        Reading("spo2", 95.0, "%", flags=flags, quality=Quality.EARLY_ESTIMATE),
        Reading("heart_rate", 90.0, "/min", flags=flags, quality=Quality.EARLY_ESTIMATE),
    ]
    assert encode(parse(0x2A5F, payload)) == payload


def test_plx_continuous_full() -> None:
    # Spezi testFullMeasurementCoding: normal 99/97, fast 97/137, slow 98/69, ongoing + fully qualified, PAI 8.9.
    payload = bytes([31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227])
    assert parse(0x2A5F, payload) == PlxContinuous(
        spo2=99.0, pulse_rate=97.0, spo2_fast=97.0, pulse_rate_fast=137.0, spo2_slow=98.0, pulse_rate_slow=69.0,
        measurement_status=("measurement_ongoing", "fully_qualified_data"), device_status=(),
        pulse_amplitude_index=8.9,
    )
    flags = ("measurement_ongoing", "fully_qualified_data")
    assert decode(0x2A5F, payload) == [
        Reading("spo2", 99.0, "%", flags=flags, quality=Quality.EARLY_ESTIMATE),
        Reading("heart_rate", 97.0, "/min", flags=flags, quality=Quality.EARLY_ESTIMATE),
    ]


def test_plx_spot_check_full() -> None:
    # Spezi testSpotCheckMeasurementCoding: 94 % / 147 bpm at 2024-11-29 23:08:57, ongoing + questionable,
    # equipment malfunction + low perfusion, PAI 8.7.
    payload = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
    at = datetime(2024, 11, 29, 23, 8, 57)
    assert parse(0x2A5E, payload) == PlxSpotCheck(
        spo2=94.0, pulse_rate=147.0, timestamp=at,
        measurement_status=("measurement_ongoing", "questionable_measurement"),
        device_status=("equipment_malfunction", "low_perfusion"), pulse_amplitude_index=8.7,
    )
    flags = ("measurement_ongoing", "questionable_measurement", "equipment_malfunction", "low_perfusion")
    quality = Quality.EARLY_ESTIMATE | Quality.SIGNAL_QUESTIONABLE | Quality.DEVICE_FAULT | Quality.LOW_PERFUSION
    assert decode(0x2A5E, payload) == [
        Reading("spo2", 94.0, "%", at, flags, quality),
        Reading("heart_rate", 147.0, "/min", at, flags, quality),
    ]


def test_plx_spot_check_with_clock_not_set_has_no_time() -> None:
    # Constructed (PLXS 1.0.1): flags 0x11 = timestamp present + device clock not set; 97 % / 72 bpm.
    payload = bytes.fromhex("11" "6100" "4800" "D007010100000A")
    assert decode(0x2A5E, payload) == [
        Reading("spo2", 97.0, "%", None, ("device_clock_not_set",)),
        Reading("heart_rate", 72.0, "/min", None, ("device_clock_not_set",)),
    ]


def test_plx_sensor_displaced_is_an_artefact() -> None:
    # Constructed (PLXS 1.0.1 Device and Sensor Status bit 13): continuous flags 0x08, status 0x002000.
    assert decode(0x2A5F, bytes.fromhex("08" "6100" "4800" "002000")) == [
        Reading("spo2", 97.0, "%", flags=("sensor_displaced",), quality=Quality.SENSOR_DISPLACED),
        Reading("heart_rate", 72.0, "/min", flags=("sensor_displaced",), quality=Quality.SENSOR_DISPLACED),
    ]


# --- Temperature Measurement 0x2A1C / Intermediate Temperature 0x2A1E --------------------------------

NORDIC_HTS = bytes([0x06, 0xB0, 0x0E, 0x00, 0xFE, 0xDC, 0x07, 0x0C, 0x05, 0x0B, 0x32, 0x1B, 0x04])


def test_hts_celsius_with_time_and_finger() -> None:
    # Nordic TemperatureMeasurementDataCallbackTest: 37.60 degC, 2012-12-05 11:50:27, type 4 (finger).
    at = datetime(2012, 12, 5, 11, 50, 27)
    assert parse(0x2A1C, NORDIC_HTS) == TemperatureMeasurement(37.6, "C", at, "finger")
    assert decode(0x2A1C, NORDIC_HTS) == [Reading("body_temperature", 37.6, "Cel", at, location="finger")]


def test_hts_intermediate_is_flagged() -> None:
    at = datetime(2012, 12, 5, 11, 50, 27)
    assert parse(0x2A1E, NORDIC_HTS) == IntermediateTemperature(37.6, "C", at, "finger")
    assert decode(0x2A1E, NORDIC_HTS) == [
        Reading("body_temperature", 37.6, "Cel", at, ("intermediate",), Quality.EARLY_ESTIMATE, True,
                location="finger"),
    ]


def test_hts_fahrenheit_is_converted_exactly() -> None:
    # Constructed (HTS 1.0): flags 0x01 (Fahrenheit), FLOAT 986e-1 = 98.6 degF = 37.0 Cel.
    readings = decode(0x2A1C, bytes.fromhex("01DA0300FF"))
    assert readings == [Reading("body_temperature", fahrenheit_to_celsius(98.6), "Cel", source_unit="[degF]")]
    assert readings[0].value == 37.0


# --- Glucose Measurement 0x2A18 ----------------------------------------------------------------------


def test_gls_nordic_record() -> None:
    # Nordic GlucoseMeasurementDataCallbackTest: seq 1, 2019-02-27 11:10:30 - 5 min, 30 kg/L, capillary
    # plasma at the finger, status 0x0105, context follows.
    payload = bytes([0b011011, 1, 0, 0xE3, 0x07, 2, 27, 11, 10, 30, 0xFB, 0xFF, 30, 0, 0x12, 0b101, 0b1])
    status = ("device_battery_low", "sample_size_insufficient", "temperature_too_low")
    assert parse(0x2A18, payload) == GlucoseMeasurement(
        sequence_number=1, base_time=datetime(2019, 2, 27, 11, 10, 30), concentration=30.0, unit="kg/L",
        sample_type="capillary_plasma", sample_location="finger", time_offset_min=-5, sensor_status=status,
        context_follows=True,
    )
    assert decode(0x2A18, payload) == [
        Reading("glucose", kg_per_l_to_mmol_l(30.0), "mmol/L", datetime(2019, 2, 27, 11, 5, 30), status,
                Quality.DEVICE_FAULT, source_unit="kg/L", sequence_number=1, location="finger"),
    ]
    assert encode(parse(0x2A18, payload)) == payload


def test_gls_mg_dl_record() -> None:
    # Constructed (GLS 1.0.1): seq 1, 2021-12-15 08:30:00, 95e-5 kg/L (= 95 mg/dL), capillary whole blood, finger.
    payload = bytes.fromhex("02" "0100" "E5070C0F081E00" "5FB0" "11")
    readings = decode(0x2A18, payload)
    assert readings == [
        Reading("glucose", mg_dl_to_mmol_l(95.0), "mmol/L", datetime(2021, 12, 15, 8, 30), source_unit="kg/L",
                sequence_number=1, location="finger"),
    ]
    assert readings[0].value == pytest.approx(95 / 18.016, rel=1e-12)


def test_gls_mol_per_litre_record() -> None:
    # Constructed (GLS 1.0.1): flags 0x06 (mol/L), 55e-4 mol/L = 5.5 mmol/L, venous plasma, location n/a.
    payload = bytes.fromhex("06" "2A00" "E5070C0F081E00" "37C0" "F4")
    assert decode(0x2A18, payload) == [
        Reading("glucose", mol_per_l_to_mmol_l(0.0055), "mmol/L", datetime(2021, 12, 15, 8, 30), source_unit="mol/L",
                sequence_number=42),
    ]


def test_gls_control_solution_is_not_a_patient_reading() -> None:
    # Constructed (GLS 1.0.1): type 10 (control solution) at location 4 (control solution).
    payload = bytes.fromhex("02" "0300" "E5070C0F081E00" "5FB0" "4A")
    record = parse(0x2A18, payload)
    assert isinstance(record, GlucoseMeasurement)
    assert record.sample_type == "control_solution"
    assert decode(0x2A18, payload) == []


# --- Weight Measurement 0x2A9D -----------------------------------------------------------------------


def test_wss_si_with_everything() -> None:
    # Constructed (WSS 1.0): 70.000 kg (14000 x 0.005), 2024-03-01 07:30:00, user 1, BMI 22.9, height 1.750 m.
    payload = bytes.fromhex("0E" "B036" "E8070301071E00" "01" "E500" "D606")
    at = datetime(2024, 3, 1, 7, 30)
    assert parse(0x2A9D, payload) == WeightMeasurement(70.0, "kg", at, 1, 22.9, 1.75)
    assert decode(0x2A9D, payload) == [
        Reading("body_weight", 70.0, "kg", at, user_id=1),
        Reading("bmi", 22.9, "kg/m2", at, user_id=1),
        Reading("body_height", 1.75, "m", at, user_id=1),
    ]
    assert encode(parse(0x2A9D, payload)) == payload


def test_wss_imperial_is_converted() -> None:
    # Constructed (WSS 1.0): imperial, 154.32 lb (15432 x 0.01), BMI 22.9, height 69.0 in (690 x 0.1).
    payload = bytes.fromhex("09" "483C" "E500" "B202")
    assert decode(0x2A9D, payload) == [
        Reading("body_weight", lb_to_kg(154.32), "kg", source_unit="[lb_av]"),
        Reading("bmi", 22.9, "kg/m2"),
        Reading("body_height", inch_to_m(69.0), "m", source_unit="[in_i]"),
    ]


def test_wss_unsuccessful_measurement_has_no_weight() -> None:
    # WSS 1.0: weight 0xFFFF = "Measurement Unsuccessful"; user 0xFF = unknown user.
    assert parse(0x2A9D, bytes.fromhex("04FFFFFF")) == WeightMeasurement(None, "kg", None, 0xFF)
    assert decode(0x2A9D, bytes.fromhex("04FFFFFF")) == []


# --- Battery Level 0x2A19 ----------------------------------------------------------------------------


def test_battery_level_is_a_device_status_reading() -> None:
    # Nordic BatteryLevelDataCallbackTest range: 0..100 %.
    assert parse(0x2A19, bytes([100])) == BatteryLevel(100)
    assert decode(0x2A19, bytes([0x55])) == [Reading("battery_level", 85.0, "%")]
    assert encode(BatteryLevel(0)) == b"\x00"
