"""The collector over the simulated radio: samples of the right patient with the device's quality, device status
events, reconnects that lose nothing, malformed bytes that harm nobody, and a registry that drives it all."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from devices.ble import RetryPolicy, SimulatedPeripheral, SimulatedRadio, SimulatedTransport
from devices.gatt import decode
from devices.sim.artefacts import ArtefactProfile, EpisodeRate
from devices.sim.devices import Emission
from devices.sim.sensors import HEART_RATE_MONITOR, PULSE_OXIMETER
from edge.collector import Collector, CollectorConfig, DeviceRegistry, SimulatedWard, TimePolicy, WardOptions, convert
from edge.metrics import Registry
from proto.messages import DeviceStatus
from proto.quality import Quality
from proto.vitals import VitalSample

CST = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 3, 2, 8, tzinfo=CST)
STRAP, OTHER = "C4:7A:00:00:00:01", "C4:7A:00:00:00:02"


def strap(address: str, battery: int = 80) -> SimulatedPeripheral:
    peripheral = SimulatedPeripheral(address, "HRM-2", services=(0x180D, 0x180F),
                                     characteristics={0x2A37: ("notify",), 0x2A19: ("read", "notify")})
    peripheral.set_value(0x2A19, bytes([battery]))
    return peripheral


class Rig:
    """A collector on a simulated radio with real-time clock, recording what it hands on."""

    def __init__(self, tmp_path: Path, **config: object) -> None:
        self.radio = SimulatedRadio(connect_latency=0.001, gatt_latency=0.001)
        self.transport = SimulatedTransport(self.radio, policy=RetryPolicy(max_attempts=None, jitter=0.0))
        self.registry = DeviceRegistry(tmp_path / "devices.sqlite3")
        self.samples: list[VitalSample] = []
        self.statuses: list[DeviceStatus] = []
        self.metrics = Registry()
        self.collector = Collector(self.transport, self.registry, on_sample=self.samples.append,
                                   on_status=lambda status, _at: self.statuses.append(status),
                                   clock=self.transport.radio.clock, metrics=self.metrics,
                                   config=CollectorConfig(**config))  # type: ignore[arg-type]
        self.registry.add_listener(self.collector.request_sync)

    def states(self, device_id: str) -> list[str]:
        return [s.state for s in self.statuses if s.device_id == device_id]

    async def close(self) -> None:
        await self.collector.stop()
        await self.transport.close()
        self.registry.close()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())  # type: ignore[arg-type]


def test_notifications_become_samples_of_the_wearer_and_status_follows_the_link(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        device = rig.transport.add_peripheral(strap(STRAP, battery=80))
        rig.registry.register(STRAP, "heart_rate_monitor", device_id="hrm-01", patient_id="pt-0001")
        await rig.collector.start()
        await until(lambda: rig.states("hrm-01") == ["connected"])
        assert rig.statuses[0] == DeviceStatus(
            device_id="hrm-01", state="connected", patient_id="pt-0001", device_type="heart_rate_monitor",
            battery_pct=80.0, rssi_dbm=-60, last_seen=rig.statuses[0].last_seen)

        device.notify(0x2A37, bytes.fromhex("0655"))  # 85 bpm, contact detected
        device.notify(0x2A37, bytes.fromhex("0400"))  # contact lost: 0 bpm
        await until(lambda: len(rig.samples) == 2)
        assert [(s.patient_id, s.device_id, s.kind, s.value, s.quality) for s in rig.samples] == [
            ("pt-0001", "hrm-01", "heart_rate", 85.0, Quality.NONE),
            ("pt-0001", "hrm-01", "heart_rate", 0.0, Quality.SENSOR_CONTACT_LOST | Quality.IMPLAUSIBLE)]

        device.notify(0x2A19, bytes([79]))
        await until(lambda: len(rig.statuses) == 2)
        assert rig.statuses[-1].battery_pct == 79.0 and rig.statuses[-1].state == "connected"

        device.go_out_of_range()
        await until(lambda: rig.states("hrm-01")[-1:] == ["disconnected"])
        device.come_back()
        await until(lambda: rig.states("hrm-01")[-1:] == ["connected"])
        assert rig.collector.connected_count == 1
        await rig.close()
        assert rig.states("hrm-01") == ["connected", "connected", "disconnected", "connected", "disconnected"]
        assert rig.collector.connected_count == 0

    run(scenario)


def test_malformed_bytes_are_counted_and_logged_and_harm_no_other_device(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path, decode_log_interval_s=3600.0)
        broken, fine = rig.transport.add_peripheral(strap(STRAP)), rig.transport.add_peripheral(strap(OTHER))
        rig.registry.register(STRAP, "heart_rate_monitor", patient_id="pt-0001")
        rig.registry.register(OTHER, "heart_rate_monitor", patient_id="pt-0002")
        await rig.collector.start()
        await until(lambda: rig.collector.connected_count == 2)
        for _ in range(3):
            broken.notify(0x2A37, b"\x01")  # UINT16 format flag, value missing
        fine.notify(0x2A37, bytes.fromhex("0648"))
        broken.notify(0x2A37, bytes.fromhex("0650"))  # the broken one recovers
        await until(lambda: len(rig.samples) == 2)
        assert sorted((s.patient_id, s.value) for s in rig.samples) == [("pt-0001", 80.0), ("pt-0002", 72.0)]
        errors = rig.metrics.counter("telemed_collector_decode_errors_total", "", ("device_type",))
        assert errors.value(device_type="heart_rate_monitor") == 3
        logged = [r for r in caplog.records if r.getMessage() == "collector.decode_failed"]
        assert len(logged) == 1  # rate-limited per device
        assert logged[0].__dict__["device_id"] == STRAP and logged[0].__dict__["payload_hex"] == "01"
        assert [v.decode_errors for v in rig.collector.devices() if v.address == STRAP] == [3]
        await rig.close()

    caplog.set_level(logging.WARNING, logger="edge.collector.collector")
    run(scenario)


def test_the_registry_drives_connections_and_reassignments(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path)
        device = rig.transport.add_peripheral(strap(STRAP))
        await rig.collector.start()
        assert rig.collector.devices() == []

        # The cloud's assign_device command runs on the uplink's worker thread.
        await asyncio.to_thread(rig.registry.assign, "hrm-01", "pt-0001", address=STRAP,
                                device_type="heart_rate_monitor")
        await until(lambda: rig.states("hrm-01") == ["connected"])

        rig.registry.assign("hrm-01", "pt-0002")  # moved to another bed
        await until(lambda: len(rig.statuses) == 2)
        assert rig.statuses[-1].patient_id == "pt-0002"
        device.notify(0x2A37, bytes.fromhex("0655"))
        await until(lambda: len(rig.samples) == 1)
        assert rig.samples[0].patient_id == "pt-0002"

        rig.registry.unassign("hrm-01")
        await until(lambda: rig.states("hrm-01")[-1:] == ["disconnected"])
        assert rig.transport.link(STRAP) is None and not device.is_connected
        device.notify(0x2A37, bytes.fromhex("0655"))
        await asyncio.sleep(0.05)
        assert len(rig.samples) == 1
        await rig.close()

    run(scenario)


def test_a_link_that_gives_up_is_reported_lost_and_tried_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(tmp_path, lost_retry_s=0.05)
        # A strap without the Battery Service: enabling Battery Level notifications cannot succeed.
        rig.transport.add_peripheral(SimulatedPeripheral(STRAP, "HRM", (0x180D,), {0x2A37: ("notify",)}))
        rig.registry.register(STRAP, "heart_rate_monitor", patient_id="pt-0001")
        await rig.collector.start()
        await until(lambda: rig.states(STRAP).count("lost") >= 2)
        assert [v.state for v in rig.collector.devices()] == ["lost"]
        await rig.close()

    run(scenario)


def ward_options(**overrides: object) -> WardOptions:
    quiet = EpisodeRate(0.0, 1.0)
    artefacts = ArtefactProfile(motion=EpisodeRate(240.0, 10.0), low_perfusion=quiet, sensor_off=quiet, dropout=quiet,
                                battery_start=(90.0, 90.0), battery_drain=False)
    options: dict[str, object] = {"patients": 2, "seed": 5, "speed": "max", "scenario": "stable",
                                  "devices": (HEART_RATE_MONITOR, PULSE_OXIMETER), "artefacts": artefacts}
    return WardOptions(**(options | overrides))  # type: ignore[arg-type]


def test_a_ward_reaches_the_batcher_whole_even_when_a_device_walks_away(tmp_path: Path) -> None:
    """Every reading of every notification delivered, of the wearer; a device out of range reconnects."""

    async def scenario() -> None:
        sim = SimulatedWard(ward_options(), patient_prefix="e1", start=START)
        ward = sim.ward
        registry = DeviceRegistry(tmp_path / "devices.sqlite3")
        registry.seed(sim.records())
        samples: list[VitalSample] = []
        statuses: list[DeviceStatus] = []
        policy = TimePolicy(device_tz=CST)
        collector = Collector(sim.transport, registry, on_sample=samples.append,
                              on_status=lambda s, _at: statuses.append(s), clock=sim.clock,
                              config=CollectorConfig(time_policy=policy))
        expected: list[VitalSample] = []
        wearer = {d.address: d.patient_id for d in ward.devices}

        def on_air(emission: Emission) -> None:
            if ward.peripheral(emission.address).is_subscribed(emission.characteristic):
                expected.extend(convert(decode(emission.characteristic, emission.payload),
                                        patient_id=wearer[emission.address], device_id=emission.address,
                                        received=dt.datetime.fromtimestamp(sim.clock.now(), dt.UTC),
                                        simulated=True, policy=policy).samples)

        ward.tap(on_air)
        await collector.start()
        await ward.run(60)
        walker = next(d.address for d in ward.devices if d.device_type == HEART_RATE_MONITOR)
        ward.peripheral(walker).go_out_of_range()
        await ward.run(20)
        gap = len([s for s in samples if s.device_id == walker])
        ward.peripheral(walker).come_back()
        await ward.run(40)
        await collector.stop()
        await sim.aclose()
        registry.close()

        assert len(expected) > 300
        assert collections.Counter(samples) == collections.Counter(expected)
        assert len([s for s in samples if s.device_id == walker]) > gap  # it came back
        assert [s.state for s in statuses if s.device_id == walker] == [
            "connected", "disconnected", "connected", "disconnected"]
        assert all(s.quality & Quality.SIMULATED for s in samples)
        flagged = [s for s in samples if s.quality & (Quality.MOTION | Quality.SIGNAL_QUESTIONABLE)]
        assert flagged, "the ward's motion artefacts show in the samples' quality"

    run(scenario)
