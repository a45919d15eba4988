"""Simulated devices on the air: every notification decodes with devices.gatt to what the model's devices
measured, artefacts show in the bytes, batteries are notified and power devices off, glucose records are
pulled over the RACP, scales weigh in the morning, and decoded vitals drive NEWS2 as the scenario says."""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from devices.ble import uuids
from devices.gatt import (
    GlucoseMeasurement,
    PlxContinuous,
    RacpNumberOfRecords,
    RacpOpCode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    Reading,
    RespiratoryRateMeasurement,
    decode,
    encode,
    parse,
)
from devices.sim import (
    BLOOD_PRESSURE_MONITOR,
    CHEST_PATCH,
    GLUCOSE_METER,
    HEART_RATE_MONITOR,
    PULSE_OXIMETER,
    SCENARIOS,
    SENSORS,
    ArtefactProfile,
    EpisodeRate,
    PatientSpec,
)
from devices.sim.devices import CUFF_USER, WARD_DEVICES, WEIGH_AT, WEIGHT_SCALE, DeviceError, Emission, SimDevice
from devices.sim.schedule import device_phase
from devices.sim.ward import CHINA, Ward
from proto.news2 import score
from proto.quality import ARTEFACT, Quality

pytestmark = pytest.mark.anyio

RR_RESOLUTION_S = 1 / 1024  # HRS 1.0 RR-Interval unit


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Collector:
    """Subscribes to every device of a ward and keeps what arrives, decoded, per device."""

    ward: Ward
    received: dict[str, list[tuple[str, bytes]]] = field(default_factory=lambda: defaultdict(list))

    async def connect(self, devices: tuple[SimDevice, ...] | None = None) -> None:
        transport = self.ward.transport

        def handler_for(address: str) -> Any:
            return lambda uuid, payload, at: self.received[address].append((uuid, payload))

        await self.ward.drive(asyncio.gather(*(
            transport.connect(d.address, subscriptions={u: handler_for(d.address) for u in d.subscriptions})
            for d in (devices or self.ward.devices)
        )))

    def readings(self, address: str, characteristic: str) -> list[Reading]:
        return [r for uuid, payload in self.received[address] if uuid == characteristic for r in decode(uuid, payload)]


@dataclass(frozen=True)
class Seen:
    """An emission and what the model's device measured in that step."""

    emission: Emission
    device: SimDevice
    values: dict[str, float]
    artefacts: frozenset[str]
    battery: float
    rr: tuple[float, ...]


def _observe(ward: Ward, seen: list[Seen]) -> None:
    def tap(emission: Emission) -> None:
        device = ward.device(emission.address)
        if device.device_type == WEIGHT_SCALE:
            seen.append(Seen(emission, device, {}, frozenset(), math.nan, ()))
            return
        b = ward.cohort.batch(device.device_type)
        row = b.patients.tolist().index(ward.cohort.index_of(device.patient_id))
        rr = ward.cohort.rr_intervals(device.patient_id) if device.device_type == HEART_RATE_MONITOR else ()
        seen.append(Seen(
            emission, device, {k: float(b.values[row, j]) for j, k in enumerate(b.kinds)},
            frozenset(a for a, mask in b.artefacts.items() if mask[row]), float(b.battery[row]), rr,
        ))

    ward.tap(tap)


def _start(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=CHINA)


def _cuff_in(seconds: float) -> list[str]:
    """Patient ids whose cuff's first scheduled measurement falls within `seconds` of the start."""
    schedule = SENSORS[BLOOD_PRESSURE_MONITOR].schedule
    return [pid for pid in (f"bed-{i}" for i in range(200)) if device_phase(pid, BLOOD_PRESSURE_MONITOR, schedule)
            < seconds]


