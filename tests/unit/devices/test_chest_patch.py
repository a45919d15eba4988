"""The chest patch's vendor Respiratory Rate characteristic: byte layout, decoding through devices.gatt like the
SIG profiles, status flags mapped to Quality, malformed payloads rejected with offsets."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.ble import uuids as ble_uuids
from devices.gatt import (
    CODECS,
    RESPIRATORY_RATE_UUID,
    VENDOR_CODECS,
    GattDecodeError,
    GattEncodeError,
    Reading,
    RespiratoryRateMeasurement,
    decode,
    encode,
    parse,
)
from devices.gatt.profiles import chest_patch
from proto.quality import ARTEFACT, Quality

WHEN = datetime(2026, 3, 2, 8, 0, 1)


def test_the_profile_uses_the_vendor_uuids_the_transport_scans_for() -> None:
    assert chest_patch.SERVICE_UUID == ble_uuids.CHEST_PATCH_SERVICE
    assert RESPIRATORY_RATE_UUID == ble_uuids.CHEST_PATCH_RESPIRATORY_RATE
    assert VENDOR_CODECS[RESPIRATORY_RATE_UUID] is chest_patch.CODEC
    assert chest_patch.CODEC not in CODECS.values()  # the SIG table stays the SIG table


def test_minimal_notification_is_flags_and_an_sfloat() -> None:
    payload = encode(RespiratoryRateMeasurement(16.0))
    assert payload == bytes.fromhex("00" "1000")
    assert decode(RESPIRATORY_RATE_UUID, payload) == [Reading("respiratory_rate", 16.0, "/min")]


def test_timestamp_and_status_follow_the_rate() -> None:
    m = RespiratoryRateMeasurement(16.0, WHEN, ("body_movement",))
    payload = encode(m)
    # flags 03 | rate 0x0010 | 2026-03-02 08:00:01 | status 0x02 (body movement)
    assert payload == bytes.fromhex("03" "1000" "ea07030208" "0001" "02")
    assert parse(RESPIRATORY_RATE_UUID, payload) == m
    assert decode(RESPIRATORY_RATE_UUID, payload) == [
        Reading("respiratory_rate", 16.0, "/min", WHEN, ("body_movement",), Quality.MOTION),
    ]


def test_the_uuid_is_matched_whatever_its_case() -> None:
    payload = encode(RespiratoryRateMeasurement(12.5))
    assert decode(RESPIRATORY_RATE_UUID.upper(), payload) == decode(f" {RESPIRATORY_RATE_UUID} ", payload)
    assert decode(RESPIRATORY_RATE_UUID, payload)[0].value == 12.5


def test_electrodes_off_send_nan_and_the_contact_status_but_no_reading() -> None:
    payload = encode(RespiratoryRateMeasurement(None, WHEN, ("sensor_contact_not_detected",)))
    assert payload[1:3] == bytes.fromhex("ff07")  # SFLOAT NaN (IEEE 11073-20601 Annex F.8)
    assert decode(RESPIRATORY_RATE_UUID, payload) == []
    assert parse(RESPIRATORY_RATE_UUID, payload) == RespiratoryRateMeasurement(
        None, WHEN, ("sensor_contact_not_detected",))


@pytest.mark.parametrize(("status", "quality"), [
    ("sensor_contact_not_detected", Quality.SENSOR_CONTACT_LOST),
    ("body_movement", Quality.MOTION),
    ("poor_signal", Quality.SIGNAL_QUESTIONABLE),
    ("early_estimate", Quality.EARLY_ESTIMATE),
    ("device_battery_low", Quality.NONE),
])
def test_each_status_bit_maps_to_its_quality(status: str, quality: Quality) -> None:
    [reading] = decode(RESPIRATORY_RATE_UUID, encode(RespiratoryRateMeasurement(20.0, status=(status,))))
    assert reading.flags == (status,)
    assert reading.quality == quality
    assert bool(reading.quality & ARTEFACT) == (status in ("sensor_contact_not_detected", "body_movement",
                                                           "poor_signal"))


def test_reserved_flag_and_status_bits_are_ignored() -> None:
    assert decode(RESPIRATORY_RATE_UUID, bytes.fromhex("ff" "1000" "ea07030208" "0001" "e0")) == [
        Reading("respiratory_rate", 16.0, "/min", WHEN),
    ]


@pytest.mark.parametrize(("payload", "offset", "reason"), [
    ("", 0, "empty payload"),
    ("00" "10", 1, "truncated SFLOAT"),
    ("01" "1000" "ea0703", 3, "truncated DATE_TIME"),
    ("02" "1000", 3, "truncated UINT8"),
    ("00" "1000" "00", 3, "trailing byte"),
    ("01" "1000" "ea070d0208" "0001", 3, "invalid date-time"),
])
def test_malformed_payloads_fail_at_the_offending_byte(payload: str, offset: int, reason: str) -> None:
    with pytest.raises(GattDecodeError) as raised:
        decode(RESPIRATORY_RATE_UUID, bytes.fromhex(payload))
    assert raised.value.offset == offset
    assert reason in raised.value.reason
    assert raised.value.reason.startswith("Chest Patch Respiratory Rate")


def test_rates_beyond_sfloat_and_unknown_statuses_do_not_encode() -> None:
    with pytest.raises(GattEncodeError, match="Chest Patch"):
        encode(RespiratoryRateMeasurement(1e12))
    with pytest.raises(GattEncodeError, match="unknown status"):
        encode(RespiratoryRateMeasurement(16.0, status=("sneezing",)))


@given(
    rate=st.one_of(st.none(), st.integers(0, 2000).map(lambda tenths: tenths / 10)),
    when=st.one_of(st.none(), st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31)).map(
        lambda d: d.replace(microsecond=0))),
    status=st.one_of(st.none(), st.sets(st.sampled_from([e.name for e in chest_patch.STATUS.entries]))),
)
def test_every_measurement_round_trips(rate: float | None, when: datetime | None, status: set[str] | None) -> None:
    ordered = None if status is None else tuple(e.name for e in chest_patch.STATUS.entries if e.name in status)
    m = RespiratoryRateMeasurement(rate, when, ordered)
    payload = encode(m)
    assert parse(RESPIRATORY_RATE_UUID, payload) == m
    readings = decode(RESPIRATORY_RATE_UUID, payload)
    assert [r.value for r in readings] == ([] if rate is None else [rate])
