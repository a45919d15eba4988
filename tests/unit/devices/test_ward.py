"""The ward runner: device identities for the edge registry, the simulated clock the radio runs on, pacing,
determinism with a seed, and the telemed-sim command line."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest

from devices import cli
from devices.ble import uuids
from devices.ble.uuids import uuid16
from devices.gatt import decode
from devices.sim import (
    BLOOD_PRESSURE_MONITOR,
    CHEST_PATCH,
    DEFAULT_DEVICES,
    HEART_RATE_MONITOR,
    PULSE_OXIMETER,
    SCENARIOS,
    SENSORS,
    PatientSpec,
)
from devices.sim.devices import (
    DEVICE_TYPES,
    PROFILES,
    WARD_DEVICES,
    WEIGHT_SCALE,
    DeviceError,
    Emission,
    describe,
    device_address,
)
from devices.sim.schedule import device_phase
from devices.sim.ward import CHINA, Ward, WardClock, WardError

pytestmark = pytest.mark.anyio

START = datetime(2026, 3, 2, 8, 0, tzinfo=CHINA)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---- identities --------------------------------------------------------------------------------------


def test_addresses_are_random_static_and_stable_per_patient_and_device_type() -> None:
    addresses = {device_address(f"P{i:03d}", t) for i in range(200) for t in DEVICE_TYPES}
    assert len(addresses) == 200 * len(DEVICE_TYPES)
    for address in addresses:
        raw = bytes.fromhex(address.replace(":", ""))
        assert raw[0] >> 6 == 0b11  # random static (Core v5.4, Vol 6, Part B, 1.3.2.1)
        assert raw != b"\xff" * 6
    assert device_address("P001", PULSE_OXIMETER) == device_address("P001", PULSE_OXIMETER)
    assert device_address("P001", PULSE_OXIMETER) != device_address("P002", PULSE_OXIMETER)


def test_each_device_type_advertises_its_sig_service_and_battery_and_a_model_name() -> None:
    for device_type in DEVICE_TYPES:
        device = describe("P007", device_type)
        profile = PROFILES[device_type]
        assert device.name == f"{profile.model} {device.address[-5:].replace(':', '')}"
        assert device.services == (profile.service, uuids.BATTERY_SERVICE)
        assert device.subscriptions[-1] == uuids.BATTERY_LEVEL
        sensor = SENSORS.get(device_type)
        if sensor is not None and sensor.gatt_service is not None:
            assert profile.service == uuid16(sensor.gatt_service)
    assert describe("P007", CHEST_PATCH).services[0] == uuids.CHEST_PATCH_SERVICE
    assert describe("P007", WEIGHT_SCALE).services[0] == uuids.WEIGHT_SCALE_SERVICE


def test_the_ward_lists_every_device_with_its_patient_for_the_edge_registry() -> None:
    ward = Ward(3, seed=1, speed="max", start=START, devices=(*WARD_DEVICES, WEIGHT_SCALE))
    assert [d.patient_id for d in ward.devices] == [p for p in ("P001", "P002", "P003") for _ in range(7)]
    assert [d.device_type for d in ward.devices[:7]] == [*WARD_DEVICES, WEIGHT_SCALE]
    assert {p.address for p in ward.radio.peripherals} == {d.address for d in ward.devices}
    for device in ward.devices:
        assert ward.device(device.address.lower()) == device
        assert ward.peripheral(device.address).name == device.name
    assert sorted(s.name for s in ward.cohort.scenarios).count("sepsis") == 1  # "mix": one deteriorating


def test_a_ward_is_built_from_explicit_patients_and_can_compress_their_courses() -> None:
    ward = Ward([PatientSpec("bed-1", "sepsis", (HEART_RATE_MONITOR,)), PatientSpec("bed-2", SCENARIOS["fever"])],
                speed="max", start=START, time_scale=1 / 12)
    assert ward.cohort.patient_ids == ("bed-1", "bed-2")
    assert ward.cohort.scenarios[0].course_s == pytest.approx(SCENARIOS["sepsis"].course_s / 12)
    assert [d.device_type for d in ward.devices] == [HEART_RATE_MONITOR, *DEFAULT_DEVICES]


@pytest.mark.parametrize("kwargs", [
    {"speed": 0}, {"speed": -1.0}, {"speed": "fast"}, {"speed": float("inf")}, {"speed": True},
    {"start": datetime(2026, 3, 2, 8, 0)}, {"time_scale": 0.0},
])
def test_impossible_wards_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(WardError):
        Ward(2, **kwargs)  # type: ignore[arg-type]


def test_unknown_addresses_and_read_only_characteristics_refuse_writes() -> None:
    ward = Ward(1, speed="max", start=START, devices=(HEART_RATE_MONITOR,))
    with pytest.raises(WardError):
        ward.write("C0:00:00:00:00:01", uuids.RECORD_ACCESS_CONTROL_POINT, b"\x01\x01")
    with pytest.raises(DeviceError):
        ward.write(ward.devices[0].address, uuids.HEART_RATE_MEASUREMENT, b"\x00")


# ---- clock, pacing, stats ---------------------------------------------------------------------------------


async def test_the_ward_clock_wakes_sleepers_in_order_only_as_time_moves() -> None:
    clock = WardClock(1000.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 0.7), ("a", 0.05), ("b", 0.3), ("late", 5.0))]
    cancelled = asyncio.create_task(sleeper("cancelled", 0.2))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0.01)
    assert woke == []  # real time passing does not move simulated time
    await clock.advance_to(1001.0)
    assert woke == [("a", 1000.05), ("b", 1000.3), ("c", 1000.7)]
    assert clock.now() == 1001.0
    await clock.advance_to(1010.0)
    assert woke[-1] == ("late", 1005.0)
    await asyncio.gather(*tasks)
    await clock.sleep(0)  # a zero sleep does not wait for the ward


async def test_links_come_up_in_simulated_time_and_receive_times_are_simulated_times() -> None:
    ward = Ward(2, seed=3, speed="max", start=START, devices=(HEART_RATE_MONITOR,))
    stamps: list[float] = []
    link = await ward.drive(ward.transport.connect(
        ward.devices[0].address, subscriptions={uuids.HEART_RATE_MEASUREMENT: lambda u, p, at: stamps.append(at)}))
    assert link.is_connected
    assert 0 < ward.elapsed_s <= 3  # connection latency and a GATT round trip: well under 3 s
    await ward.run(5)
    assert stamps[-5:] == [START.timestamp() + ward.elapsed_s - k for k in (4, 3, 2, 1, 0)]
    await ward.aclose()


async def test_speed_paces_simulated_time_against_the_wall_clock() -> None:
    ward = Ward(1, seed=1, speed=40.0, start=START, devices=(HEART_RATE_MONITOR,))
    began = time.monotonic()
    stats = await ward.run(4.0)
    wall = time.monotonic() - began
    assert wall >= 4.0 / 40.0 * 0.95
    assert stats.run_simulated_s == 4.0 and stats.simulated_s == 4.0
    assert stats.real_time_factor <= 40.0 * 1.05
    assert stats.run_notifications == ward.notifications == 4  # one strap, 1 Hz, nobody needed to listen


async def test_max_speed_runs_far_faster_than_real_time_and_counts_notifications() -> None:
    ward = Ward(5, seed=1, speed="max", start=START, devices=DEFAULT_DEVICES)
    stats = await ward.run(120.0)
    assert stats.real_time_factor > 50.0
    assert stats.run_notifications == ward.notifications >= 5 * 2 * 120 * 0.9  # strap + oximeter at 1 Hz
    assert stats.notifications_per_s > 0


# ---- determinism --------------------------------------------------------------------------------------------


async def _emissions(seed: int, seconds: int) -> list[Emission]:
    ward = Ward(4, seed=seed, speed="max", start=START, devices=(*WARD_DEVICES, WEIGHT_SCALE))
    out: list[Emission] = []
    ward.tap(out.append)
    await ward.run(seconds)
    return out


async def test_the_same_seed_and_start_give_the_same_bytes_and_another_seed_does_not() -> None:
    first, again, other = await _emissions(21, 180), await _emissions(21, 180), await _emissions(22, 180)
    assert len(first) > 4 * 3 * 170
    assert first == again
    assert [e.payload for e in first] != [e.payload for e in other]
    assert any(e.characteristic == uuids.INTERMEDIATE_CUFF_PRESSURE or e.characteristic == uuids.TEMPERATURE_MEASUREMENT
               for e in first)


async def test_a_cuff_inflates_then_deflates_before_its_result() -> None:
    schedule = SENSORS[BLOOD_PRESSURE_MONITOR].schedule
    patient = next(f"bed-{i}" for i in range(500) if device_phase(f"bed-{i}", BLOOD_PRESSURE_MONITOR, schedule) < 120)
    ward = Ward([PatientSpec(patient, "stable", (BLOOD_PRESSURE_MONITOR,))], seed=1, speed="max", start=START)
    seen: list[Emission] = []
    ward.tap(seen.append)
    [cuff] = ward.devices
    await ward.drive(ward.transport.connect(cuff.address, subscriptions={u: lambda *_: None
                                                                         for u in cuff.subscriptions}))
    await ward.run(240)
    pressures = [decode(e.characteristic, e.payload)[0].value for e in seen
                 if e.characteristic == uuids.INTERMEDIATE_CUFF_PRESSURE]
    results = [e for e in seen if e.characteristic == uuids.BLOOD_PRESSURE_MEASUREMENT]
    assert len(results) == 1
    systolic = decode(results[0].characteristic, results[0].payload)[0].value
    peak = pressures.index(max(pressures))
    assert pressures[:peak + 1] == sorted(pressures[:peak + 1])  # inflating
    assert pressures[peak:] == sorted(pressures[peak:], reverse=True)  # deflating
    assert max(pressures) > systolic > min(pressures[peak:])
    assert 20 <= len(pressures) <= 90  # an oscillometric cycle takes well under two minutes
    assert seen.index(results[0]) > max(i for i, e in enumerate(seen)
                                        if e.characteristic == uuids.INTERMEDIATE_CUFF_PRESSURE)
    await ward.aclose()


# ---- the command line ---------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devices.cli", *args], capture_output=True, text=True, timeout=120)


def test_telemed_sim_ward_runs_for_a_duration_and_exits_0() -> None:
    done = _cli("ward", "--patients", "3", "--scenario", "mix", "--speed", "max", "--seed", "4",
                "--duration", "90", "--start", "2026-03-02T06:00:00", "--table-every", "0")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "ward: 3 patients, 21 devices, seed 4, speed max, start 2026-03-02T06:00:00+08:00" in out
    assert "links 21/21" in out and "decode errors 0" in out
    rows = [line for line in out.splitlines() if line.startswith("P00")]
    assert [row.split()[0] for row in rows] == ["P001", "P002", "P003"]
    for row in rows:
        assert row.split()[2].isdigit()  # a decoded heart rate
        assert "H" in row and "O" in row


@pytest.mark.parametrize("args", [
    ["ward", "--speed", "fast"], ["ward", "--speed", "0"], ["ward", "--devices", "toaster"],
    ["ward", "--start", "yesterday"], ["ward", "--scenario", "flu"], [],
])
def test_telemed_sim_rejects_bad_arguments(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(args)
    assert exited.value.code == 2


def test_telemed_sim_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    assert "{ward,modality}" in capsys.readouterr().out


def test_the_start_option_takes_china_time_when_no_zone_is_given() -> None:
    assert cli.build_parser()[0].parse_args(["ward", "--start", "2026-03-02T08:00:00"]).start == START
    utc = cli.build_parser()[0].parse_args(["ward", "--start", "2026-03-02T00:00:00+00:00"]).start
    assert utc == START and utc.utcoffset() == timedelta(0)


def test_telemed_sim_hands_modality_to_the_modality_simulator() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = unused.getsockname()[1]
        # Arguments parsed (no SystemExit), the study generated, the send refused: the modality CLI's error exit.
        status = cli.main(["modality", "--host", "127.0.0.1", "--port", str(port), "--aet", "STORESCP",
                           "--slices", "1", "--rows", "16", "--columns", "16", "--timeout", "2", "--quiet"])
    assert status == 2
