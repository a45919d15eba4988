"""An in-process BLE world: simulated peripherals on a simulated adapter.

The simulator side drives peripherals (`notify`, `set_value`, going out of range, refusing connections,
vanishing); central-side backends (`devices.ble.sim_backend`, or a bleak-level fake in tests) talk to them
through `SimulatedRadio.scan`/`establish` and `PeripheralLink`, which fail with `AirError` faults that each
backend translates the way its real stack would. Notifications are handed over with `loop.call_soon`, one
callback per subscriber and no task per notification, so a ward of hundreds of devices stays cheap.
Everything runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum

from devices.ble.clock import SYSTEM_CLOCK, Clock
from devices.ble.models import CharProperty, DiscoveredDevice, normalize_address
from devices.ble.uuids import normalize_uuid

RawCallback = Callable[[bytes], None]


class SimulationError(ValueError):
    """The simulator was driven inconsistently (unknown characteristic, duplicate address...)."""


class AirFault(StrEnum):
    """What went wrong between the adapter and a peripheral."""

    NOT_FOUND = "not_found"  # the adapter never saw the device, or forgot it
    NO_RESPONSE = "no_response"  # connect request unanswered: out of range or not advertising
    ABORTED = "aborted"  # transient link-layer failure (BlueZ "le-connection-abort-by-local")
    OUT_OF_SLOTS = "out_of_slots"  # adapter or peripheral has no free connection
    NOT_CONNECTED = "not_connected"  # the link dropped before or during a GATT operation
    NO_SUCH_CHARACTERISTIC = "no_such_characteristic"
    NOT_PERMITTED = "not_permitted"  # characteristic lacks the property (ATT 0x02 / 0x06)


class AirError(Exception):
    """A fault reported by the simulated radio; backends translate it into their stack's errors."""

    def __init__(self, fault: AirFault, detail: str = "") -> None:
        super().__init__(f"{fault}: {detail}" if detail else str(fault))
        self.fault = fault


