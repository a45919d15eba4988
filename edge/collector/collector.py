"""The wearable collector: keeps a supervised BLE link to every assigned device and turns notifications into
samples and device status events.

    registry (assigned devices) --sync--> transport.connect(address, subscriptions)      (one link per device)
    notification bytes --devices.gatt.decode--> Readings --samples.convert--> VitalSample --> on_sample (batcher)
                                                                                          --> observer (alerting)
    link events (connected, disconnected, gave up) and battery changes --> DeviceStatus --> on_status (outbox)

Runs on the event loop of the transport; the same code serves a real adapter (BleakTransport) and the simulated
ward (SimulatedTransport). A malformed notification is counted and logged (rate-limited per device) and never
affects other devices. Readings are handed on as soon as they are decoded, so a link that drops loses nothing
already received: it sits in the batcher or the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

from devices.ble import BleTransport, BleTransportError, Clock, LinkEvent, LinkEventKind, NotificationHandler
from devices.ble.uuids import BATTERY_LEVEL
from devices.gatt import GattDecodeError, decode
from edge.collector.registry import DeviceRecord, DeviceRegistry
from edge.collector.samples import TimePolicy, convert
from edge.metrics import Registry
from proto.messages import DeviceState, DeviceStatus
from proto.vitals import VitalSample

log = logging.getLogger(__name__)

SampleSink = Callable[[VitalSample], None]
StatusSink = Callable[[DeviceStatus, dt.datetime], None]

# DeviceStatus.rssi_dbm bounds (proto.messages): what a BLE controller can report (Core v5.4 Vol 4 Part E 7.5.4).
_RSSI_MIN: Final = -127
_RSSI_MAX: Final = 20


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    time_policy: TimePolicy = field(default_factory=TimePolicy)
    lost_retry_s: float = 300.0  # a link that gave up is started again after this long (transport clock)
    decode_log_interval_s: float = 60.0  # at most one decode-error log line per device this often


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the status page shows of one device."""

    device_id: str
    address: str
    device_type: str
    patient_id: str | None
    state: str  # connecting, connected, backing_off, lost, disconnected
    battery_pct: float | None
    rssi_dbm: int | None
    last_seen: dt.datetime | None
    notifications: int
    samples: int
    decode_errors: int
    simulated: bool


class _Device:
    """The collector's mutable view of one supervised device (event-loop thread only)."""

    __slots__ = ("battery", "connected", "decode_errors", "last_log", "last_seen", "notifications", "record",
                 "rssi", "samples", "state", "suppressed", "tasks")

    def __init__(self, record: DeviceRecord) -> None:
        self.record = record
        self.state = "connecting"
        self.connected = False
        self.battery: float | None = None
        self.rssi: int | None = None
        self.last_seen: float | None = None
        self.notifications = 0
        self.samples = 0
        self.decode_errors = 0
        self.last_log: float | None = None
        self.suppressed = 0
        self.tasks: set[asyncio.Task[None]] = set()


