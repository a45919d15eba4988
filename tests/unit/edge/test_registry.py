"""The device registry: persisted assignments, the cloud's assign/unassign commands, changes seen across processes."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.ble.uuids import BATTERY_LEVEL, HEART_RATE_MEASUREMENT
from edge.collector.commands import register_device_commands
from edge.collector.registry import DeviceRecord, DeviceRegistry, InvalidDeviceError, UnknownDeviceError
from edge.uplink.commands import CommandRegistry
from proto.messages import Command

OXIMETER = "C4:7A:00:11:22:33"
STRAP = "C4:7A:00:11:22:44"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[DeviceRegistry]:
    reg = DeviceRegistry(tmp_path / "devices.sqlite3")
    yield reg
    reg.close()


def command(name: str, **args: object) -> Command:
    return Command(command_id=uuid.uuid4(), name=name, args=dict(args))  # type: ignore[arg-type]


def test_an_assignment_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "devices.sqlite3"
    first = DeviceRegistry(path)
    first.register(OXIMETER.lower(), "pulse_oximeter")
    first.assign(OXIMETER, "pt-0001")
    first.close()

    again = DeviceRegistry(path)
    record = again.get(OXIMETER)
    again.close()
    assert record is not None
    assert (record.device_id, record.address, record.device_type, record.patient_id) == (
        OXIMETER, OXIMETER, "pulse_oximeter", "pt-0001")
    assert record.assigned_at is not None


def test_devices_default_to_their_address_as_id_and_to_their_types_characteristics(registry: DeviceRegistry) -> None:
    record = registry.register(STRAP, "heart_rate_monitor", patient_id="pt-0002")
    assert record.device_id == STRAP
    assert record.characteristics == (HEART_RATE_MEASUREMENT, BATTERY_LEVEL)
    assert [r.device_id for r in registry.assigned()] == [STRAP]


def test_the_cloud_assigns_and_unassigns_with_commands(registry: DeviceRegistry) -> None:
    commands = CommandRegistry()
    register_device_commands(commands, registry)
    registry.register(OXIMETER, "pulse_oximeter", device_id="plx-01")

    assert commands.dispatch(command("assign_device", device_id="plx-01", patient_id="pt-0001"))
    record = registry.get("plx-01")
    assert record is not None and record.patient_id == "pt-0001" and record.source == "cloud"

    assert commands.dispatch(command("unassign_device", device_id="plx-01"))
    after = registry.get("plx-01")
    assert after is not None and after.patient_id is None and after.assigned_at is None
    assert registry.assigned() == []


def test_the_cloud_may_introduce_a_device_by_address_and_type(registry: DeviceRegistry) -> None:
    commands = CommandRegistry()
    register_device_commands(commands, registry)
    assert commands.dispatch(command("assign_device", device_id="plx-07", patient_id="pt-0003",
                                     address=OXIMETER, device_type="pulse_oximeter"))
    by_address = registry.by_address(OXIMETER.lower())
    assert by_address is not None and by_address.device_id == "plx-07" and by_address.patient_id == "pt-0003"


def test_commands_with_bad_arguments_change_nothing(registry: DeviceRegistry) -> None:
    commands = CommandRegistry()
    register_device_commands(commands, registry)
    registry.register(OXIMETER, "pulse_oximeter", patient_id="pt-0001")
    assert not commands.dispatch(command("assign_device", device_id=OXIMETER))  # no patient
    assert not commands.dispatch(command("assign_device", device_id=OXIMETER, patient_id="张三"))  # not pseudonymous
    assert not commands.dispatch(command("assign_device", device_id="plx-99", patient_id="pt-0002"))  # unknown
    assert not commands.dispatch(command("unassign_device", device_id="plx-99"))
    assert [(r.device_id, r.patient_id) for r in registry.records()] == [(OXIMETER, "pt-0001")]


def test_invalid_devices_are_refused(registry: DeviceRegistry) -> None:
    with pytest.raises(InvalidDeviceError):
        registry.register("not-an-address", "pulse_oximeter")
    with pytest.raises(InvalidDeviceError):
        registry.register(OXIMETER, "toaster")
    with pytest.raises(UnknownDeviceError):
        registry.assign("plx-01", "pt-0001")  # neither known nor introduced with address and type
    registry.register(OXIMETER, "pulse_oximeter")
    with pytest.raises(InvalidDeviceError):
        registry.assign(OXIMETER, "pt-0001", device_type="thermometer")  # it is an oximeter
    with pytest.raises(InvalidDeviceError):
        registry.register(OXIMETER, "pulse_oximeter", device_id="other-id")  # ids do not change


def test_seeding_adds_new_devices_and_keeps_later_assignments(registry: DeviceRegistry) -> None:
    seeded = [DeviceRecord(device_id=OXIMETER, address=OXIMETER, device_type="pulse_oximeter", patient_id="P001",
                           simulated=True, source="simulation"),
              DeviceRecord(device_id=STRAP, address=STRAP, device_type="heart_rate_monitor", patient_id="P001",
                           simulated=True, source="simulation")]
    assert registry.seed(seeded) == 2
    registry.assign(OXIMETER, "P002", source="cloud")
    assert registry.seed(seeded) == 0
    assert {r.device_id: r.patient_id for r in registry.records()} == {OXIMETER: "P002", STRAP: "P001"}
    assert all(r.simulated for r in registry.records())


def test_listeners_hear_changes_and_refresh_notices_other_processes(tmp_path: Path) -> None:
    path = tmp_path / "devices.sqlite3"
    service, cli = DeviceRegistry(path), DeviceRegistry(path)
    heard: list[int] = []
    service.add_listener(lambda: heard.append(1))
    service.register(OXIMETER, "pulse_oximeter", patient_id="pt-0001", now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))
    assert heard == [1]
    assert not service.refresh()  # its own write

    cli.unassign(OXIMETER)  # `telemed-edge devices unassign` in another process
    assert service.refresh()
    assert not service.refresh()
    assert service.assigned() == []
    service.close()
    cli.close()
