"""What only the bleak adapter does: translate bleak's errors, build passive-scan patterns, connect with the
scanned BLEDevice and the right bleak options. Fakes come from the behaviour suite."""

from __future__ import annotations

import random
from typing import Any

import pytest
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.device import BLEDevice
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from devices.ble.bleak_adapter import BleakTransport, map_bleak_error, passive_scan_patterns
from devices.ble.errors import (
    AdapterUnavailableError,
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionTimeoutError,
    DeviceGoneError,
    DeviceNotFoundError,
    OutOfConnectionSlotsError,
    PairingRequiredError,
)
from devices.ble.models import LinkEvent, LinkEventKind
from devices.ble.uuids import CHEST_PATCH_SERVICE, HEART_RATE_SERVICE
from tests.unit.devices.test_ble_transport import (
    HR,
    POLICY,
    BleakOutOfConnectionSlotsError,
    CountingRadio,
    FakeClock,
    heart_rate_strap,
    make_fake_bleak,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (BleakDeviceNotFoundError("AA", "Device with address AA was not found."), DeviceNotFoundError),
        (BleakOutOfConnectionSlotsError("No backend with an available connection slot"), OutOfConnectionSlotsError),
        (BleakCharacteristicNotFoundError("2a37"), CharacteristicNotFoundError),
        (BleakGATTProtocolError(BleakGATTProtocolErrorCode.INSUFFICIENT_ENCRYPTION), PairingRequiredError),
        (BleakGATTProtocolError(BleakGATTProtocolErrorCode.INSUFFICIENT_AUTHENTICATION), PairingRequiredError),
        (BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED), CharacteristicNotFoundError),
        (BleakGATTProtocolError(BleakGATTProtocolErrorCode.UNLIKELY_ERROR), BleTransportError),
        (
            BleakBluetoothNotAvailableError("off", BleakBluetoothNotAvailableReason.POWERED_OFF),
            AdapterUnavailableError,
        ),
        (BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]), BleTransportError),
        (BleakDBusError("org.bluez.Error.InProgress", ["In Progress"]), BleTransportError),
        (
            BleakDBusError("org.bluez.Error.Failed", ["le-connection-concurrent-connection-limit"]),
            OutOfConnectionSlotsError,
        ),
        (BleakDBusError("org.bluez.Error.Failed", ["Too many links"]), OutOfConnectionSlotsError),
        (BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-remote"]), DeviceGoneError),
        (BleakDBusError("org.bluez.Error.NotConnected", ["Not Connected"]), DeviceGoneError),
        (BleakDBusError("org.bluez.Error.Failed", ["le-connection-timeout"]), ConnectionTimeoutError),
        (BleakDBusError("org.bluez.Error.Failed", ["le-connection-key-missing"]), PairingRequiredError),
        (BleakDBusError("org.bluez.Error.AuthenticationFailed", []), PairingRequiredError),
        (BleakDBusError("org.bluez.Error.NotPermitted", ["Not paired"]), PairingRequiredError),
        (BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]), AdapterUnavailableError),
        (BleakDBusError("org.freedesktop.DBus.Error.UnknownObject", []), DeviceNotFoundError),
        (BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", ["Rejected"]), AdapterUnavailableError),
        (BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown", []), AdapterUnavailableError),
        (BleakDBusError("org.bluez.Error.NotSupported", ["Operation is not supported"]), CharacteristicNotFoundError),
        (BleakError("Not connected"), DeviceGoneError),
        (BleakError("failed to discover services, device disconnected"), DeviceGoneError),
        (BleakError("adapter 'hci1' not found"), AdapterUnavailableError),
        (BleakError("ESP_GATT_CONN_FAIL_ESTABLISH"), BleTransportError),
        (TimeoutError(), ConnectionTimeoutError),
        (FileNotFoundError(2, "No such file", "/run/dbus/system_bus_socket"), AdapterUnavailableError),
        (EOFError(), BleTransportError),
    ],
)
def test_bleak_errors_become_typed_errors(raised: BaseException, expected: type[BleTransportError]) -> None:
    error = map_bleak_error(raised, "AA:BB:CC:DD:EE:FF")
    assert type(error) is expected
    assert error.address == "AA:BB:CC:DD:EE:FF"
    assert error.__cause__ is raised