class Collector:
    """Supervises the registry's assigned devices through one BLE transport."""

    def __init__(
        self, transport: BleTransport, registry: DeviceRegistry, *, on_sample: SampleSink, on_status: StatusSink,
        clock: Clock, metrics: Registry | None = None, observer: SampleSink | None = None,
        config: CollectorConfig | None = None,
    ) -> None:
        self._transport = transport
        self._registry = registry
        self._on_sample = on_sample
        self._on_status = on_status
        self._observer = observer
        self._clock = clock
        self.config = config or CollectorConfig()
        self._devices: dict[str, _Device] = {}
        self._sync_lock = asyncio.Lock()
        self._sync_wanted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._remove_handler: Callable[[], None] | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected_count = 0  # read from other threads (the uplink's heartbeat): a plain int is atomic
        self._init_metrics(metrics or Registry())

    # --- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow link events, connect every assigned device, and keep following the registry."""
        self._loop = asyncio.get_running_loop()
        self._remove_handler = self._transport.add_event_handler(self._on_link_event)
        await self.sync()
        self._sync_task = asyncio.create_task(self._sync_loop(), name="collector-sync")

    def request_sync(self) -> None:
        """Reconcile with the registry soon; callable from any thread (registry listeners, command handlers)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing: nothing left to sync
            loop.call_soon_threadsafe(self._sync_wanted.set)

    async def stop(self) -> None:
        """Let every device go (each connected one reported disconnected) and stop following events."""
        self._stopping = True
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self._remove_handler is not None:
            self._remove_handler()
        async with self._sync_lock:
            await asyncio.gather(*(self._release(address, "stopped") for address in list(self._devices)))
        log.info("collector.stopped", extra={"devices": len(self._devices)})

    # --- views --------------------------------------------------------------------------------------------

    def devices(self) -> list[DeviceView]:
        """Every supervised device, by patient then device id (event-loop thread)."""
        views = [
            DeviceView(device_id=d.record.device_id, address=d.record.address, device_type=d.record.device_type,
                       patient_id=d.record.patient_id, state=d.state, battery_pct=d.battery, rssi_dbm=d.rssi,
                       last_seen=None if d.last_seen is None else _utc(d.last_seen), notifications=d.notifications,
                       samples=d.samples, decode_errors=d.decode_errors, simulated=d.record.simulated)
            for d in list(self._devices.values())
        ]
        return sorted(views, key=lambda v: (v.patient_id or "", v.device_id))

    # --- registry reconciliation -----------------------------------------------------------------------

    async def sync(self) -> None:
        """Connect newly assigned devices, release unassigned ones, pick up reassignments."""
        async with self._sync_lock:
            if self._stopping:
                return
            wanted = {record.address: record for record in self._registry.assigned()}
            for address, device in list(self._devices.items()):
                record = wanted.get(address)
                if record is None or record.characteristics != device.record.characteristics:
                    await self._release(address, "unassigned" if record is None else "characteristics_changed")
                elif record != device.record:
                    reassigned = record.patient_id != device.record.patient_id
                    device.record = record
                    if reassigned and device.connected:
                        self._emit(device, "connected")  # the cloud learns the new wearer at once
            for address, record in wanted.items():
                if address not in self._devices:
                    await self._supervise(record)
            self._m_registered.set(len(self._devices))

    async def _sync_loop(self) -> None:
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("collector.sync_failed")

    async def _supervise(self, record: DeviceRecord) -> None:
        device = _Device(record)
        self._devices[record.address] = device
        handler = self._handler(device)
        try:
            await self._transport.connect(record.address, subscriptions={u: handler for u in record.characteristics},
                                          wait=False)
        except (BleTransportError, ValueError) as exc:
            device.state = "lost"
            log.error("collector.supervise_failed", extra={"device_id": record.device_id, "error": str(exc)})
            return
        log.info("collector.supervising", extra={"device_id": record.device_id, "device_type": record.device_type,
                                                 "patient_id": record.patient_id})

    async def _release(self, address: str, reason: str) -> None:
        device = self._devices.pop(address, None)
        if device is None:
            return
        for task in list(device.tasks):
            task.cancel()
        was_connected = device.connected
        device.connected = False
        if was_connected:
            self._count_connected(-1)
        try:
            await self._transport.disconnect(address)
        except BleTransportError as exc:
            log.warning("collector.disconnect_failed", extra={"device_id": device.record.device_id, "error": str(exc)})
        device.state = "disconnected"
        if was_connected:
            self._emit(device, "disconnected")
        log.info("collector.released", extra={"device_id": device.record.device_id, "reason": reason})

    # --- notifications -----------------------------------------------------------------------------------

    def _handler(self, device: _Device) -> NotificationHandler:
        policy = self.config.time_policy
        device_type = device.record.device_type
        notifications = self._m_notifications
        readings_total = self._m_readings

        def on_notification(characteristic: str, payload: bytes, at: float) -> None:
            device.notifications += 1
            device.last_seen = at
            notifications.inc(device_type=device_type)
            try:
                readings = decode(characteristic, payload)
            except GattDecodeError as exc:
                self._decode_failed(device, characteristic, payload, exc, at)
                return
            record = device.record
            if not readings or record.patient_id is None:
                return
            readings_total.inc(len(readings), device_type=device_type)
            converted = convert(readings, patient_id=record.patient_id, device_id=record.device_id,
                                received=_utc(at), simulated=record.simulated, policy=policy)
            for sample in converted.samples:
                try:
                    self._on_sample(sample)
                except ValueError as exc:  # refused by the batcher (proto.vocabulary.UnknownKindError is a KeyError)
                    self._m_refused.inc()
                    log.warning("collector.sample_refused", extra={"device_id": record.device_id,
                                                                   "kind": sample.kind, "error": str(exc)})
                    continue
                device.samples += 1
                if self._observer is not None:
                    self._observer(sample)
            self._m_samples.inc(len(converted.samples))
            if converted.battery_pct is not None and converted.battery_pct != device.battery:
                device.battery = converted.battery_pct
                if device.connected:
                    self._emit(device, "connected")

        return on_notification

    def _decode_failed(self, device: _Device, characteristic: str, payload: bytes, exc: GattDecodeError,
                       at: float) -> None:
        device.decode_errors += 1
        self._m_decode_errors.inc(device_type=device.record.device_type)
        interval = self.config.decode_log_interval_s
        if device.last_log is not None and at - device.last_log < interval:
            device.suppressed += 1
            return
        log.warning("collector.decode_failed", extra={
            "device_id": device.record.device_id, "device_type": device.record.device_type,
            "characteristic": characteristic, "error": str(exc), "payload_hex": payload[:32].hex(),
            "suppressed_since_last": device.suppressed})
        device.last_log, device.suppressed = at, 0

    # --- link events -------------------------------------------------------------------------------------

    def _on_link_event(self, event: LinkEvent) -> None:
        device = self._devices.get(event.address)
        if device is None or self._stopping:
            return
        if event.kind is LinkEventKind.CONNECTED:
            if not device.connected:
                self._count_connected(1)
            device.connected, device.state, device.last_seen = True, "connected", event.at
            if event.rssi is not None:
                device.rssi = event.rssi
            self._spawn(device, self._announce(device))
        elif event.kind is LinkEventKind.DISCONNECTED:
            if device.connected:
                self._count_connected(-1)
                device.connected, device.state = False, "disconnected"
                self._emit(device, "disconnected")
        elif event.kind is LinkEventKind.RECONNECTING:
            device.state = "backing_off"
        elif event.kind is LinkEventKind.GAVE_UP:
            if device.connected:
                self._count_connected(-1)
            device.connected, device.state = False, "lost"
            log.warning("collector.device_lost", extra={"device_id": device.record.device_id,
                                                        "error": type(event.error).__name__,
                                                        "retry_in_s": self.config.lost_retry_s})
            self._emit(device, "lost")
            self._spawn(device, self._retry_later(device))
        elif event.kind is LinkEventKind.RSSI and event.rssi is not None:
            device.rssi = event.rssi

    async def _announce(self, device: _Device) -> None:
        """Read the Battery Level (notified only on change, BAS 1.0 section 3.1), then report the connection."""
        if BATTERY_LEVEL in device.record.characteristics:
            try:
                raw = await self._transport.read(device.record.address, BATTERY_LEVEL)
                for reading in decode(BATTERY_LEVEL, raw):
                    device.battery = min(100.0, max(0.0, reading.value))
            except (BleTransportError, GattDecodeError) as exc:
                log.info("collector.battery_unread", extra={"device_id": device.record.device_id, "error": str(exc)})
        if device.connected and self._devices.get(device.record.address) is device:
            self._emit(device, "connected")

    async def _retry_later(self, device: _Device) -> None:
        await self._clock.sleep(self.config.lost_retry_s)
        if self._devices.get(device.record.address) is not device or self._stopping:
            return
        device.state = "connecting"
        try:
            await self._transport.connect(device.record.address, wait=False)
        except BleTransportError as exc:
            log.warning("collector.retry_failed", extra={"device_id": device.record.device_id, "error": str(exc)})

    def _spawn(self, device: _Device, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        device.tasks.add(task)
        task.add_done_callback(device.tasks.discard)

    def _emit(self, device: _Device, state: DeviceState) -> None:
        record = device.record
        rssi = device.rssi if device.rssi is not None and _RSSI_MIN <= device.rssi <= _RSSI_MAX else None
        status = DeviceStatus(device_id=record.device_id, state=state, patient_id=record.patient_id,
                              device_type=record.device_type, battery_pct=device.battery, rssi_dbm=rssi,
                              last_seen=None if device.last_seen is None else _utc(device.last_seen))
        try:
            self._on_status(status, _utc(self._clock.now()))
        except Exception:
            log.exception("collector.status_failed", extra={"device_id": record.device_id, "state": state})

    def _count_connected(self, delta: int) -> None:
        self.connected_count += delta
        self._m_connected.set(self.connected_count)

    # --- metrics -----------------------------------------------------------------------------------------

    def _init_metrics(self, registry: Registry) -> None:
        self._m_connected = registry.gauge("telemed_devices_connected", "Wearables with a live BLE link")
        self._m_registered = registry.gauge("telemed_devices_supervised", "Assigned wearables the collector follows")
        self._m_notifications = registry.counter("telemed_collector_notifications_total",
                                                 "GATT notifications and indications received", ("device_type",))
        self._m_readings = registry.counter("telemed_collector_readings_decoded_total",
                                            "Readings decoded from GATT notifications", ("device_type",))
        self._m_decode_errors = registry.counter("telemed_collector_decode_errors_total",
                                                 "Notifications that did not decode (malformed GATT bytes)",
                                                 ("device_type",))
        self._m_samples = registry.counter("telemed_collector_samples_total",
                                           "Vital-sign samples handed to the batcher")
        self._m_refused = registry.counter("telemed_collector_samples_refused_total",
                                           "Samples the batcher refused (should stay 0)")


def _utc(epoch_s: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC)
