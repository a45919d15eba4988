"""Readings -> samples: patient and device ids, quality flags, device status apart, and which time stamp counts."""

from __future__ import annotations

import datetime as dt

from devices.gatt import (
    BloodPressureMeasurement,
    IntermediateCuffPressure,
    PlxSpotCheck,
    Reading,
    TemperatureMeasurement,
    decode,
    encode,
)
from edge.collector.samples import TimePolicy, convert, sample_time
from proto.quality import Quality
from proto.vitals import VitalSample

CST = dt.timezone(dt.timedelta(hours=8))
RECEIVED = dt.datetime(2026, 3, 2, 0, 0, 30, tzinfo=dt.UTC)  # 08:00:30 in China
POLICY = TimePolicy(device_tz=CST, max_backfill_s=86_400.0, max_clock_skew_s=120.0)


def samples(characteristic: int, payload: bytes, *, simulated: bool = False) -> list[VitalSample]:
    return list(convert(decode(characteristic, payload), patient_id="pt-0001", device_id="hrm-01",
                        received=RECEIVED, simulated=simulated, policy=POLICY).samples)


def test_a_heart_rate_notification_becomes_one_sample_of_the_wearer() -> None:
    assert samples(0x2A37, bytes.fromhex("0655")) == [
        VitalSample(RECEIVED, "pt-0001", "heart_rate", 85.0, "hrm-01", Quality.NONE)]


def test_lost_contact_is_flagged_and_an_impossible_rate_marked_implausible_but_kept() -> None:
    (sample,) = samples(0x2A37, bytes.fromhex("0400"))  # contact supported, not detected: 0 bpm
    assert sample.value == 0.0
    assert sample.quality == Quality.SENSOR_CONTACT_LOST | Quality.IMPLAUSIBLE


def test_simulator_devices_mark_their_samples() -> None:
    (sample,) = samples(0x2A37, bytes.fromhex("0655"), simulated=True)
    assert sample.quality == Quality.SIMULATED


def test_battery_is_device_status_not_a_vital() -> None:
    converted = convert(decode(0x2A19, bytes([57])), patient_id="pt-0001", device_id="hrm-01", received=RECEIVED)
    assert converted.samples == () and converted.battery_pct == 57.0


def test_the_inflating_cuff_is_not_stored() -> None:
    converted = convert(decode(0x2A36, encode(IntermediateCuffPressure(cuff_pressure=95.0))),
                        patient_id="pt-0001", device_id="bp-01", received=RECEIVED)
    assert converted.samples == () and converted.ignored == 1


def test_a_stored_cuff_result_keeps_the_time_it_was_measured() -> None:
    taken = dt.datetime(2026, 3, 2, 7, 30)  # device-local (China) time, half an hour before receipt
    payload = encode(BloodPressureMeasurement(systolic=128.0, diastolic=82.0, mean=97.0, timestamp=taken))
    by_kind = {s.kind: s for s in samples(0x2A35, payload)}
    assert set(by_kind) == {"systolic_bp", "diastolic_bp", "mean_bp"}
    assert by_kind["systolic_bp"].time == dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC)
    assert by_kind["systolic_bp"].value == 128.0


def test_untrustworthy_device_times_give_way_to_the_receive_time() -> None:
    def reading(measured: dt.datetime | None, flags: tuple[str, ...] = ()) -> Reading:
        return Reading("body_temperature", 37.0, "Cel", measured_at=measured, flags=flags)

    assert sample_time(reading(None), RECEIVED, POLICY) == RECEIVED
    assert sample_time(reading(dt.datetime(2026, 3, 2, 8, 1)), RECEIVED, POLICY) == \
        dt.datetime(2026, 3, 2, 0, 1, tzinfo=dt.UTC)  # 30 s ahead: within the allowed skew
    assert sample_time(reading(dt.datetime(2026, 3, 2, 8, 10)), RECEIVED, POLICY) == RECEIVED  # 10 min ahead
    assert sample_time(reading(dt.datetime(2000, 1, 1)), RECEIVED, POLICY) == RECEIVED  # a reset clock
    assert sample_time(reading(dt.datetime(2026, 3, 2, 7, 0), ("device_clock_not_set",)), RECEIVED, POLICY) \
        == RECEIVED


def test_a_thermometer_reading_in_fahrenheit_is_stored_in_celsius() -> None:
    payload = encode(TemperatureMeasurement(value=101.3, unit="F", timestamp=dt.datetime(2026, 3, 2, 8, 0, 10)))
    (sample,) = samples(0x2A1C, payload)
    assert sample.kind == "body_temperature"
    assert abs(sample.value - 38.5) < 0.01
    assert sample.time == dt.datetime(2026, 3, 2, 0, 0, 10, tzinfo=dt.UTC)


def test_a_spot_check_with_an_unset_clock_uses_the_receive_time() -> None:
    payload = encode(PlxSpotCheck(spo2=97.0, pulse_rate=72.0, timestamp=dt.datetime(2000, 1, 1, 0, 5),
                                  clock_not_set=True))
    assert {s.time for s in samples(0x2A5E, payload)} == {RECEIVED}