async def test_every_notification_decodes_to_what_the_model_measured() -> None:
    patients = [PatientSpec(pid, name, WARD_DEVICES)
                for pid, name in zip(_cuff_in(600)[:3], ("stable", "sepsis", "af_rvr"), strict=True)]
    ward = Ward(patients, seed=5, speed="max", start=_start(6, 24))
    collector = Collector(ward)
    await collector.connect()
    seen: list[Seen] = []
    _observe(ward, seen)
    scheduled: dict[tuple[str, datetime], dict[str, float]] = {}
    for _ in range(16 * 60):
        await ward.step()
        for device_type in (BLOOD_PRESSURE_MONITOR, GLUCOSE_METER):
            b = ward.cohort.batch(device_type)
            local = ward.cohort.time.replace(tzinfo=None)
            for row in b.due.nonzero()[0].tolist():
                device = next(d for d in ward.devices if d.device_type == device_type
                              and ward.cohort.index_of(d.patient_id) == int(b.patients[row]))
                scheduled[(device.address, local)] = {k: float(b.values[row, j]) for j, k in enumerate(b.kinds)}
    await ward.aclose()

    checked: dict[str, int] = defaultdict(int)
    for s in seen:
        readings = decode(s.emission.characteristic, s.emission.payload)
        checked[s.emission.characteristic] += 1
        _check(s, readings, scheduled)
    assert checked.keys() >= {
        uuids.HEART_RATE_MEASUREMENT, uuids.PLX_CONTINUOUS_MEASUREMENT, uuids.PLX_SPOT_CHECK_MEASUREMENT,
        uuids.INTERMEDIATE_CUFF_PRESSURE, uuids.BLOOD_PRESSURE_MEASUREMENT, uuids.TEMPERATURE_MEASUREMENT,
        uuids.GLUCOSE_MEASUREMENT, uuids.RECORD_ACCESS_CONTROL_POINT, uuids.CHEST_PATCH_RESPIRATORY_RATE,
        uuids.BATTERY_LEVEL,
    }
    assert checked[uuids.HEART_RATE_MEASUREMENT] >= 3 * 15 * 60  # 1 Hz, bar a few radio dropouts
    # Everything sent once the collector was subscribed reached it, byte for byte, in order.
    sent: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for s in seen:
        sent[s.emission.address].append((s.emission.characteristic, s.emission.payload))
    for address, payloads in sent.items():
        received = collector.received[address]
        assert received[len(received) - len(payloads):] == payloads


