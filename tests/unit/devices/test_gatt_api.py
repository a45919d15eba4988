"""UUID forms, indicate/notify tables, the Reading type and the status-name -> Quality table."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from devices.gatt import (
    CODECS,
    DEVICE_STATUS_UNITS,
    FLAG_QUALITY,
    INDICATED,
    NOTIFIED,
    Reading,
    UnknownCharacteristicError,
    decode,
    is_device_status,
    is_indicated,
    quality_of,
    short_uuid,
    uuid128,
    uuids,
)
from devices.gatt import reading as reading_module
from devices.gatt.fields import BitNames
from devices.gatt.profiles import blood_pressure, glucose, heart_rate, pulse_oximeter
from proto import vocabulary
from proto.quality import ARTEFACT, Quality


def test_uuid128_is_the_bluetooth_base_uuid() -> None:
    assert uuid128(0x2A37) == "00002a37-0000-1000-8000-00805f9b34fb"
    assert uuid128(0x180D) == "0000180d-0000-1000-8000-00805f9b34fb"
    with pytest.raises(ValueError):
        uuid128(0x10000)


@pytest.mark.parametrize(
    "form", [0x2A37, "2A37", "2a37", "0x2A37", "00002a37-0000-1000-8000-00805f9b34fb",
             "00002A37-0000-1000-8000-00805F9B34FB"],
)
def test_every_characteristic_form_decodes_alike(form: int | str) -> None:
    assert short_uuid(form) == 0x2A37
    assert decode(form, bytes.fromhex("0655")) == [Reading("heart_rate", 85.0, "/min")]


def test_non_base_uuids_are_not_16_bit() -> None:
    with pytest.raises(UnknownCharacteristicError):
        short_uuid("00002a37-0000-1000-8000-00805f9b34fc")
    with pytest.raises(UnknownCharacteristicError):
        short_uuid("2A3")


def test_indicated_and_notified_follow_the_service_specs() -> None:
    assert {0x2A35, 0x2A1C, 0x2A5E, 0x2A9D, 0x2A52} == INDICATED
    assert {0x2A37, 0x2A36, 0x2A1E, 0x2A5F, 0x2A18} <= NOTIFIED
    assert not INDICATED & NOTIFIED
    assert set(CODECS) == INDICATED | NOTIFIED  # every characteristic we decode arrives one way or the other
    assert is_indicated("2a35") and not is_indicated(uuid128(0x2A37))


def test_every_service_lists_only_decodable_characteristics() -> None:
    assert uuids.SERVICE_CHARACTERISTICS[uuids.HEART_RATE_SERVICE] == (0x2A37,)
    for characteristics in uuids.SERVICE_CHARACTERISTICS.values():
        assert set(characteristics) <= set(CODECS)


def test_reading_constructor_matches_its_fields() -> None:
    # Reading has a hand-written __init__ (for speed): it must accept exactly the dataclass fields, in order.
    params = list(inspect.signature(Reading).parameters.values())
    assert [p.name for p in params] == [f.name for f in dataclasses.fields(Reading)]
    reading = Reading("spo2", 97.0, "%", None, ("low_perfusion",), Quality.LOW_PERFUSION, True, "x", 3, 4, "finger")
    assert dataclasses.astuple(reading) == (
        "spo2", 97.0, "%", None, ("low_perfusion",), Quality.LOW_PERFUSION, True, "x", 3, 4, "finger",
    )
    assert Reading("spo2", 97.0, "%") == Reading("spo2", 97.0, "%", None, (), Quality.NONE, False, None, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reading.value = 1.0  # type: ignore[misc]
    assert dataclasses.replace(reading, value=98.0).value == 98.0


def test_vital_kinds_use_the_vocabulary_units() -> None:
    vital_kinds = [
        reading_module.HEART_RATE, reading_module.SPO2, reading_module.SYSTOLIC_BP, reading_module.DIASTOLIC_BP,
        reading_module.MEAN_BP, reading_module.BODY_TEMPERATURE, reading_module.GLUCOSE, reading_module.BODY_WEIGHT,
        reading_module.BODY_HEIGHT, reading_module.BMI, reading_module.RR_INTERVAL, reading_module.ENERGY_EXPENDED,
    ]
    for kind in vital_kinds:
        assert reading_module.unit_of(kind) == vocabulary.kind(kind).unit
        assert not is_device_status(kind)


def test_device_status_kinds_are_not_vitals() -> None:
    assert DEVICE_STATUS_UNITS == {"battery_level": "%", "cuff_pressure": "mm[Hg]"}
    for kind in DEVICE_STATUS_UNITS:
        assert is_device_status(kind)
        assert kind not in vocabulary.VOCABULARY


def _all_status_names() -> set[str]:
    tables: list[BitNames] = [
        blood_pressure.STATUS, pulse_oximeter.MEASUREMENT_STATUS, pulse_oximeter.DEVICE_STATUS, glucose.SENSOR_STATUS,
    ]
    names = {entry.name for table in tables for entry in table.entries}
    return names | {heart_rate.NO_CONTACT, "intermediate", "device_clock_not_set"}


def test_the_quality_table_covers_exactly_the_names_the_codecs_emit() -> None:
    assert set(FLAG_QUALITY) == _all_status_names()


@pytest.mark.parametrize(
    ("flags", "quality"),
    [
        ((), Quality.NONE),
        (("sensor_contact_not_detected",), Quality.SENSOR_CONTACT_LOST),
        (("body_movement", "irregular_pulse"), Quality.MOTION | Quality.IRREGULAR_PULSE),
        (("low_perfusion", "sensor_displaced"), Quality.LOW_PERFUSION | Quality.SENSOR_DISPLACED),
        (("demonstration_data",), Quality.SIMULATED),
        # A glucose beyond the meter's range is a real extreme: it must still be able to alarm.
        (("result_above_range",), Quality.NONE),
    ],
)
def test_quality_of_status_names(flags: tuple[str, ...], quality: Quality) -> None:
    assert quality_of(flags) == quality


def test_probe_off_conditions_are_artefacts() -> None:
    for name in ("sensor_contact_not_detected", "sensor_disconnected", "sensor_unconnected", "sensor_displaced",
                 "low_perfusion", "body_movement", "equipment_malfunction", "sample_size_insufficient"):
        assert FLAG_QUALITY[name] & ARTEFACT, name


@pytest.mark.parametrize("buffer", [bytes, bytearray, memoryview])
def test_any_bytes_like_payload_decodes(buffer: type) -> None:
    # bleak hands notifications over as bytearray.
    payload = bytes.fromhex("1E8A00580078000000041114293B3C00012700")
    assert decode(0x2A35, buffer(payload)) == decode(0x2A35, payload)
    assert decode(0x2A37, buffer(b"\x10\x48\x00\x03")) == decode(0x2A37, b"\x10\x48\x00\x03")