class SimulatedPeripheral:
    """A simulated GATT server: advertises `services`, exposes `characteristics` with their properties."""

    def __init__(
        self,
        address: str,
        name: str | None,
        services: Iterable[str | int],
        characteristics: Mapping[str | int, Iterable[CharProperty | str]],
        rssi: int = -60,
        *,
        advertises_while_connected: bool = False,
    ) -> None:
        self.address = normalize_address(address)
        self.name = name
        self.services = tuple(normalize_uuid(service) for service in services)
        self.characteristics: dict[str, frozenset[CharProperty]] = {
            normalize_uuid(uuid): frozenset(CharProperty(prop) for prop in props)
            for uuid, props in characteristics.items()
        }
        self.rssi = rssi
        # Most single-link wearables stop advertising once a central holds them; the default models that.
        self.advertises_while_connected = advertises_while_connected
        self.notifications_sent = 0
        self.notifications_dropped = 0
        self._values: dict[str, bytes] = {}
        self._links: list[PeripheralLink] = []
        self._subscribers: dict[str, dict[PeripheralLink, RawCallback]] = {}
        self._in_range = True
        self._radio: SimulatedRadio | None = None
        self._refusals_left: int | None = 0  # None = refuse until accept_connections()
        self._refusal_fault = AirFault.OUT_OF_SLOTS

    # --- simulator side ------------------------------------------------------------------------------

    def notify(self, char_uuid: str | int, payload: bytes | bytearray) -> int:
        """Send a notification or indication; returns the number of subscribers reached (0 = dropped,
        as a real device drops values while no CCCD is enabled)."""
        uuid = self._char(char_uuid)
        if not self.characteristics[uuid] & {CharProperty.NOTIFY, CharProperty.INDICATE}:
            raise SimulationError(f"{uuid} has neither notify nor indicate")
        subscribers = self._subscribers.get(uuid)
        if not subscribers:
            self.notifications_dropped += 1
            return 0
        data = bytes(payload)
        call_soon = asyncio.get_running_loop().call_soon
        for callback in subscribers.values():
            call_soon(callback, data)
        self.notifications_sent += 1
        return len(subscribers)

    def set_value(self, char_uuid: str | int, payload: bytes | bytearray) -> None:
        """Set the value a GATT read returns (e.g. Battery Level)."""
        self._values[self._char(char_uuid)] = bytes(payload)

    def go_out_of_range(self) -> None:
        """Walk away: links drop (supervision timeout) and the device is no longer heard."""
        self._in_range = False
        self.drop_connections()

    def come_back(self) -> None:
        """Back in range and advertising."""
        self._in_range = True

    def vanish(self) -> None:
        """Gone for good (battery dead, taken home): links drop and the adapter forgets the device."""
        if self._radio is not None:
            self._radio.remove(self)
        else:
            self.drop_connections()

    def refuse_connections(self, count: int | None = 1, fault: AirFault = AirFault.OUT_OF_SLOTS) -> None:
        """Fail the next `count` connection attempts (None: every attempt until accept_connections())."""
        if fault not in (AirFault.OUT_OF_SLOTS, AirFault.ABORTED, AirFault.NO_RESPONSE, AirFault.NOT_FOUND):
            raise SimulationError(f"{fault} is not a connection fault")
        self._refusals_left = count
        self._refusal_fault = fault

    def accept_connections(self) -> None:
        self._refusals_left = 0

    def drop_connections(self) -> None:
        """The peripheral terminates its links (e.g. a BP cuff after sending its measurement)."""
        for link in list(self._links):
            link._drop()

    @property
    def in_range(self) -> bool:
        return self._in_range

    @property
    def is_connected(self) -> bool:
        return bool(self._links)

    @property
    def advertising(self) -> bool:
        return self._in_range and (self.advertises_while_connected or not self._links)

    def is_subscribed(self, char_uuid: str | int) -> bool:
        return bool(self._subscribers.get(self._char(char_uuid)))

    # --- air interface (used by the radio and links) -------------------------------------------------

    def _char(self, char_uuid: str | int) -> str:
        uuid = char_uuid if isinstance(char_uuid, str) and char_uuid in self.characteristics else None
        if uuid is None:
            uuid = normalize_uuid(char_uuid)
            if uuid not in self.characteristics:
                raise SimulationError(f"{self.address} has no characteristic {uuid}")
        return uuid

    def _take_refusal(self) -> AirFault | None:
        if self._refusals_left is None:
            return self._refusal_fault
        if self._refusals_left > 0:
            self._refusals_left -= 1
            return self._refusal_fault
        return None

    def _advertisement(self) -> DiscoveredDevice:
        return DiscoveredDevice(self.address, self.name, self.rssi, self.services)

    def _attach(self, link: PeripheralLink) -> None:
        self._links.append(link)

    def _detach(self, link: PeripheralLink) -> None:
        if link in self._links:
            self._links.remove(link)
        # CCCDs of an unbonded client reset on disconnect (Core v5.4, Vol 3, Part G, 3.3.3.3).
        for subscribers in self._subscribers.values():
            subscribers.pop(link, None)