def _check(s: Seen, readings: list[Reading], scheduled: dict[tuple[str, datetime], dict[str, float]]) -> None:
    char, v = s.emission.characteristic, s.values
    by_kind = {r.kind: r for r in readings}
    if char == uuids.BATTERY_LEVEL:
        assert readings == [Reading("battery_level", float(math.ceil(s.battery)), "%")]
    elif char == uuids.HEART_RATE_MEASUREMENT:
        if math.isnan(v["heart_rate"]):
            assert readings[0].value == 0 and readings[0].quality == Quality.SENSOR_CONTACT_LOST
        else:
            assert readings[0] == Reading("heart_rate", v["heart_rate"], "/min")
            rr = [r.value for r in readings[1:]]
            assert [r.kind for r in readings[1:]] == ["rr_interval"] * len(rr)
            assert rr == pytest.approx(list(s.rr[-9:]), abs=RR_RESOLUTION_S / 2)
    elif char == uuids.PLX_CONTINUOUS_MEASUREMENT:
        expected = [(k, v[k]) for k in ("spo2", "heart_rate") if not math.isnan(v[k])]
        assert [(r.kind, r.value) for r in readings] == expected
    elif char == uuids.PLX_SPOT_CHECK_MEASUREMENT:
        assert [(r.kind, r.value) for r in readings] == [("spo2", v["spo2"]), ("heart_rate", v["heart_rate"])]
        assert not s.artefacts
    elif char == uuids.INTERMEDIATE_CUFF_PRESSURE:
        [cuff] = readings
        assert cuff.kind == "cuff_pressure" and cuff.intermediate and cuff.user_id == CUFF_USER
        assert 0 <= cuff.value <= 300
    elif char == uuids.BLOOD_PRESSURE_MEASUREMENT:
        assert readings[0].measured_at is not None
        due = scheduled[(s.device.address, readings[0].measured_at)]
        assert {r.kind: r.value for r in readings} == {k: due[k] for k in ("systolic_bp", "diastolic_bp", "mean_bp",
                                                                              "heart_rate")}
        assert all(r.user_id == CUFF_USER for r in readings)
    elif char == uuids.TEMPERATURE_MEASUREMENT:
        assert [(r.kind, r.value, r.location) for r in readings] == [("body_temperature", v["body_temperature"],
                                                                      "armpit")]
    elif char == uuids.GLUCOSE_MEASUREMENT:
        [glucose] = readings
        assert glucose.measured_at is not None
        assert glucose.value == pytest.approx(scheduled[(s.device.address, glucose.measured_at)]["glucose"],
                                              abs=1e-9)
        assert glucose.source_unit == "mol/L" and glucose.location == "finger"
    elif char == uuids.RECORD_ACCESS_CONTROL_POINT:
        assert parse(char, s.emission.payload) == RacpResponse(RacpOpCode.REPORT_STORED_RECORDS,
                                                               RacpResponseCode.SUCCESS)
    elif char == uuids.CHEST_PATCH_RESPIRATORY_RATE:
        expected_rr = [] if math.isnan(v["respiratory_rate"]) else [v["respiratory_rate"]]
        assert [r.value for r in readings] == expected_rr
    else:
        raise AssertionError(f"unexpected characteristic {char}")
    assert by_kind or char in (uuids.PLX_CONTINUOUS_MEASUREMENT, uuids.RECORD_ACCESS_CONTROL_POINT,
                               uuids.CHEST_PATCH_RESPIRATORY_RATE, uuids.TEMPERATURE_MEASUREMENT)


NOISY = ArtefactProfile(
    motion=EpisodeRate(40.0, 20.0), low_perfusion=EpisodeRate(40.0, 30.0), sensor_off=EpisodeRate(30.0, 20.0),
    dropout=EpisodeRate(30.0, 10.0),
)


async def test_artefacts_show_in_the_bytes_as_the_right_status_and_quality() -> None:
    ward = Ward(3, scenario="stable", seed=8, speed="max", start=_start(10, 0), artefacts=NOISY,
                devices=(HEART_RATE_MONITOR, PULSE_OXIMETER, CHEST_PATCH))
    seen: list[Seen] = []
    _observe(ward, seen)
    silent: set[tuple[float, str]] = set()
    for _ in range(6 * 60):
        await ward.step()
        for device_type in (HEART_RATE_MONITOR, PULSE_OXIMETER, CHEST_PATCH):
            b = ward.cohort.batch(device_type)
            for row in (~b.delivered).nonzero()[0].tolist():
                pid = ward.cohort.patient_ids[int(b.patients[row])]
                silent.add((ward.elapsed_s, next(d.address for d in ward.devices
                                                 if d.patient_id == pid and d.device_type == device_type)))
    hits: dict[str, int] = defaultdict(int)
    for s in seen:
        char, payload = s.emission.characteristic, s.emission.payload
        assert (s.emission.elapsed_s, s.emission.address) not in silent  # dropout: nothing on the air
        if char == uuids.HEART_RATE_MEASUREMENT and "sensor_off" in s.artefacts:
            hits["strap off"] += 1
            assert decode(char, payload) == [Reading("heart_rate", 0.0, "/min", None, ("sensor_contact_not_detected",),
                                                     Quality.SENSOR_CONTACT_LOST)]
        elif char == uuids.PLX_CONTINUOUS_MEASUREMENT and s.artefacts:
            plx = parse(char, payload)
            assert isinstance(plx, PlxContinuous) and plx.device_status is not None
            readings = decode(char, payload)
            if "sensor_off" in s.artefacts:
                hits["probe off"] += 1
                assert "sensor_unconnected" in plx.device_status and readings == []
            if "low_perfusion" in s.artefacts and "sensor_off" not in s.artefacts:
                hits["low perfusion"] += 1
                assert all(r.quality & Quality.LOW_PERFUSION for r in readings)
            if "motion" in s.artefacts and "sensor_off" not in s.artefacts:
                hits["oximeter motion"] += 1
                assert all(r.quality & Quality.SIGNAL_QUESTIONABLE for r in readings)
            assert all(r.quality & ARTEFACT for r in readings)
        elif char == uuids.CHEST_PATCH_RESPIRATORY_RATE and s.artefacts:
            patch = parse(char, payload)
            assert isinstance(patch, RespiratoryRateMeasurement) and patch.status is not None
            if "sensor_off" in s.artefacts:
                hits["patch off"] += 1
                assert patch.rate is None and "sensor_contact_not_detected" in patch.status
            elif "motion" in s.artefacts:
                hits["patch motion"] += 1
                assert [r.quality for r in decode(char, payload)] == [Quality.MOTION]
        elif char != uuids.BATTERY_LEVEL:
            assert all(not r.quality & ARTEFACT for r in decode(char, payload))  # no artefact, no flag
    assert silent
    assert set(hits) == {"strap off", "probe off", "low perfusion", "oximeter motion", "patch off", "patch motion"}


