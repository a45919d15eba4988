"""One behaviour suite for the BLE transport, run against both backends:

- "simulated": `SimulatedTransport` on a `SimulatedRadio`;
- "bleak": `BleakTransport` driven through fake `BleakScanner`/`BleakClient` classes that behave like bleak's
  (same method names and signatures, bleak's exception types and D-Bus error strings, disconnected_callback
  called with the client) on top of the same simulated peripherals, since no radio exists here.

Time is virtual: a fake clock records every sleep (backoffs, scans, latencies) and advances instantly.
Scenarios are scripted from event handlers, so interleavings are deterministic.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)

from devices.ble import (
    AirFault,
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionManager,
    ConnectionTimeoutError,
    DeviceGoneError,
    DeviceNotFoundError,
    LinkEvent,
    LinkEventKind,
    LinkState,
    NotConnectedError,
    OutOfConnectionSlotsError,
    RetryPolicy,
    SimulatedPeripheral,
    SimulatedRadio,
    SimulatedTransport,
    TransportClosedError,
)
from devices.ble.bleak_adapter import BleakTransport
from devices.ble.sim_radio import AirError, PeripheralLink
from devices.ble.uuids import (
    BATTERY_LEVEL,
    BLOOD_PRESSURE_MEASUREMENT,
    BLOOD_PRESSURE_SERVICE,
    CHEST_PATCH_RESPIRATORY_RATE,
    CHEST_PATCH_SERVICE,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    normalize_uuid,
)

pytestmark = pytest.mark.anyio

START = 1_700_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Virtual time: sleep() records the request, advances now() and yields once to the loop."""

    def __init__(self) -> None:
        self._now = START
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)


