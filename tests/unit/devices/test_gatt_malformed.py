"""Malformed payloads raise GattDecodeError naming characteristic and byte offset; fuzzing finds nothing else."""

from __future__ import annotations

import math
import pickle
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.gatt import (
    CODECS,
    BatteryLevel,
    BloodPressureMeasurement,
    GattDecodeError,
    GattEncodeError,
    HeartRateMeasurement,
    RacpOpCode,
    RacpOperator,
    RacpRequest,
    Reading,
    UnknownCharacteristicError,
    WeightMeasurement,
    decode,
    encode,
    parse,
    quality_of,
)
from devices.gatt.reading import unit_of


@pytest.mark.parametrize(
    ("characteristic", "hex_payload", "offset", "reason"),
    [
        # Empty payloads, every characteristic.
        *[(c, "", 0, "empty payload") for c in sorted(CODECS)],
        # HRS: UINT16 bpm promised, 1 byte left.
        (0x2A37, "1148", 1, "truncated UINT16 (bpm): needs 2 byte(s), 1 left"),
        # HRS: no RR field promised, yet a byte follows.
        (0x2A37, "004800", 2, "1 trailing byte(s) after the last field"),
        # HRS: RR flag set, no RR value (Nordic onInvalidDataReceived: {0b10111, 1, 1}).
        (0x2A37, "170101", 3, "truncated UINT16 (rr_intervals): flag set but no value present"),
        # HRS: RR-intervals fill the packet in 2-byte steps; an odd leftover byte is garbage.
        (0x2A37, "1048AA01BB", 4, "truncated UINT16 (rr_intervals): 1 trailing byte(s)"),
        # HRS: energy expended promised, absent.
        (0x2A37, "0848", 2, "truncated UINT16 (energy_expended): needs 2 byte(s), 0 left"),
        # BPS: Nordic onInvalidDataReceived_toShort {1..6}: MAP SFLOAT cut short.
        (0x2A35, "010203040506", 5, "truncated SFLOAT (mean): needs 2 byte(s), 1 left"),
        # BPS: Nordic onInvalidDataReceived_noTimestamp {3, 2..7}: timestamp flag, no timestamp.
        (0x2A35, "03020304050607", 7, "truncated DATE_TIME (timestamp): needs 7 byte(s), 0 left"),
        # BPS: pulse rate promised, one byte of it.
        (0x2A35, "048A005800780048", 7, "truncated SFLOAT (pulse_rate): needs 2 byte(s), 1 left"),
        # BPS: month 13 in the timestamp.
        (0x2A35, "028A0058007800E8070D0100000000", 7, "invalid date-time 2024-13-01 00:00:00"),
        # BPS: 30 February.
        (0x2A35, "028A0058007800E807021E00000000", 7, "impossible date 2024-02-30"),
        # ICP: trailing byte after status.
        (0x2A36, "10D7F0FF07FF07000000", 9, "1 trailing byte(s) after the last field"),
        # PLX spot-check: device and sensor status (24 bits) cut short.
        (0x2A5E, "04610048000020", 5, "truncated UINT24 (device_status): needs 3 byte(s), 2 left"),
        # PLX continuous: SpO2PR-Slow promised, absent.
        (0x2A5F, "0261004800", 5, "truncated SFLOAT (spo2_slow): needs 2 byte(s), 0 left"),
        # HTS: Nordic onInvalidDataReceived: temperature type promised, absent.
        (0x2A1C, "06B00E00FEDC070C050B321B", 12, "truncated UINT8 (type): needs 1 byte(s), 0 left"),
        (0x2A1E, "00B00E00", 1, "truncated FLOAT (value): needs 4 byte(s), 3 left"),
        # GLS: Nordic onInvalidDataReceived (time offset missing): the record comes up 2 bytes short.
        (0x2A18, "1B0000E207041A0B091E1E0012" "0501", 15, "truncated UINT16 (sensor_status): needs 2 byte(s), 0 left"),
        # GLS: reserved sample type 0 / reserved location 5: a record we cannot classify is not passed on.
        (0x2A18, "020100E5070C0F081E005FB010", 12, "reserved glucose sample type 0"),
        (0x2A18, "020100E5070C0F081E005FB051", 12, "reserved glucose sample location 5"),
        # GLS: base time 9999-12-31 23:59:00 + 32767 minutes is past any datetime.
        (0x2A18, "010100" "0F270C1F173B00" "FF7F", 10, "base time plus time offset is past year 9999"),
        # WSS: BMI and height promised, height absent.
        (0x2A9D, "08B036E500", 5, "truncated UINT16 (height): needs 2 byte(s), 0 left"),
        # Battery: 101..255 % are reserved; nothing may follow the level.
        (0x2A19, "65", 0, "battery level 101 is reserved (0..100 %)"),
        (0x2A19, "6400", 1, "1 trailing byte(s) after the last field"),
        # RACP.
        (0x2A52, "01", 1, "truncated: no operator"),
        (0x2A52, "0700", 0, "unknown op code 0x07"),
        (0x2A52, "0107", 1, "invalid operator 0x07 for op code 0x01"),
        (0x2A52, "060101", 1, "operator must be NULL (0x00) for op code 0x06, got 0x01"),  # Nordic {6, 1, 1}
        (0x2A52, "050001", 2, "truncated UINT16 (count): needs 2 byte(s), 1 left"),  # Nordic {5, 0, 1}
        (0x2A52, "050004030201", 4, "2 trailing byte(s) after the last field"),  # Nordic uint32 count
        (0x2A52, "0103020C00", 2, "filter type 0x02 not supported (only sequence number 0x01)"),
        (0x2A52, "010401050010", 5, "truncated UINT16 (maximum): needs 2 byte(s), 1 left"),
        (0x2A52, "030001", 2, "1 trailing byte(s) after the last field"),
    ],
)
def test_malformed_payload_raises_with_offset(characteristic: int, hex_payload: str, offset: int, reason: str) -> None:
    with pytest.raises(GattDecodeError) as caught:
        decode(characteristic, bytes.fromhex(hex_payload))
    error = caught.value
    assert (error.characteristic, error.offset, error.reason) == (characteristic, offset, reason)
    assert str(error) == f"0x{characteristic:04X} at byte {offset}: {reason}"