def _battery_ward(charge: float, swap_s: float | None) -> Ward:
    """One oximeter whose battery starts at `charge` % and drains (1 % in ~22 min), in a ward without artefacts."""
    never = EpisodeRate(0.0, 1.0)
    profile = ArtefactProfile(motion=never, low_perfusion=never, sensor_off=never, dropout=never,
                              battery_start=(charge, charge), battery_swap_s=swap_s)
    return Ward(1, scenario="stable", seed=2, speed="max", start=_start(9, 0), artefacts=profile,
                devices=(PULSE_OXIMETER,))


async def test_battery_level_is_readable_and_notified_when_it_drops() -> None:
    ward = _battery_ward(2.02, None)
    [oximeter] = ward.devices
    collector = Collector(ward)
    await collector.connect()
    level = await ward.drive(ward.transport.read(oximeter.address, uuids.BATTERY_LEVEL))
    assert decode(uuids.BATTERY_LEVEL, level) == [Reading("battery_level", 3.0, "%")]  # 2.02 % shows as 3 %
    await ward.run(60)
    assert [r.value for r in collector.readings(oximeter.address, uuids.BATTERY_LEVEL)] == [2.0]
    await ward.aclose()


async def test_a_flat_device_goes_silent_and_off_air_until_its_battery_is_replaced() -> None:
    ward = _battery_ward(0.02, 60.0)
    [oximeter] = ward.devices
    collector = Collector(ward)
    await collector.connect()
    peripheral = ward.peripheral(oximeter.address)
    sent: list[Emission] = []
    ward.tap(sent.append)
    went_off = came_back = None
    while came_back is None and ward.elapsed_s < 600:
        await ward.step()
        if went_off is None and not peripheral.in_range:
            went_off = ward.elapsed_s
            assert not peripheral.is_connected  # powered off: its links dropped
        elif went_off is not None and peripheral.in_range:
            came_back = ward.elapsed_s
    assert went_off is not None and came_back is not None
    assert came_back - went_off == pytest.approx(60.0, abs=1.0)
    assert sent and all(not went_off <= e.elapsed_s < came_back for e in sent)  # nothing while flat
    link = ward.transport.links[oximeter.address]
    await ward.drive(link.wait_connected())  # the transport reconnects once the fresh battery is in
    level = await ward.drive(ward.transport.read(oximeter.address, uuids.BATTERY_LEVEL))
    assert decode(uuids.BATTERY_LEVEL, level) == [Reading("battery_level", 100.0, "%")]
    await ward.run(5)
    assert collector.readings(oximeter.address, uuids.PLX_CONTINUOUS_MEASUREMENT)[-1].kind == "heart_rate"
    await ward.aclose()