class CountingRadio(SimulatedRadio):
    """Records how many connection attempts were in flight at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.in_flight = 0
        self.max_in_flight = 0
        self.timeline: list[str] = []

    async def establish(self, address: str, *, timeout: float, on_lost: Callable[[], None]) -> PeripheralLink:
        self.timeline.append("connect-start")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await super().establish(address, timeout=timeout, on_lost=on_lost)
        finally:
            self.in_flight -= 1
            self.timeline.append("connect-end")

    async def scan(self, *, service_uuids: frozenset[str], duration: float) -> list[Any]:
        self.timeline.append("scan-start")
        try:
            return await super().scan(service_uuids=service_uuids, duration=duration)
        finally:
            self.timeline.append("scan-end")


# --- a bleak-level fake on the simulated air ----------------------------------------------------------


class BleakOutOfConnectionSlotsError(BleakError):
    """Same name and base as the class bleak-retry-connector and habluetooth raise."""


def make_fake_bleak(radio: SimulatedRadio) -> tuple[type[Any], type[Any]]:
    """BleakScanner/BleakClient look-alikes whose air is `radio`."""

    # Addresses BlueZ holds a device object for: created when a scan sees the device, removed when a
    # connect finds it gone. A BLEDevice whose object was removed fails until a scan sees the device again.
    known: set[str] = set()

    def advertisement(device: Any) -> tuple[BLEDevice, AdvertisementData]:
        known.add(device.address)
        path = "/org/bluez/hci0/dev_" + device.address.replace(":", "_")
        ble_device = BLEDevice(device.address, device.name, {"path": path, "props": {}})
        data = AdvertisementData(
            local_name=device.name,
            manufacturer_data={},
            service_data={},
            service_uuids=list(device.service_uuids),
            tx_power=None,
            rssi=device.rssi,
            platform_data=(),
        )
        return ble_device, data

    class FakeBleakScanner:
        instances: ClassVar[list[dict[str, Any]]] = []

        def __init__(
            self,
            detection_callback: Any = None,
            service_uuids: list[str] | None = None,
            scanning_mode: str = "active",
            *,
            bluez: dict[str, Any] | None = None,
            cb: dict[str, Any] | None = None,
            backend: Any = None,
            **kwargs: Any,
        ) -> None:
            bluez = bluez or {}
            if scanning_mode == "passive" and not bluez.get("or_patterns"):
                raise BleakError("passive scanning mode requires bluez or_patterns")
            self.service_uuids = frozenset(normalize_uuid(uuid) for uuid in service_uuids or ())
            FakeBleakScanner.instances.append(
                {"service_uuids": service_uuids, "scanning_mode": scanning_mode, "bluez": bluez}
            )

        @classmethod
        async def discover(
            cls, timeout: float = 5.0, *, return_adv: bool = False, **kwargs: Any
        ) -> list[BLEDevice] | dict[str, tuple[BLEDevice, AdvertisementData]]:
            scanner = cls(**kwargs)
            seen = await radio.scan(service_uuids=scanner.service_uuids, duration=timeout)
            found = {device.address: advertisement(device) for device in seen}
            return found if return_adv else [ble_device for ble_device, _ in found.values()]

        @classmethod
        async def find_device_by_filter(
            cls, filterfunc: Callable[[BLEDevice, AdvertisementData], bool], timeout: float = 10.0, **kwargs: Any
        ) -> BLEDevice | None:
            cls(**kwargs)
            elapsed, step = 0.0, 0.5
            while elapsed < timeout:
                for device in await radio.scan(service_uuids=frozenset(), duration=step):
                    ble_device, data = advertisement(device)
                    if filterfunc(ble_device, data):
                        return ble_device
                elapsed += step
            return None

    class FakeBleakClient:
        instances: ClassVar[list[FakeBleakClient]] = []

        def __init__(
            self,
            address_or_ble_device: BLEDevice | str,
            disconnected_callback: Callable[[FakeBleakClient], None] | None = None,
            services: Iterable[str] | None = None,
            *,
            timeout: float = 30,
            pair: bool = False,
            bluez: dict[str, Any] | None = None,
            winrt: dict[str, Any] | None = None,
            backend: Any = None,
            **kwargs: Any,
        ) -> None:
            self.target = address_or_ble_device
            self._disconnected_callback = disconnected_callback
            self._timeout = timeout
            self.bluez = bluez or {}
            self.connect_kwargs: dict[str, Any] | None = None
            self._link: PeripheralLink | None = None
            FakeBleakClient.instances.append(self)

        @property
        def address(self) -> str:
            return self.target.address if isinstance(self.target, BLEDevice) else self.target

        @property
        def is_connected(self) -> bool:
            return self._link is not None and self._link.alive

        async def connect(self, **kwargs: Any) -> None:
            if self.is_connected:
                raise BleakError("Client is already connected")
            self.connect_kwargs = kwargs
            if self.address not in known:
                raise self._connect_error(AirFault.NOT_FOUND)
            try:
                self._link = await radio.establish(self.address, timeout=self._timeout, on_lost=self._on_lost)
            except AirError as error:
                if error.fault is AirFault.NOT_FOUND:
                    known.discard(self.address)
                raise self._connect_error(error.fault) from None

        def _connect_error(self, fault: AirFault) -> BaseException:
            if fault is AirFault.NOT_FOUND:
                return BleakDeviceNotFoundError(
                    self.address,
                    f"Device with address {self.address} was not found. "
                    "It may have been removed from BlueZ when scanning stopped.",
                )
            if fault is AirFault.NO_RESPONSE:
                return TimeoutError()
            if fault is AirFault.ABORTED:
                return BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"])
            return BleakDBusError("org.bluez.Error.Failed", ["le-connection-concurrent-connection-limit"])

        def _on_lost(self) -> None:
            if self._disconnected_callback is not None:
                self._disconnected_callback(self)

        async def disconnect(self) -> None:
            if self._link is not None:
                await self._link.close()

        def _characteristic(self, char_specifier: str) -> BleakGATTCharacteristic:
            if not self.is_connected:
                raise BleakError("Not connected")
            assert self._link is not None
            uuid = normalize_uuid(char_specifier)
            props = self._link.peripheral.characteristics.get(uuid)
            if props is None:
                raise BleakCharacteristicNotFoundError(char_specifier)
            return BleakGATTCharacteristic(None, 0x10, uuid, sorted(props), lambda: 20, None)  # type: ignore[arg-type]

        async def start_notify(
            self,
            char_specifier: str,
            callback: Callable[[BleakGATTCharacteristic, bytearray], None],
            *,
            bluez: dict[str, Any] | None = None,
            cb: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            characteristic = self._characteristic(char_specifier)
            assert self._link is not None
            try:
                await self._link.enable(characteristic.uuid, lambda data: callback(characteristic, bytearray(data)))
            except AirError as error:
                if error.fault is AirFault.NOT_PERMITTED:
                    raise BleakDBusError("org.bluez.Error.NotSupported", ["Operation is not supported"]) from None
                raise BleakError("Not connected") from None

        async def stop_notify(self, char_specifier: str) -> None:
            characteristic = self._characteristic(char_specifier)
            assert self._link is not None
            try:
                await self._link.disable(characteristic.uuid)
            except AirError:
                raise BleakError("Not connected") from None

        async def read_gatt_char(self, char_specifier: str, *, use_cached: bool = False, **kwargs: Any) -> bytearray:
            characteristic = self._characteristic(char_specifier)
            assert self._link is not None
            try:
                return bytearray(await self._link.read(characteristic.uuid))
            except AirError as error:
                if error.fault is AirFault.NOT_PERMITTED:
                    raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.READ_NOT_PERMITTED) from None
                raise BleakError("Not connected") from None

    return FakeBleakScanner, FakeBleakClient


# --- fixtures ----------------------------------------------------------------------------------------

POLICY = RetryPolicy(max_attempts=4, jitter=0.0, connect_timeout=5.0, operation_timeout=2.0)

HR = "AA:00:00:00:00:01"
BP = "AA:00:00:00:00:02"
PATCH = "AA:00:00:00:00:03"
KEYBOARD = "AA:00:00:00:00:04"


def heart_rate_strap(address: str = HR, rssi: int = -55) -> SimulatedPeripheral:
    return SimulatedPeripheral(
        address,
        "HRM",
        [HEART_RATE_SERVICE, 0x180F],
        {HEART_RATE_MEASUREMENT: ["notify"], BATTERY_LEVEL: ["read", "notify"]},
        rssi,
    )


def bp_cuff(address: str = BP, rssi: int = -70) -> SimulatedPeripheral:
    return SimulatedPeripheral(
        address, "BPM", [BLOOD_PRESSURE_SERVICE], {BLOOD_PRESSURE_MEASUREMENT: ["indicate"]}, rssi
    )


@dataclass
class Env:
    kind: str
    clock: FakeClock = field(default_factory=FakeClock)
    radio: CountingRadio = field(init=False)
    events: list[LinkEvent] = field(default_factory=list)
    fakes: tuple[type[Any], type[Any]] | None = None

    def __post_init__(self) -> None:
        self.radio = CountingRadio(clock=self.clock, connect_latency=0.05, gatt_latency=0.01)

    def add(self, *peripherals: SimulatedPeripheral) -> None:
        for peripheral in peripherals:
            self.radio.add(peripheral)

    def transport(self, *, policy: RetryPolicy = POLICY, max_concurrent_connects: int = 2) -> ConnectionManager:
        transport: ConnectionManager
        if self.kind == "simulated":
            transport = SimulatedTransport(
                self.radio,
                policy=policy,
                max_concurrent_connects=max_concurrent_connects,
                clock=self.clock,
                rng=random.Random(7),
            )
        else:
            self.fakes = make_fake_bleak(self.radio)
            transport = BleakTransport(
                policy=policy,
                max_concurrent_connects=max_concurrent_connects,
                clock=self.clock,
                rng=random.Random(7),
                scanner_cls=self.fakes[0],
                client_cls=self.fakes[1],
            )
        transport.add_event_handler(self.events.append)
        return transport

    def kinds(self, address: str | None = None) -> list[LinkEventKind]:
        return [event.kind for event in self.events if address is None or event.address == address]

    def of(self, kind: LinkEventKind, address: str | None = None) -> list[LinkEvent]:
        return [event for event in self.events if event.kind is kind and (address is None or event.address == address)]


@pytest.fixture(params=["simulated", "bleak"])
def env(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


def on_event(transport: ConnectionManager, kind: LinkEventKind, action: Callable[[LinkEvent], None]) -> None:
    """Run `action` from inside the transport at every event of `kind` (scripted scenarios)."""
    transport.add_event_handler(lambda event: action(event) if event.kind is kind else None)


class Inbox:
    """A notification handler that records (uuid, payload, receive time)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes, float]] = []

    def __call__(self, uuid: str, data: bytes, received_at: float) -> None:
        self.items.append((uuid, data, received_at))

    @property
    def payloads(self) -> list[bytes]:
        return [data for _, data, _ in self.items]