class PeripheralLink:
    """One simulated GATT connection, seen from the central."""

    def __init__(self, radio: SimulatedRadio, peripheral: SimulatedPeripheral, on_lost: Callable[[], None]) -> None:
        self._radio = radio
        self.peripheral = peripheral
        self._on_lost = on_lost
        self.alive = True

    async def enable(self, char_uuid: str, callback: RawCallback) -> None:
        """Write the CCCD: notifications or indications, whichever the characteristic supports."""
        props = await self._gatt_round_trip(char_uuid)
        if not props & {CharProperty.NOTIFY, CharProperty.INDICATE}:
            raise AirError(AirFault.NOT_PERMITTED, f"{char_uuid} cannot notify")
        self.peripheral._subscribers.setdefault(char_uuid, {})[self] = callback

    async def disable(self, char_uuid: str) -> None:
        await self._gatt_round_trip(char_uuid)
        self.peripheral._subscribers.get(char_uuid, {}).pop(self, None)

    async def read(self, char_uuid: str) -> bytes:
        props = await self._gatt_round_trip(char_uuid)
        if CharProperty.READ not in props:
            raise AirError(AirFault.NOT_PERMITTED, f"{char_uuid} is not readable")
        return self.peripheral._values.get(char_uuid, b"")

    async def close(self) -> None:
        """Local disconnect; like bleak, the disconnect callback still fires."""
        self._drop()

    async def _gatt_round_trip(self, char_uuid: str) -> frozenset[CharProperty]:
        if not self.alive:
            raise AirError(AirFault.NOT_CONNECTED)
        await self._radio.clock.sleep(self._radio.gatt_latency)
        if not self.alive:
            raise AirError(AirFault.NOT_CONNECTED)
        props = self.peripheral.characteristics.get(char_uuid)
        if props is None:
            raise AirError(AirFault.NO_SUCH_CHARACTERISTIC, char_uuid)
        return props

    def _drop(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.peripheral._detach(self)
        self._radio._links.discard(self)
        asyncio.get_running_loop().call_soon(self._on_lost)


class SimulatedRadio:
    """The adapter and the air around it: registered peripherals, connection slots, latencies."""

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        connection_slots: int | None = None,
        connect_latency: float = 0.05,
        gatt_latency: float = 0.01,
    ) -> None:
        # Real controllers hold 5-10 LE links (None = unlimited, for wards of simulated devices);
        # connect_latency covers LE connection setup plus cached service discovery.
        self.clock = clock
        self.connection_slots = connection_slots
        self.connect_latency = connect_latency
        self.gatt_latency = gatt_latency
        self._peripherals: dict[str, SimulatedPeripheral] = {}
        self._links: set[PeripheralLink] = set()

    def add(self, peripheral: SimulatedPeripheral) -> SimulatedPeripheral:
        """Register a peripheral (again, after vanish())."""
        if peripheral.address in self._peripherals:
            raise SimulationError(f"{peripheral.address} is already on this radio")
        if peripheral._radio is not None and peripheral._radio is not self:
            raise SimulationError(f"{peripheral.address} belongs to another radio")
        peripheral._radio = self
        self._peripherals[peripheral.address] = peripheral
        return peripheral

    def remove(self, peripheral: SimulatedPeripheral) -> None:
        """Forget a peripheral; its links drop."""
        self._peripherals.pop(peripheral.address, None)
        peripheral.drop_connections()
        peripheral._radio = None

    def peripheral(self, address: str) -> SimulatedPeripheral | None:
        return self._peripherals.get(normalize_address(address))

    @property
    def peripherals(self) -> tuple[SimulatedPeripheral, ...]:
        return tuple(self._peripherals.values())

    @property
    def active_links(self) -> int:
        return len(self._links)

    async def scan(self, *, service_uuids: frozenset[str], duration: float) -> list[DiscoveredDevice]:
        """Listen for `duration` seconds; advertisers with any of `service_uuids` (all if empty)."""
        await self.clock.sleep(duration)
        return [
            peripheral._advertisement()
            for peripheral in self._peripherals.values()
            if peripheral.advertising and (not service_uuids or not service_uuids.isdisjoint(peripheral.services))
        ]

    async def establish(self, address: str, *, timeout: float, on_lost: Callable[[], None]) -> PeripheralLink:
        """Open a link; `on_lost` is scheduled on the loop when it drops (either side)."""
        await self.clock.sleep(self.connect_latency)
        peripheral = self._peripherals.get(normalize_address(address))
        if peripheral is None:
            raise AirError(AirFault.NOT_FOUND, address)
        fault = peripheral._take_refusal()
        if fault is AirFault.NO_RESPONSE:
            await self.clock.sleep(max(0.0, timeout - self.connect_latency))
        if fault is not None:
            raise AirError(fault, address)
        if self.connection_slots is not None and len(self._links) >= self.connection_slots:
            raise AirError(AirFault.OUT_OF_SLOTS, f"{len(self._links)} links held")
        if not peripheral.advertising:
            # The controller keeps initiating until the host gives up, so an absent device costs the full timeout.
            await self.clock.sleep(max(0.0, timeout - self.connect_latency))
            if not peripheral.advertising or self._peripherals.get(peripheral.address) is not peripheral:
                raise AirError(AirFault.NO_RESPONSE, address)
        link = PeripheralLink(self, peripheral, on_lost)
        peripheral._attach(link)
        self._links.add(link)
        return link
