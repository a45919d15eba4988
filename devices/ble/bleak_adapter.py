"""`BleBackend` on bleak (BlueZ over D-Bus on Linux) and `BleakTransport`. The only module importing bleak.

It follows bleak's guidance for long-running centrals: connect with the `BLEDevice` from a scan rather than an
address string (an address makes bleak run its own discovery inside connect, which collides with other
connects on BlueZ), and translate every bleak, D-Bus and timeout failure into `devices.ble.errors`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Literal

from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZClientArgs, BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakGATTProtocolError,
)

from devices.ble.backend import BackendConnection, RawNotificationCallback
from devices.ble.backoff import RetryPolicy
from devices.ble.bluez_errors import classify_att_error, classify_error_text
from devices.ble.clock import SYSTEM_CLOCK, Clock
from devices.ble.errors import (
    AdapterUnavailableError,
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionTimeoutError,
    DeviceNotFoundError,
    OutOfConnectionSlotsError,
)
from devices.ble.models import DiscoveredDevice, normalize_address
from devices.ble.transport import ConnectionManager
from devices.ble.uuids import normalize_uuid, short_uuid

_log = logging.getLogger(__name__)

ScanningMode = Literal["active", "passive"]


def map_bleak_error(exc: BaseException, address: str | None = None) -> BleTransportError:
    """Translate an exception raised by bleak (or under it: D-Bus, asyncio) into our typed error."""
    if isinstance(exc, BleTransportError):
        return exc
    error_type: type[BleTransportError]
    # bleak-retry-connector and habluetooth raise this subclass of BleakError; match by name so the
    # adapter works with or without them installed.
    if type(exc).__name__ == "BleakOutOfConnectionSlotsError":
        error_type = OutOfConnectionSlotsError
    elif isinstance(exc, BleakDeviceNotFoundError):
        error_type = DeviceNotFoundError
    elif isinstance(exc, BleakCharacteristicNotFoundError):
        error_type = CharacteristicNotFoundError
    elif isinstance(exc, BleakGATTProtocolError):
        error_type = classify_att_error(int(exc.code))
    elif isinstance(exc, BleakBluetoothNotAvailableError):
        error_type = AdapterUnavailableError
    elif isinstance(exc, BleakDBusError):
        error_type = classify_error_text(f"{exc.dbus_error} {exc.dbus_error_details or ''}")
    elif isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError since Python 3.11
        error_type = ConnectionTimeoutError
    elif isinstance(exc, EOFError):  # dbus-fast: the bus connection closed under a call (bluetoothd restart)
        error_type = BleTransportError
    elif isinstance(exc, OSError):  # no system bus socket, permission denied on it
        error_type = AdapterUnavailableError
    else:
        error_type = classify_error_text(str(exc))
    error = error_type(f"{type(exc).__name__}: {exc}", address=address)
    error.__cause__ = exc
    return error


def passive_scan_patterns(service_uuids: frozenset[str]) -> list[OrPattern]:
    """BlueZ advertisement-monitor patterns matching the service UUID lists that advertise these services.

    Passive scanning on BlueZ needs or_patterns instead of a UUID filter; a pattern matches an AD structure of
    the given type whose data starts with the bytes (Core Supplement v11, Part A, 1.1: UUIDs little-endian).
    """
    patterns: list[OrPattern] = []
    for uuid in sorted(service_uuids):
        alias = short_uuid(uuid)
        if alias is not None:
            data = alias.to_bytes(2, "little")
            types = (
                AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID16,
                AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID16,
            )
        else:
            data = bytes.fromhex(uuid.replace("-", ""))[::-1]
            types = (
                AdvertisementDataType.COMPLETE_LIST_SERVICE_UUID128,
                AdvertisementDataType.INCOMPLETE_LIST_SERVICE_UUID128,
            )
        patterns.extend(OrPattern(0, ad_type, data) for ad_type in types)
    return patterns


class BleakConnection:
    """`BackendConnection` over a connected `BleakClient`."""

    def __init__(self, client: BleakClient, address: str, rssi: int | None) -> None:
        self._client = client
        self._address = address
        self._rssi = rssi

    @property
    def address(self) -> str:
        return self._address

    @property
    def rssi(self) -> int | None:
        return self._rssi

    @property
    def is_connected(self) -> bool:
        return self._client.is_connected

    async def start_notify(self, char_uuid: str, callback: RawNotificationCallback) -> None:
        # BlueZ StartNotify writes the CCCD for notify or indicate, whichever the characteristic has, and
        # confirms indications itself; the callback runs on the loop for each value.
        def on_value(_characteristic: BleakGATTCharacteristic, data: bytearray) -> None:
            callback(bytes(data))

        try:
            await self._client.start_notify(char_uuid, on_value)
        except Exception as exc:
            raise map_bleak_error(exc, self._address) from exc

    async def stop_notify(self, char_uuid: str) -> None:
        try:
            await self._client.stop_notify(char_uuid)
        except Exception as exc:
            raise map_bleak_error(exc, self._address) from exc

    async def read(self, char_uuid: str) -> bytes:
        try:
            return bytes(await self._client.read_gatt_char(char_uuid))
        except Exception as exc:
            raise map_bleak_error(exc, self._address) from exc

    async def disconnect(self) -> None:
        try:
            await self._client.disconnect()
        except Exception as exc:
            raise map_bleak_error(exc, self._address) from exc


class BleakBackend:
    """`BleBackend` on one local adapter through bleak."""

    def __init__(
        self,
        *,
        adapter: str | None = None,
        scanning_mode: ScanningMode = "active",
        pair: bool = False,
        use_cached_services: bool = False,
        scanner_cls: type[BleakScanner] = BleakScanner,
        client_cls: type[BleakClient] = BleakClient,
    ) -> None:
        self._adapter = adapter
        self._scanning_mode = scanning_mode
        self._pair = pair
        self._use_cached_services = use_cached_services
        self._scanner_cls = scanner_cls
        self._client_cls = client_cls
        # The BLEDevice (BlueZ object path) and RSSI of each address's latest advertisement.
        self._seen: dict[str, tuple[BLEDevice, int | None]] = {}

    async def scan(self, *, service_uuids: frozenset[str], timeout: float) -> list[DiscoveredDevice]:
        bluez: BlueZScannerArgs = self._bluez_args()
        options: BleakScanner.ExtraArgs = {"scanning_mode": self._scanning_mode, "bluez": bluez}
        if self._scanning_mode == "passive":
            # bleak does not filter UUIDs in passive mode; patterns do, and the transport filters afterwards
            bluez["or_patterns"] = list(passive_scan_patterns(service_uuids))
        elif service_uuids:
            options["service_uuids"] = sorted(service_uuids)
        try:
            found = await self._scanner_cls.discover(timeout=timeout, return_adv=True, **options)
        except Exception as exc:
            raise map_bleak_error(exc) from exc
        return [self._remember(device, advertisement) for device, advertisement in found.values()]

    async def connect(self, address: str, *, timeout: float, on_disconnect: Callable[[], None]) -> BackendConnection:
        device, rssi = await self._device_for(address, timeout)

        def disconnected(_client: BleakClient) -> None:
            on_disconnect()

        client = self._client_cls(
            device,
            disconnected_callback=disconnected,
            timeout=timeout,
            pair=self._pair,
            bluez=self._client_args(),
        )
        connect_kwargs: dict[str, Any] = {}
        if self._use_cached_services:
            connect_kwargs["dangerous_use_bleak_cache"] = True
        try:
            await client.connect(**connect_kwargs)
        except Exception as exc:
            error = map_bleak_error(exc, address)
            if isinstance(error, DeviceNotFoundError):
                # BlueZ dropped the device object (not seen for ~30 s); locate it afresh next time.
                self._seen.pop(address, None)
            raise error from exc
        return BleakConnection(client, address, rssi)

    async def close(self) -> None:
        self._seen.clear()

    async def _device_for(self, address: str, timeout: float) -> tuple[BLEDevice, int | None]:
        seen = self._seen.get(address)
        if seen is not None:
            return seen
        rssi: list[int] = []

        def matches(device: BLEDevice, advertisement: AdvertisementData) -> bool:
            if normalize_address(device.address) != address:
                return False
            rssi.append(advertisement.rssi)
            return True

        try:
            device = await self._scanner_cls.find_device_by_filter(matches, timeout=timeout, bluez=self._bluez_args())
        except Exception as exc:
            raise map_bleak_error(exc, address) from exc
        if device is None:
            raise DeviceNotFoundError("not advertising", address=address)
        located = (device, rssi[-1] if rssi else None)
        self._seen[address] = located
        return located

    def _remember(self, device: BLEDevice, advertisement: AdvertisementData) -> DiscoveredDevice:
        address = normalize_address(device.address)
        self._seen[address] = (device, advertisement.rssi)
        return DiscoveredDevice(
            address=address,
            name=advertisement.local_name or device.name,
            rssi=advertisement.rssi,
            service_uuids=tuple(normalize_uuid(uuid) for uuid in advertisement.service_uuids),
        )

    def _bluez_args(self) -> BlueZScannerArgs:
        return {"adapter": self._adapter} if self._adapter else {}

    def _client_args(self) -> BlueZClientArgs:
        return {"adapter": self._adapter} if self._adapter else {}


class BleakTransport(ConnectionManager):
    """The BLE transport on a real adapter. One connection attempt at a time by default: BlueZ serialises LE
    connection creation per controller and answers overlapping attempts with org.bluez.Error.InProgress."""

    def __init__(
        self,
        *,
        adapter: str | None = None,
        policy: RetryPolicy | None = None,
        max_concurrent_connects: int = 1,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        scanning_mode: ScanningMode = "active",
        pair: bool = False,
        use_cached_services: bool = False,
        scanner_cls: type[BleakScanner] = BleakScanner,
        client_cls: type[BleakClient] = BleakClient,
    ) -> None:
        super().__init__(
            BleakBackend(
                adapter=adapter,
                scanning_mode=scanning_mode,
                pair=pair,
                use_cached_services=use_cached_services,
                scanner_cls=scanner_cls,
                client_cls=client_cls,
            ),
            policy=policy,
            max_concurrent_connects=max_concurrent_connects,
            clock=clock,
            rng=rng,
        )