async def settle() -> None:
    """Let call_soon deliveries and woken tasks run."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- the suite ---------------------------------------------------------------------------------------


async def test_scan_returns_health_devices_strongest_first_and_honours_allowlist(env: Env) -> None:
    patch = SimulatedPeripheral(
        PATCH, "RR patch", [CHEST_PATCH_SERVICE], {CHEST_PATCH_RESPIRATORY_RATE: ["notify"]}, -40
    )
    keyboard = SimulatedPeripheral(KEYBOARD, "Keyboard", [0x1812], {0x2A4D: ["notify"]}, -30)
    env.add(heart_rate_strap(rssi=-55), bp_cuff(rssi=-70), patch, keyboard)
    async with env.transport() as transport:
        everything = await transport.scan(timeout=3.0)
        assert [device.address for device in everything] == [PATCH, HR, BP]
        assert everything[1].name == "HRM"
        assert everything[1].rssi == -55
        assert HEART_RATE_SERVICE in everything[1].service_uuids
        assert env.clock.sleeps[-1] == 3.0  # a scan listens for its whole window

        allowed = await transport.scan(allowlist=[BP.lower(), "AA:00:00:00:00:99"], timeout=1.0)
        assert [device.address for device in allowed] == [BP]

        cuffs = await transport.scan(service_uuids=[0x1810], timeout=1.0)
        assert [device.address for device in cuffs] == [BP]


async def test_connect_retries_transient_failures_with_exponential_backoff(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    strap.refuse_connections(2, AirFault.ABORTED)
    async with env.transport() as transport:
        link = await transport.connect(HR)

        assert link.state is LinkState.CONNECTED
        retries = env.of(LinkEventKind.RECONNECTING)
        assert [(event.attempt, event.delay) for event in retries] == [(2, 0.25), (3, 0.5)]
        assert all(type(event.error) is BleTransportError for event in retries)
        assert env.of(LinkEventKind.CONNECTED)[0].attempt == 3
        assert 0.25 in env.clock.sleeps and 0.5 in env.clock.sleeps


async def test_out_of_slots_backs_off_longer_then_connects(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    strap.refuse_connections(1, AirFault.OUT_OF_SLOTS)
    async with env.transport() as transport:
        await transport.connect(HR)

        [retry] = env.of(LinkEventKind.RECONNECTING)
        assert isinstance(retry.error, OutOfConnectionSlotsError)
        assert retry.delay == 4.0
        assert env.kinds() == [LinkEventKind.RECONNECTING, LinkEventKind.CONNECTED]


async def test_full_adapter_waits_for_a_slot_to_free(env: Env) -> None:
    env.radio.connection_slots = 1
    env.add(heart_rate_strap(), bp_cuff())
    async with env.transport() as transport:
        await transport.connect(HR)
        # Free the only slot as soon as the cuff has been told the adapter is full.
        freeing: list[asyncio.Task[None]] = []

        def free_slot(event: LinkEvent) -> None:
            if event.address == BP and not freeing:
                freeing.append(asyncio.get_running_loop().create_task(transport.disconnect(HR)))

        on_event(transport, LinkEventKind.RECONNECTING, free_slot)
        await transport.connect(BP)
        await freeing[0]

        retries = env.of(LinkEventKind.RECONNECTING, BP)
        assert retries, "the cuff must have met a full adapter first"
        assert all(isinstance(event.error, OutOfConnectionSlotsError) for event in retries)
        assert [event.delay for event in retries] == [4.0 * 2**n for n in range(len(retries))]
        assert transport.link(HR) is None
        assert env.radio.active_links == 1


async def test_unknown_device_gives_up_with_device_not_found(env: Env) -> None:
    async with env.transport() as transport:
        with pytest.raises(DeviceNotFoundError) as raised:
            await transport.connect("aa:00:00:00:00:42")

        assert raised.value.address == "AA:00:00:00:00:42"
        retries = env.of(LinkEventKind.RECONNECTING)
        assert [event.delay for event in retries] == [2.0, 4.0, 8.0]
        [gave_up] = env.of(LinkEventKind.GAVE_UP)
        assert gave_up.attempt == POLICY.max_attempts
        assert isinstance(gave_up.error, DeviceNotFoundError)
        link = transport.link("AA:00:00:00:00:42")
        assert link is not None and link.state is LinkState.GAVE_UP


async def test_notifications_and_indications_reach_subscribers_with_receive_time(env: Env) -> None:
    strap, cuff = heart_rate_strap(), bp_cuff()
    env.add(strap, cuff)
    heart, pressure = Inbox(), Inbox()
    async with env.transport() as transport:
        assert strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x40") == 0  # nobody listening yet: dropped

        await transport.connect(HR, subscriptions={0x2A37: heart})
        await transport.connect(BP, subscriptions={BLOOD_PRESSURE_MEASUREMENT: pressure})
        assert strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x48") == 1
        assert strap.notify(HEART_RATE_MEASUREMENT, bytearray(b"\x00\x49")) == 1
        cuff_payload = bytes.fromhex("1e7800500064001e00")
        assert cuff.notify(BLOOD_PRESSURE_MEASUREMENT, cuff_payload) == 1
        await settle()

        assert heart.items == [
            (HEART_RATE_MEASUREMENT, b"\x00\x48", env.clock.now()),
            (HEART_RATE_MEASUREMENT, b"\x00\x49", env.clock.now()),
        ]
        assert all(type(data) is bytes for data in heart.payloads)
        assert pressure.items == [(BLOOD_PRESSURE_MEASUREMENT, cuff_payload, env.clock.now())]
        assert strap.notifications_dropped == 1


async def test_subscribe_and_unsubscribe_while_connected(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    first, second, battery = Inbox(), Inbox(), Inbox()
    async with env.transport() as transport:
        link = await transport.connect(HR)
        await link.subscribe(HEART_RATE_MEASUREMENT, first)
        await link.subscribe(BATTERY_LEVEL, battery)
        strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x50")
        strap.notify(BATTERY_LEVEL, b"\x63")
        await settle()
        await link.subscribe(HEART_RATE_MEASUREMENT, second)  # replaces the handler
        strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x51")
        await link.unsubscribe(BATTERY_LEVEL)
        assert strap.notify(BATTERY_LEVEL, b"\x62") == 0
        await settle()

        assert first.payloads == [b"\x00\x50"]
        assert second.payloads == [b"\x00\x51"]
        assert battery.payloads == [b"\x63"]
        assert link.subscriptions == (HEART_RATE_MEASUREMENT,)


async def test_handler_errors_do_not_stop_delivery(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    inbox = Inbox()

    def flaky(uuid: str, data: bytes, received_at: float) -> None:
        if data == b"\x00\x01":
            raise ValueError("decoder bug")
        inbox(uuid, data, received_at)

    async with env.transport() as transport:
        await transport.connect(HR, subscriptions={HEART_RATE_MEASUREMENT: flaky})
        strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x01")
        strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x02")
        await settle()
        assert inbox.payloads == [b"\x00\x02"]
        assert transport.link(HR).is_connected  # type: ignore[union-attr]


async def test_battery_level_read(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    strap.set_value(BATTERY_LEVEL, b"\x57")
    async with env.transport() as transport:
        await transport.connect(HR)
        assert await transport.read(HR, 0x2A19) == b"\x57"
        strap.set_value(BATTERY_LEVEL, b"\x56")
        assert await transport.read(HR.lower(), BATTERY_LEVEL) == b"\x56"
        with pytest.raises(CharacteristicNotFoundError):
            await transport.read(HR, HEART_RATE_MEASUREMENT)  # notify-only
        with pytest.raises(NotConnectedError):
            await transport.read(BP, BATTERY_LEVEL)


async def test_drop_is_detected_and_reconnect_resubscribes(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    inbox = Inbox()
    async with env.transport() as transport:
        link = await transport.connect(HR, subscriptions={HEART_RATE_MEASUREMENT: inbox})
        # Come back in range only after two reconnect attempts have timed out.
        on_event(
            transport,
            LinkEventKind.RECONNECTING,
            lambda event: strap.come_back() if event.attempt == 3 else None,
        )
        strap.go_out_of_range()
        assert strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x10") == 0  # lost with the link
        await settle()
        assert link.state is not LinkState.CONNECTED
        await link.wait_connected()

        assert env.kinds() == [
            LinkEventKind.CONNECTED,
            LinkEventKind.DISCONNECTED,
            LinkEventKind.RECONNECTING,
            LinkEventKind.RECONNECTING,
            LinkEventKind.RECONNECTING,
            LinkEventKind.CONNECTED,
        ]
        disconnected, first, second, third = env.events[1:5]
        assert isinstance(disconnected.error, DeviceGoneError)
        assert (first.attempt, first.delay, type(first.error)) == (1, 0.5, DeviceGoneError)
        assert (second.attempt, type(second.error)) == (2, ConnectionTimeoutError)
        assert (third.attempt, third.delay) == (3, 2.0)
        assert env.events[-1].attempt == 3
        assert strap.is_subscribed(HEART_RATE_MEASUREMENT)
        strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x11")
        await settle()
        assert inbox.payloads == [b"\x00\x11"]


async def test_remote_disconnect_reconnects_at_once_when_device_stays(env: Env) -> None:
    cuff = bp_cuff()
    env.add(cuff)
    inbox = Inbox()
    async with env.transport() as transport:
        link = await transport.connect(BP, subscriptions={BLOOD_PRESSURE_MEASUREMENT: inbox})
        cuff.drop_connections()
        await settle()
        await link.wait_connected()
        cuff.notify(BLOOD_PRESSURE_MEASUREMENT, b"\x00")
        await settle()
        assert inbox.payloads == [b"\x00"]
        assert env.kinds().count(LinkEventKind.CONNECTED) == 2


async def test_gives_up_after_max_attempts_and_can_be_restarted(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    async with env.transport() as transport:
        link = await transport.connect(HR)
        strap.go_out_of_range()
        with pytest.raises(ConnectionTimeoutError):
            while True:
                await link.wait_connected()
                await settle()

        [gave_up] = env.of(LinkEventKind.GAVE_UP)
        assert gave_up.attempt == POLICY.max_attempts
        assert isinstance(gave_up.error, ConnectionTimeoutError)
        assert link.state is LinkState.GAVE_UP
        assert POLICY.connect_timeout - env.radio.connect_latency in env.clock.sleeps  # a full connect timeout

        strap.come_back()
        assert await transport.connect(HR) is link
        assert link.is_connected


async def test_policy_can_forbid_reconnecting_after_a_drop(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    policy = RetryPolicy(jitter=0.0, base_delays={BleTransportError: 0.25, DeviceGoneError: None})
    async with env.transport(policy=policy) as transport:
        link = await transport.connect(HR)
        strap.drop_connections()
        with pytest.raises(DeviceGoneError):
            while True:
                await link.wait_connected()
                await settle()
        assert env.kinds() == [LinkEventKind.CONNECTED, LinkEventKind.DISCONNECTED, LinkEventKind.GAVE_UP]


async def test_vanished_device_ends_as_not_found(env: Env) -> None:
    strap = heart_rate_strap()
    env.add(strap)
    async with env.transport() as transport:
        link = await transport.connect(HR)
        strap.vanish()
        with pytest.raises(DeviceNotFoundError):
            while True:
                await link.wait_connected()
                await settle()
        assert isinstance(env.of(LinkEventKind.GAVE_UP)[0].error, DeviceNotFoundError)


async def test_missing_characteristic_is_not_retried(env: Env) -> None:
    env.add(bp_cuff())
    async with env.transport() as transport:
        with pytest.raises(CharacteristicNotFoundError):
            await transport.connect(BP, subscriptions={HEART_RATE_MEASUREMENT: Inbox()})
        assert env.kinds() == [LinkEventKind.GAVE_UP]
        assert env.radio.active_links == 0  # the half-set-up link was closed


async def test_many_devices_at_once_with_bounded_connection_attempts(env: Env) -> None:
    straps = [heart_rate_strap(f"AA:00:00:00:01:{index:02X}") for index in range(60)]
    env.add(*straps)
    inboxes = {strap.address: Inbox() for strap in straps}
    async with env.transport(max_concurrent_connects=3) as transport:
        links = await asyncio.gather(
            *(
                transport.connect(strap.address, subscriptions={HEART_RATE_MEASUREMENT: inboxes[strap.address]})
                for strap in straps
            )
        )
        assert all(link.is_connected for link in links)
        assert env.radio.max_in_flight == 3
        assert env.radio.active_links == 60

        for index, strap in enumerate(straps):
            strap.notify(HEART_RATE_MEASUREMENT, bytes([0, index]))
        await settle()
        assert all(inboxes[strap.address].payloads == [bytes([0, index])] for index, strap in enumerate(straps))


async def test_scan_waits_for_connection_attempts_to_finish(env: Env) -> None:
    env.add(heart_rate_strap(), bp_cuff())
    async with env.transport() as transport:
        await transport.scan(timeout=1.0)  # the usual order; bleak then connects with the scanned BLEDevice
        env.radio.timeline.clear()
        connecting = asyncio.ensure_future(transport.connect(HR))
        while env.radio.in_flight == 0:
            await asyncio.sleep(0)
        found = await transport.scan(timeout=1.0)

        assert env.radio.timeline == ["connect-start", "connect-end", "scan-start", "scan-end"]
        assert [device.address for device in found] == [BP]  # a connected strap no longer advertises
        await connecting


async def test_scan_reports_rssi_of_supervised_devices(env: Env) -> None:
    strap = heart_rate_strap(rssi=-80)
    strap.advertises_while_connected = True
    env.add(strap)
    async with env.transport() as transport:
        link = await transport.connect(HR)
        strap.rssi = -62
        await transport.scan(timeout=1.0)
        [rssi] = env.of(LinkEventKind.RSSI)
        assert (rssi.address, rssi.rssi) == (HR, -62)
        assert link.rssi == -62


async def test_event_stream_sees_events_until_close(env: Env) -> None:
    env.add(heart_rate_strap())
    transport = env.transport()
    stream = transport.events()
    await transport.connect(HR)
    await transport.close()
    assert [event.kind async for event in stream] == [LinkEventKind.CONNECTED]


async def test_shutdown_leaves_no_tasks_and_no_links(env: Env) -> None:
    before = asyncio.all_tasks()
    strap, cuff = heart_rate_strap(), bp_cuff()
    env.add(strap, cuff)
    cuff.go_out_of_range()
    transport = env.transport(policy=RetryPolicy(max_attempts=None, jitter=0.0, connect_timeout=5.0))
    link = await transport.connect(HR, subscriptions={HEART_RATE_MEASUREMENT: Inbox()})
    away = await transport.connect(BP, wait=False)  # keeps retrying in the background
    waiter = asyncio.ensure_future(away.wait_connected())
    await settle()
    assert away.state in (LinkState.CONNECTING, LinkState.BACKING_OFF)
    assert len(asyncio.all_tasks() - before) == 3  # two supervisors and the waiter

    await transport.close()

    with pytest.raises(TransportClosedError):
        await waiter
    assert asyncio.all_tasks() == before
    assert {link.state, away.state} == {LinkState.CLOSED}
    assert not strap.is_connected
    assert env.radio.active_links == 0
    with pytest.raises(TransportClosedError):
        await transport.connect(HR)
    with pytest.raises(TransportClosedError):
        await link.read(BATTERY_LEVEL)


async def test_disconnect_stops_supervision_of_one_device(env: Env) -> None:
    strap, cuff = heart_rate_strap(), bp_cuff()
    env.add(strap, cuff)
    async with env.transport() as transport:
        await transport.connect(HR)
        await transport.connect(BP)
        await transport.disconnect(HR)
        await settle()
        assert not strap.is_connected and cuff.is_connected
        assert transport.link(HR) is None
        assert LinkEventKind.RECONNECTING not in env.kinds()  # a local disconnect is not a drop
