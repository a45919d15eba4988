"""`BleBackend` over the simulated radio, and `SimulatedTransport`: the transport the edge runs in `make run`,
tests and benchmarks. Retry, reconnect and subscriptions are the shared `ConnectionManager` code."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from types import MappingProxyType

from devices.ble.backend import BackendConnection, RawNotificationCallback
from devices.ble.backoff import RetryPolicy
from devices.ble.clock import Clock
from devices.ble.errors import (
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionTimeoutError,
    DeviceGoneError,
    DeviceNotFoundError,
    OutOfConnectionSlotsError,
)
from devices.ble.models import DiscoveredDevice
from devices.ble.sim_radio import AirError, AirFault, PeripheralLink, SimulatedPeripheral, SimulatedRadio
from devices.ble.transport import ConnectionManager

_FAULT_ERRORS: Mapping[AirFault, type[BleTransportError]] = MappingProxyType(
    {
        AirFault.NOT_FOUND: DeviceNotFoundError,
        AirFault.NO_RESPONSE: ConnectionTimeoutError,
        AirFault.ABORTED: BleTransportError,
        AirFault.OUT_OF_SLOTS: OutOfConnectionSlotsError,
        AirFault.NOT_CONNECTED: DeviceGoneError,
        AirFault.NO_SUCH_CHARACTERISTIC: CharacteristicNotFoundError,
        AirFault.NOT_PERMITTED: CharacteristicNotFoundError,
    }
)


def _translate(error: AirError, address: str) -> BleTransportError:
    translated = _FAULT_ERRORS[error.fault](str(error), address=address)
    translated.__cause__ = error
    return translated


class SimulatedConnection:
    """`BackendConnection` over one simulated link."""

    def __init__(self, link: PeripheralLink) -> None:
        self._link = link
        self._rssi = link.peripheral.rssi

    @property
    def address(self) -> str:
        return self._link.peripheral.address

    @property
    def rssi(self) -> int | None:
        return self._rssi

    @property
    def is_connected(self) -> bool:
        return self._link.alive

    async def start_notify(self, char_uuid: str, callback: RawNotificationCallback) -> None:
        try:
            await self._link.enable(char_uuid, callback)
        except AirError as error:
            raise _translate(error, self.address) from error

    async def stop_notify(self, char_uuid: str) -> None:
        try:
            await self._link.disable(char_uuid)
        except AirError as error:
            raise _translate(error, self.address) from error

    async def read(self, char_uuid: str) -> bytes:
        try:
            return await self._link.read(char_uuid)
        except AirError as error:
            raise _translate(error, self.address) from error

    async def disconnect(self) -> None:
        await self._link.close()


class SimulatedBackend:
    """`BleBackend` that scans and connects on a `SimulatedRadio`."""

    def __init__(self, radio: SimulatedRadio) -> None:
        self.radio = radio

    async def scan(self, *, service_uuids: frozenset[str], timeout: float) -> list[DiscoveredDevice]:
        return await self.radio.scan(service_uuids=service_uuids, duration=timeout)

    async def connect(self, address: str, *, timeout: float, on_disconnect: Callable[[], None]) -> BackendConnection:
        try:
            link = await self.radio.establish(address, timeout=timeout, on_lost=on_disconnect)
        except AirError as error:
            raise _translate(error, address) from error
        return SimulatedConnection(link)

    async def close(self) -> None:
        """The radio belongs to the simulator; links were closed by their owners."""


class SimulatedTransport(ConnectionManager):
    """The BLE transport on simulated peripherals; same retry/reconnect code as `BleakTransport`."""

    def __init__(
        self,
        radio: SimulatedRadio | None = None,
        *,
        policy: RetryPolicy | None = None,
        max_concurrent_connects: int = 4,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if radio is None:
            radio = SimulatedRadio() if clock is None else SimulatedRadio(clock=clock)
        self.radio = radio
        super().__init__(
            SimulatedBackend(radio),
            policy=policy,
            max_concurrent_connects=max_concurrent_connects,
            clock=clock or radio.clock,
            rng=rng,
        )

    def add_peripheral(self, peripheral: SimulatedPeripheral) -> SimulatedPeripheral:
        """Put a peripheral on this transport's radio."""
        return self.radio.add(peripheral)