def test_message_format_matches_the_documented_example() -> None:
    with pytest.raises(GattDecodeError, match=r"^0x2A35 at byte 7: truncated SFLOAT"):
        decode("2a35", bytes.fromhex("048A005800780048"))


def test_decode_error_is_a_value_error_and_pickles() -> None:
    with pytest.raises(ValueError) as caught:
        decode(0x2A37, b"")
    clone = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(clone, GattDecodeError)
    assert (clone.characteristic, clone.offset, str(clone)) == (0x2A37, 0, "0x2A37 at byte 0: empty payload")


@pytest.mark.parametrize(
    ("characteristic", "code"),
    [(0x2A00, 0x2A00), (0x12345, -1), ("2A00", 0x2A00), ("not-a-uuid", -1),
     ("6e400003-b5a3-f393-e0a9-e50e24dcca9e", -1), ("00002a00-0000-1000-8000-00805f9b34fb", 0x2A00)],
)
def test_unknown_characteristics_are_rejected(characteristic: int | str, code: int) -> None:
    with pytest.raises(UnknownCharacteristicError) as caught:
        decode(characteristic, b"\x00\x00")
    assert caught.value.characteristic == code
    assert caught.value.offset == 0
    assert isinstance(caught.value, GattDecodeError)


def test_reserved_flag_bits_are_ignored() -> None:
    # GATT: receivers ignore RFU bits. HRS bits 5-7 and BPS bits 5-7 set change nothing...
    assert decode(0x2A37, bytes.fromhex("E655")) == decode(0x2A37, bytes.fromhex("0655"))
    assert decode(0x2A37, bytes.fromhex("F04855AA")) == decode(0x2A37, bytes.fromhex("104855AA"))
    assert decode(0x2A35, bytes.fromhex("E08A0058007800")) == decode(0x2A35, bytes.fromhex("008A0058007800"))
    # ...and neither do reserved status bits (PLX device status bits 16-23, BPS status bits 6-15).
    assert parse(0x2A5F, bytes.fromhex("08610048000000FF")) == parse(0x2A5F, bytes.fromhex("0861004800000000"))
    assert parse(0x2A35, bytes.fromhex("108A0058007800C0FF")) == parse(0x2A35, bytes.fromhex("108A00580078000000"))


def test_unknown_year_gives_no_time_but_valid_fields_still_checked() -> None:
    # Year 0 = "not known" (Date Time): no measured_at; month 13 is still rejected even then.
    assert decode(0x2A1C, bytes.fromhex("02" "72010000" "00000C05000000"))[0].measured_at is None
    with pytest.raises(GattDecodeError, match="at byte 5: invalid date-time"):
        decode(0x2A1C, bytes.fromhex("02" "72010000" "00000D05000000"))