def test_our_own_errors_pass_through_unchanged() -> None:
    error = DeviceGoneError("gone")
    assert map_bleak_error(error) is error


def test_passive_patterns_match_uuid_lists_little_endian() -> None:
    patterns = passive_scan_patterns(frozenset({HEART_RATE_SERVICE, CHEST_PATCH_SERVICE}))
    heart = [p for p in patterns if p.content_of_pattern == b"\x0d\x18"]
    assert {p.ad_data_type for p in heart} == {
        AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID16,
        AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID16,
    }
    patch = [p for p in patterns if len(p.content_of_pattern) == 16]
    assert {p.ad_data_type for p in patch} == {
        AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID128,
        AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID128,
    }
    assert patch[0].content_of_pattern == bytes.fromhex(CHEST_PATCH_SERVICE.replace("-", ""))[::-1]
    assert all(p.start_position == 0 for p in patterns)


def _transport(radio: CountingRadio, clock: FakeClock, **kwargs: Any) -> tuple[BleakTransport, Any, Any]:
    scanner_cls, client_cls = make_fake_bleak(radio)
    transport = BleakTransport(
        policy=POLICY, clock=clock, rng=random.Random(1), scanner_cls=scanner_cls, client_cls=client_cls, **kwargs
    )
    return transport, scanner_cls, client_cls


async def test_connects_with_the_scanned_ble_device_and_configured_options() -> None:
    clock = FakeClock()
    radio = CountingRadio(clock=clock)
    radio.add(heart_rate_strap())
    transport, scanner_cls, client_cls = _transport(radio, clock, adapter="hci1", use_cached_services=True)
    async with transport:
        await transport.scan(timeout=2.0)
        await transport.connect(HR)
        [client] = client_cls.instances
        assert isinstance(client.target, BLEDevice)
        assert client.target.details["path"].endswith("dev_AA_00_00_00_00_01")
        assert client.bluez == {"adapter": "hci1"}
        assert client.connect_kwargs == {"dangerous_use_bleak_cache": True}
        [scan] = scanner_cls.instances
        assert scan["bluez"] == {"adapter": "hci1"}
        assert scan["scanning_mode"] == "active"
        assert set(scan["service_uuids"]) >= {HEART_RATE_SERVICE}


async def test_passive_scanning_uses_or_patterns_instead_of_a_uuid_filter() -> None:
    clock = FakeClock()
    radio = CountingRadio(clock=clock)
    radio.add(heart_rate_strap())
    transport, scanner_cls, _ = _transport(radio, clock, scanning_mode="passive")
    async with transport:
        found = await transport.scan(service_uuids=[HEART_RATE_SERVICE], timeout=1.0)
        assert [device.address for device in found] == [HR]
        [scan] = scanner_cls.instances
        assert scan["scanning_mode"] == "passive"
        assert scan["service_uuids"] is None
        assert len(scan["bluez"]["or_patterns"]) == 2


async def test_unscanned_device_is_located_before_connecting() -> None:
    clock = FakeClock()
    radio = CountingRadio(clock=clock)
    radio.add(heart_rate_strap(rssi=-66))
    transport, _, client_cls = _transport(radio, clock)
    async with transport:
        link = await transport.connect(HR.lower())
        assert isinstance(client_cls.instances[0].target, BLEDevice)
        assert link.rssi == -66


async def test_forgotten_device_is_located_afresh() -> None:
    clock = FakeClock()
    radio = CountingRadio(clock=clock)
    strap = radio.add(heart_rate_strap())
    transport, scanner_cls, client_cls = _transport(radio, clock)
    retries: list[LinkEvent] = []

    def come_back(event: LinkEvent) -> None:
        if event.kind is LinkEventKind.RECONNECTING:
            retries.append(event)
            if radio.peripheral(HR) is None:
                radio.add(strap)  # advertising again, but BlueZ has dropped its device object

    async with transport:
        await transport.scan(timeout=1.0)
        strap.vanish()
        transport.add_event_handler(come_back)
        link = await transport.connect(HR)

        assert link.is_connected
        assert [type(event.error) for event in retries] == [DeviceNotFoundError]
        first, second = client_cls.instances
        assert first.connect_kwargs == {} and not first.is_connected
        assert second.is_connected
        assert scanner_cls.instances[-1]["service_uuids"] is None  # the stale BLEDevice was located afresh