def _glucose_start(pid: str) -> datetime:
    """Five seconds before the patient's meter is first used (06:30 plus its round's phase)."""
    phase = device_phase(pid, GLUCOSE_METER, SENSORS[GLUCOSE_METER].schedule)
    return _start(6, 30) + timedelta(seconds=phase - 5)


async def test_glucose_records_stay_on_the_meter_until_pulled_over_the_racp() -> None:
    ward = Ward(1, scenario="stable", seed=4, speed="max", start=_glucose_start("P001"), devices=(GLUCOSE_METER,))
    [meter] = ward.devices
    await ward.run(30)  # the test is taken with no collector around: the record stays on the meter
    assert ward.peripheral(meter.address).notifications_sent == 0
    collector = Collector(ward)
    await collector.connect()
    await ward.step()
    got = collector.received[meter.address]
    assert [uuid for uuid, _ in got] == [uuids.GLUCOSE_MEASUREMENT, uuids.RECORD_ACCESS_CONTROL_POINT]
    record = parse(uuids.GLUCOSE_MEASUREMENT, got[0][1])
    assert isinstance(record, GlucoseMeasurement) and record.unit == "mol/L"
    assert record.base_time == _start(6, 30).replace(tzinfo=None) + timedelta(
        seconds=device_phase("P001", GLUCOSE_METER, SENSORS[GLUCOSE_METER].schedule))
    assert parse(uuids.RECORD_ACCESS_CONTROL_POINT, got[1][1]) == RacpResponse(
        RacpOpCode.REPORT_STORED_RECORDS, RacpResponseCode.SUCCESS)
    await ward.run(60)
    assert len(got) == 2  # pulled once

    async def write(request: bytes) -> list[tuple[str, bytes]]:
        before = len(got)
        ward.write(meter.address, uuids.RECORD_ACCESS_CONTROL_POINT, request)
        await asyncio.sleep(0)
        return got[before:]

    [(uuid, count)] = await write(encode(RacpRequest.count()))
    assert parse(uuid, count) == RacpNumberOfRecords(1)
    again = await write(encode(RacpRequest.report_all()))
    assert again == got[:2]
    assert await write(encode(RacpRequest.report_from(record.sequence_number + 1))) == [
        (uuids.RECORD_ACCESS_CONTROL_POINT, encode(RacpResponse(RacpOpCode.REPORT_STORED_RECORDS,
                                                                RacpResponseCode.NO_RECORDS_FOUND)))]
    delete = RacpRequest(RacpOpCode.DELETE_STORED_RECORDS, RacpOperator.ALL_RECORDS)
    assert [parse(u, p) for u, p in await write(encode(delete))] == [
        RacpResponse(RacpOpCode.DELETE_STORED_RECORDS, RacpResponseCode.SUCCESS)]
    assert [parse(u, p) for u, p in await write(encode(RacpRequest.count()))] == [RacpNumberOfRecords(0)]
    assert [parse(u, p) for u, p in await write(bytes([0x09, 0x00]))] == [
        RacpResponse(0x09, RacpResponseCode.OP_CODE_NOT_SUPPORTED)]
    assert [parse(u, p) for u, p in await write(bytes([0x01, 0x07]))] == [
        RacpResponse(0x01, RacpResponseCode.INVALID_OPERATOR)]
    assert [parse(u, p) for u, p in await write(bytes([0x01, 0x03, 0x02, 0x00, 0x00]))] == [
        RacpResponse(0x01, RacpResponseCode.OPERAND_NOT_SUPPORTED)]
    with pytest.raises(DeviceError):
        ward.write(meter.address, uuids.GLUCOSE_MEASUREMENT, b"\x01\x01")
    await ward.aclose()