@pytest.mark.parametrize(
    ("characteristic", "hex_payload"),
    [
        (0x2A35, "00FF07FF07FF07"),  # all NaN
        (0x2A35, "00FE07FE07FE07"),  # all +INF
        (0x2A35, "0002080208" "0208"),  # all -INF
        (0x2A35, "04000800080008" "0108"),  # NRes and reserved
        (0x2A36, "00FF07FF07FF07"),
        (0x2A5E, "00FF070008"),
        (0x2A5F, "00FE070208"),
        (0x2A1C, "00FFFF7F00"),  # FLOAT NaN
        (0x2A1C, "0000008000"),  # FLOAT NRes
        (0x2A1E, "00FEFF7F00"),  # FLOAT +INF
        (0x2A1E, "0002008000"),  # FLOAT -INF
        (0x2A1C, "0001008000"),  # FLOAT reserved
        (0x2A18, "020100E5070C0F081E00FF0711"),  # glucose NaN
        (0x2A18, "020100E5070C0F081E00FE0711"),  # glucose +INF (e.g. "HI" shown on the meter)
    ],
)
def test_special_values_yield_no_reading(characteristic: int, hex_payload: str) -> None:
    assert decode(characteristic, bytes.fromhex(hex_payload)) == []


def test_a_special_value_only_drops_its_own_reading() -> None:
    # BPS 120 / NaN / 93 mmHg: systolic and MAP still reported.
    assert [r.kind for r in decode(0x2A35, bytes.fromhex("007800FF075D00"))] == ["systolic_bp", "mean_bp"]


@pytest.mark.parametrize(
    ("measurement", "reason"),
    [
        (HeartRateMeasurement(bpm=70000), "bpm 70000 out of range 0..65535"),
        (HeartRateMeasurement(bpm=60, rr_intervals_s=(70.0,)), "rr_intervals: "),
        (BloodPressureMeasurement(2.1e10, 80.0, 93.0), "systolic: 21000000000.0 is out of the SFLOAT range"),
        (BloodPressureMeasurement(120.0, 80.0, 93.0, unit="psi"),  # type: ignore[arg-type]
         "unit must be 'mmHg' or 'kPa', not 'psi'"),
        (BloodPressureMeasurement(120.0, 80.0, 93.0, status=("hiccups",)), "status: unknown status 'hiccups'"),
        (BloodPressureMeasurement(120.0, 80.0, 93.0, status=("pulse_rate_above_range", "pulse_rate_below_range")),
         "conflicts with another status"),
        (BloodPressureMeasurement(120.0, 80.0, 93.0, timestamp=datetime(2024, 1, 1, tzinfo=UTC)),
         "naive device-local time"),
        (WeightMeasurement(70.0, bmi=22.9), "BMI and height are sent together or not at all"),
        (WeightMeasurement(400.0), "weight: 400.0 is out of range"),
        (BatteryLevel(101), "battery level 101 is reserved"),
        (RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.WITHIN_RANGE, 9, 3), "range minimum 9 > maximum 3"),
        (RacpRequest(RacpOpCode.REPORT_STORED_RECORDS, RacpOperator.GREATER_THAN_OR_EQUAL),
         "operator GREATER_THAN_OR_EQUAL takes a minimum"),
        (RacpRequest(RacpOpCode.ABORT_OPERATION, RacpOperator.ALL_RECORDS), "abort takes operator NULL"),
    ],
)
def test_unrepresentable_measurements_do_not_encode(measurement: object, reason: str) -> None:
    with pytest.raises(GattEncodeError) as caught:
        encode(measurement)  # type: ignore[arg-type]
    assert reason in str(caught.value)


def test_encoding_an_unknown_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode(object())  # type: ignore[arg-type]


def _check_readings(readings: list[Reading]) -> None:
    for r in readings:
        assert isinstance(r, Reading)
        assert math.isfinite(r.value)
        assert r.unit == unit_of(r.kind)
        assert r.quality == quality_of(r.flags)


@pytest.mark.parametrize("characteristic", sorted(CODECS))
@settings(deadline=None, max_examples=200)
@given(payload=st.binary(max_size=64))
def test_fuzz_random_bytes_give_readings_or_decode_error(characteristic: int, payload: bytes) -> None:
    try:
        readings = decode(characteristic, payload)
    except GattDecodeError as exc:
        assert exc.characteristic == characteristic
        assert 0 <= exc.offset <= len(payload)
    else:
        _check_readings(readings)


@pytest.mark.parametrize("characteristic", sorted(CODECS))
@settings(deadline=None, max_examples=120)
@given(data=st.data())
def test_fuzz_flag_driven_payloads(characteristic: int, data: st.DataObject) -> None:
    # Random flags with a body of plausible length reach the deeper fields far more often than pure noise.
    flags = data.draw(st.integers(0, 0xFF))
    body = data.draw(st.binary(min_size=4, max_size=24))
    try:
        readings = decode(characteristic, bytes([flags]) + body)
    except GattDecodeError as exc:
        assert exc.characteristic == characteristic
    else:
        _check_readings(readings)
