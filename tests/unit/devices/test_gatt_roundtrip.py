"""encode -> parse/decode round trips for every measurement type (hypothesis), and the HRS fast path."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.gatt import (
    BatteryLevel,
    BloodPressureMeasurement,
    GlucoseMeasurement,
    HeartRateMeasurement,
    IntermediateCuffPressure,
    IntermediateTemperature,
    Measurement,
    PlxContinuous,
    PlxSpotCheck,
    RacpNumberOfRecords,
    RacpOpCode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    TemperatureMeasurement,
    WeightMeasurement,
    characteristic_of,
    codec_for,
    decode,
    encode,
    parse,
)
from devices.gatt.profiles import blood_pressure, glucose, heart_rate, pulse_oximeter, thermometer
from devices.gatt.sfloat import decode_float, decode_sfloat

# Every value an SFLOAT / FLOAT can carry (None for NaN and NRes, +/-inf included), so equality is exact.
sfloats = st.integers(0, 0xFFFF).map(decode_sfloat)
floats32 = st.integers(0, 0xFFFFFFFF).map(decode_float)
times = st.one_of(st.none(), st.datetimes(datetime(1582, 1, 1), datetime(9998, 12, 31)).map(
    lambda t: t.replace(microsecond=0)))
users = st.one_of(st.none(), st.integers(0, 0xFF))


def statuses(table: Any, bits: int) -> st.SearchStrategy[tuple[str, ...] | None]:
    """None (field absent) or the names of a random raw status word, as decoding returns them."""
    return st.one_of(st.none(), st.integers(0, (1 << bits) - 1).map(table.names))


measurements: dict[str, st.SearchStrategy[Any]] = {
    "hrs": st.builds(
        HeartRateMeasurement,
        bpm=st.integers(0, 0xFFFF),
        sensor_contact=st.one_of(st.none(), st.booleans()),
        energy_expended=st.one_of(st.none(), st.integers(0, 0xFFFF)),
        rr_intervals_s=st.lists(st.integers(0, 0xFFFF).map(lambda raw: raw / 1024), max_size=9).map(tuple),
    ),
    "bps": st.builds(
        BloodPressureMeasurement, sfloats, sfloats, sfloats, st.sampled_from(["mmHg", "kPa"]), times, sfloats, users,
        statuses(blood_pressure.STATUS, 16),
    ),
    "icp": st.builds(
        IntermediateCuffPressure, sfloats, st.sampled_from(["mmHg", "kPa"]), times, sfloats, users,
        statuses(blood_pressure.STATUS, 16),
    ),
    "plx_spot": st.builds(
        PlxSpotCheck, sfloats, sfloats, times, statuses(pulse_oximeter.MEASUREMENT_STATUS, 16),
        statuses(pulse_oximeter.DEVICE_STATUS, 24), sfloats, st.booleans(),
    ),
    "plx_continuous": st.builds(
        PlxContinuous, sfloats, sfloats, sfloats, sfloats, sfloats, sfloats,
        statuses(pulse_oximeter.MEASUREMENT_STATUS, 16), statuses(pulse_oximeter.DEVICE_STATUS, 24), sfloats,
    ),
    "hts": st.builds(
        TemperatureMeasurement, floats32, st.sampled_from(["C", "F"]), times,
        st.one_of(st.none(), st.sampled_from(sorted(thermometer.TEMPERATURE_TYPES.by_name))),
    ),
    "hts_intermediate": st.builds(
        IntermediateTemperature, floats32, st.sampled_from(["C", "F"]), times,
        st.one_of(st.none(), st.sampled_from(sorted(thermometer.TEMPERATURE_TYPES.by_name))),
    ),
    "gls": st.one_of(
        # With a concentration: type and location travel with it.
        st.builds(
            GlucoseMeasurement,
            sequence_number=st.integers(0, 0xFFFF), base_time=times,
            concentration=sfloats.filter(lambda v: v is not None), unit=st.sampled_from(["kg/L", "mol/L"]),
            sample_type=st.sampled_from(sorted(glucose.SAMPLE_TYPES.by_name)),
            sample_location=st.sampled_from(sorted(glucose.SAMPLE_LOCATIONS.by_name)),
            time_offset_min=st.one_of(st.none(), st.integers(-0x8000, 0x7FFF)),
            sensor_status=statuses(glucose.SENSOR_STATUS, 16), context_follows=st.booleans(),
        ),
        # Without: the record keeps the default type and location.
        st.builds(
            GlucoseMeasurement,
            sequence_number=st.integers(0, 0xFFFF), base_time=times, unit=st.sampled_from(["kg/L", "mol/L"]),
            time_offset_min=st.one_of(st.none(), st.integers(-0x8000, 0x7FFF)),
            sensor_status=statuses(glucose.SENSOR_STATUS, 16), context_follows=st.booleans(),
        ),
    ),
    "wss": st.sampled_from([("kg", 200, 1000), ("lb", 100, 10)]).flatmap(lambda unit: st.builds(
        WeightMeasurement,
        weight=st.one_of(st.none(), st.integers(0, 0xFFFE).map(lambda raw: raw / unit[1])),
        unit=st.just(unit[0]),
        timestamp=times,
        user_id=users,
    ).flatmap(lambda m: st.one_of(
        st.just(m),
        st.builds(
            lambda bmi, height: WeightMeasurement(m.weight, m.unit, m.timestamp, m.user_id, bmi, height),
            st.integers(0, 0xFFFF).map(lambda raw: raw / 10),
            st.integers(0, 0xFFFF).map(lambda raw: raw / unit[2]),
        ),
    ))),
    "battery": st.builds(BatteryLevel, st.integers(0, 100)),
    "racp": st.one_of(
        st.just(RacpRequest.report_all()),
        st.integers(0, 0xFFFF).map(RacpRequest.report_from),
        st.one_of(st.none(), st.integers(0, 0xFFFF)).map(RacpRequest.count),
        st.just(RacpRequest.abort()),
        st.builds(
            lambda op, lo, hi: RacpRequest(op, RacpOperator.WITHIN_RANGE, min(lo, hi), max(lo, hi)),
            st.sampled_from([RacpOpCode.REPORT_STORED_RECORDS, RacpOpCode.DELETE_STORED_RECORDS]),
            st.integers(0, 0xFFFF), st.integers(0, 0xFFFF),
        ),
        st.builds(
            lambda op, operator: RacpRequest(op, operator),
            st.sampled_from([RacpOpCode.REPORT_STORED_RECORDS, RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS]),
            st.sampled_from([RacpOperator.ALL_RECORDS, RacpOperator.FIRST_RECORD, RacpOperator.LAST_RECORD]),
        ),
        st.integers(0, 0xFFFF).map(lambda hi: RacpRequest(
            RacpOpCode.DELETE_STORED_RECORDS, RacpOperator.LESS_THAN_OR_EQUAL, maximum=hi)),
        st.integers(0, 0xFFFF).map(RacpNumberOfRecords),
        st.builds(RacpResponse, st.integers(0, 0xFF), st.integers(0, 0xFF)),
    ),
}


@pytest.mark.parametrize("profile", sorted(measurements))
@settings(deadline=None, max_examples=100)
@given(data=st.data())
def test_encode_then_parse_gives_the_measurement_back(profile: str, data: st.DataObject) -> None:
    m: Measurement = data.draw(measurements[profile])
    payload = encode(m)
    assert parse(characteristic_of(m), payload) == m
    # Re-encoding what was parsed reproduces the bytes: one canonical wire form per measurement.
    assert encode(parse(characteristic_of(m), payload)) == payload


@pytest.mark.parametrize("profile", sorted(measurements))
@settings(deadline=None, max_examples=60)
@given(data=st.data())
def test_encode_then_decode_gives_the_readings_of_the_measurement(profile: str, data: st.DataObject) -> None:
    m: Measurement = data.draw(measurements[profile])
    codec = codec_for(characteristic_of(m))
    readings = decode(codec.characteristic, encode(m))
    assert readings == codec.readings(m)
    assert all(math.isfinite(r.value) for r in readings)


@settings(deadline=None)
@given(st.binary(min_size=2, max_size=2) | st.binary(max_size=24))
def test_hrs_fast_path_agrees_with_the_generic_path(payload: bytes) -> None:
    try:
        slow = heart_rate.readings(heart_rate.parse(payload))
    except ValueError as exc:
        slow_error: str | None = str(exc)
    else:
        slow_error = None
    try:
        fast = heart_rate.decode(payload)
    except ValueError as exc:
        assert str(exc) == slow_error
    else:
        assert slow_error is None
        assert fast == slow