async def test_scales_weigh_each_patient_once_in_the_morning() -> None:
    phase = device_phase("P001", WEIGHT_SCALE, WEIGH_AT)
    ward = Ward(2, scenario="stable", seed=9, speed="max", devices=(WEIGHT_SCALE,),
                start=_start(6, 0) + timedelta(seconds=phase - 3))
    collector = Collector(ward)
    await collector.connect()
    await ward.run(20 * 60)
    scale = ward.devices[0]
    [weight, bmi, height] = collector.readings(scale.address, uuids.WEIGHT_MEASUREMENT)
    assert (weight.kind, bmi.kind, height.kind) == ("body_weight", "bmi", "body_height")
    assert 30.0 <= weight.value <= 130.0 and 1.45 <= height.value <= 1.90
    assert bmi.value == pytest.approx(weight.value / height.value**2, abs=0.05)
    assert weight.measured_at == _start(6, 0).replace(tzinfo=None) + timedelta(seconds=phase)
    assert weight.user_id == 1
    assert len(collector.readings(ward.devices[1].address, uuids.WEIGHT_MEASUREMENT)) == 3  # the other bed, too
    await ward.aclose()


def _news2(latest: dict[str, float], *, on_oxygen: bool = False, consciousness: str = "A") -> tuple[int, str]:
    # By default decoded vitals only (alert, on air): the score the devices alone give.
    s = score(respiratory_rate=latest.get("respiratory_rate"), spo2=latest.get("spo2"), on_oxygen=on_oxygen,
              temperature=latest.get("body_temperature"), systolic_bp=latest.get("systolic_bp"),
              heart_rate=latest.get("heart_rate"), consciousness=consciousness)
    return s.total, s.risk


async def test_decoded_vitals_drive_news2_from_low_to_high_for_sepsis_and_keep_a_stable_patient_low() -> None:
    # Sepsis at 1/60 of its pace: the 10 h course in 10 minutes.
    ward = Ward([PatientSpec("sepsis", SCENARIOS["sepsis"].time_scaled(1 / 60), WARD_DEVICES),
                 PatientSpec("stable", "stable", WARD_DEVICES)], seed=11, speed="max", start=_start(8, 0))
    latest: dict[str, dict[str, float]] = {"sepsis": {}, "stable": {}}

    def on_value(patient: str, device_type: str) -> Any:
        def handler(uuid: str, payload: bytes, at: float) -> None:
            for r in decode(uuid, payload):
                if r.quality & ARTEFACT or r.intermediate or r.kind in ("battery_level", "rr_interval"):
                    continue
                if r.kind == "heart_rate" and device_type != HEART_RATE_MONITOR:
                    continue  # the chest strap's rate stands for the heart rate
                latest[patient][r.kind] = r.value
        return handler

    await ward.drive(asyncio.gather(*(
        ward.transport.connect(d.address, subscriptions={u: on_value(d.patient_id, d.device_type)
                                                         for u in d.subscriptions})
        for d in ward.devices)))
    scores: dict[str, list[tuple[int, str]]] = {"sepsis": [], "stable": []}
    charted: list[tuple[int, str]] = []  # with the nurse's ACVPU and oxygen (the model's truth) added
    for _ in range(16):
        await ward.run(60)
        for patient in scores:
            scores[patient].append(_news2(latest[patient]))
        state = ward.cohort.state("sepsis")
        charted.append(_news2(latest["sepsis"], on_oxygen=state.on_oxygen, consciousness=state.consciousness))
    await ward.aclose()
    early, late = scores["sepsis"][:1], scores["sepsis"][-5:]
    assert all(total <= 1 and risk == "low" for total, risk in early)
    assert statistics.median(total for total, _ in late) >= 5  # the devices alone: medium or worse
    assert all(risk != "low" for _, risk in late)
    assert all(risk == "high" for _, risk in charted[-5:])
    assert all(total <= 4 and risk == "low" for total, risk in scores["stable"])
