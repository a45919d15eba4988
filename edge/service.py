"""The edge service's composition root: everything built from EdgeSettings, run on one asyncio loop.

    wearables --BLE--> Collector --samples--> VitalsBatcher --batches--> Outbox --Uplink (MQTT)--> cloud
                          |  \\--device status events-----------------> Outbox (events lane)
                          '--samples--> LocalAlerting --alerts--------> Outbox (alerts lane, sent first)
                                             '--while offline--> local webhook, status page
    modalities --DICOM--> DicomService --manifests--> Outbox (bulk lane); instances --STOW-RS--> cloud
    cloud --commands--> CommandRegistry: assign/unassign_device (registry), configure (alerting), ping
    HttpServer: /, /healthz, /metrics

Threads: the uplink, the outbox writer, the batcher timer, the DICOM server and its helpers, and the webhook
sender run their own threads; the collector, the simulated ward, local alerting's evaluation and the HTTP
server run on the loop. Shutdown (SIGINT/SIGTERM) goes in dependency order: HTTP, collectors, the batcher
(its last batch is flushed), alerting (evaluated and saved), DICOM, the uplink, and last the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from devices.ble import SYSTEM_CLOCK, BleTransport, Clock, RetryPolicy
from edge.alerting.commands import register_alerting_commands
from edge.alerting.local import LocalAlerting, LocalAlertingConfig
from edge.alerting.state import AlertingStore
from edge.alerting.webhook import WebhookConfig, WebhookNotifier
from edge.collector.collector import Collector, CollectorConfig
from edge.collector.commands import register_device_commands
from edge.collector.registry import DeviceRegistry
from edge.collector.samples import TimePolicy
from edge.collector.simulation import SimulatedWard, WardOptions
from edge.dicom.completion import pseudonymous_patient_id
from edge.dicom.forwarder import ForwarderConfig
from edge.dicom.models import UploadState
from edge.dicom.scp import ScpConfig
from edge.dicom.service import DicomService, DicomServiceConfig
from edge.dicom.signing import RequestSigner
from edge.dicom.store import StoreLimits
from edge.http import Health, HttpServer, LaneView, StatusSnapshot, StudyView
from edge.metrics import Registry
from edge.outbox import EvictionReport, Outbox, OutboxError, OutboxPolicy
from edge.settings import EdgeSettings
from edge.uplink import CommandRegistry, LinkState, Uplink, VitalsBatcher
from edge.video import VideoCalls, event_sender, register_video
from edge.video.uploader import RecordingUploader, recording_pipeline
from proto.messages import DeviceStatus, DicomManifest, Event
from proto.schema import ValidationError
from proto.vitals import VitalSample

log = logging.getLogger(__name__)

# While the uplink's first connection attempt is under way, alerting treats it as up for at most this long.
_STARTUP_GRACE_S: Final = 15.0
_MANIFEST_DURABLE_S: Final = 30.0
_RECENT_STUDIES: Final = 10


class ServiceError(Exception):
    """The service cannot start as configured (a component failed to start)."""


def _version() -> str | None:
    try:
        return importlib.metadata.version("telemed")
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass
class _UplinkWatch:
    """Whether the cloud is reachable, for alerting (strict) and /healthz (with a grace period)."""

    uplink: Uplink
    started: float
    attempts: Callable[[], float]  # connection attempts so far (the uplink's telemed_uplink_connects_total)
    last_up: float | None = None

    def poll(self) -> None:
        if self.uplink.state is LinkState.CONNECTED:
            self.last_up = time.monotonic()

    def up_for_alerting(self) -> bool:
        """Strict: connected now; only the very first connection attempt is given the benefit of the doubt."""
        state = self.uplink.state
        if state is LinkState.CONNECTED:
            return True
        if self.last_up is not None or time.monotonic() - self.started >= _STARTUP_GRACE_S:
            return False
        attempts = self.attempts()
        return attempts == 0 or (attempts == 1 and state is LinkState.CONNECTING)

    def down_for(self) -> float | None:
        self.poll()
        if self.uplink.state is LinkState.CONNECTED:
            return None
        return time.monotonic() - (self.last_up if self.last_up is not None else self.started)


class EdgeService:
    """One edge node. `await run(stop)` starts everything, waits for `stop`, then shuts down in order."""

    def __init__(self, settings: EdgeSettings, *, base_dir: Path, ward: WardOptions | None = None,
                 transport: BleTransport | None = None) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self.metrics = Registry()
        self._ward_options = ward if ward is not None else self._ward_from_settings()
        self._transport_override = transport
        self._started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self.outbox: Outbox | None = None
        self.registry: DeviceRegistry | None = None
        self.batcher: VitalsBatcher | None = None
        self.alerting: LocalAlerting | None = None
        self._alerting_store: AlertingStore | None = None
        self._notifier: WebhookNotifier | None = None
        self.collector: Collector | None = None
        self.ward: SimulatedWard | None = None
        self.transport: BleTransport | None = None
        self.uplink: Uplink | None = None
        self._watch: _UplinkWatch | None = None
        self.dicom: DicomService | None = None
        self.http: HttpServer | None = None
        self.video: VideoCalls | None = None
        self._recording_uploader: RecordingUploader | None = None
        self._clock: Clock = SYSTEM_CLOCK
        self._stopped = False

    # --- lifecycle --------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.start()
            await stop.wait()
            log.info("service.stopping")
        finally:
            await self.stop()

    async def start(self) -> None:
        s = self.settings
        log.info("service.starting", extra={"edge_id": s.edge.id, "site": s.edge.site,
                                            "ble_backend": "simulated" if self._ward_options else
                                            s.ble.effective_backend, "dicom": s.dicom.enabled})
        signer = s.keys.signing_key()
        s.keys.cloud_key()  # fail now, not in the uplink thread, when the bundle lacks it
        self.outbox = Outbox(s.outbox.path, edge_id=s.edge.id, signer=signer,
                             policy=OutboxPolicy.from_settings(s.outbox), on_eviction=self._on_eviction)
        self.outbox.register_metrics(self.metrics)
        self.registry = DeviceRegistry(self._path(s.ble.registry_path))
        commands = CommandRegistry()
        register_device_commands(commands, self.registry)
        self.batcher = VitalsBatcher(self.outbox.enqueue, max_samples=s.outbox.vitals_batch_max_samples,
                                     max_age_s=s.outbox.vitals_batch_max_age_s)
        self.batcher.start()
        self.transport, self._clock = self._build_transport()
        self.uplink = Uplink.from_settings(s, self.outbox, commands=commands, metrics=self.metrics,
                                           devices_connected=self._devices_connected)
        attempts = self.metrics.counter("telemed_uplink_connects_total", "Connection attempts by outcome",
                                        ("outcome",))
        self._watch = _UplinkWatch(self.uplink, time.monotonic(), lambda: attempts.value(outcome="attempt"))
        if s.alerting.enabled:
            self._start_alerting(commands)
        if s.video.enabled:
            send = event_sender(self.outbox.enqueue)  # answers and candidates go up as signal events
            recording = recording_pipeline(s, base_dir=self.base_dir, signer=RequestSigner(s.edge.id, signer))
            spool, self._recording_uploader = recording if recording is not None else (None, None)
            self.video = VideoCalls(s.video, send=send, spool=spool,
                                    on_sealed=self._recording_uploader.wake if self._recording_uploader else None)
            if self._recording_uploader is not None:
                self._recording_uploader.start()
            register_video(commands, calls=self.video, loop=asyncio.get_running_loop(), send=send)
        self.uplink.start()
        if s.dicom.enabled:
            await self._start_dicom(signer)
        if self.transport is not None:
            await self._start_collector()
        self._spawn(self._housekeeping(), "edge-housekeeping")
        if s.http.enabled:
            self.http = HttpServer(self, host=s.http.host, port=s.http.port, language=s.http.language)
            await self.http.start()
        log.info("service.started", extra={"devices": len(self.registry.assigned()),
                                           "http_port": self.http.port if self.http else None})

    async def stop(self) -> None:
        """Stop in dependency order; safe to call after a partial start, and twice."""
        if self._stopped:
            return
        self._stopped = True
        if self.http is not None:
            await self.http.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.collector is not None:
            await self.collector.stop()
        if self.video is not None:
            await self.video.close()  # before the uplink and the outbox stop
        if self._recording_uploader is not None:
            await asyncio.to_thread(self._recording_uploader.stop)
        if self.ward is not None:
            await self.ward.aclose()
        elif self.transport is not None:
            await self.transport.close()
        samples = 0
        if self.batcher is not None:
            self.batcher.stop()  # hands the open batch to the outbox
            samples = self.batcher.samples
        if self.alerting is not None:
            self.alerting.close()
        if self._notifier is not None:
            await asyncio.to_thread(self._notifier.stop)
        if self.dicom is not None:
            await asyncio.to_thread(self.dicom.stop)
        if self.uplink is not None:
            await asyncio.to_thread(self.uplink.stop)
        depth = None
        if self.outbox is not None:
            with contextlib.suppress(OutboxError):
                self.outbox.flush(10)
            depth = self.outbox.depth()
            self.outbox.close()
        if self.registry is not None:
            self.registry.close()
        if self._alerting_store is not None:
            self._alerting_store.close()
        log.info("service.stopped", extra={"samples_batched": samples, "outbox_depth": depth})

    # --- construction -----------------------------------------------------------------------------------

    def _path(self, path: Path) -> Path:
        return path if path.is_absolute() else self.base_dir / path.expanduser()

    def _file(self, name: str) -> Path | None:
        return None if not name else self._path(Path(name))

    def _ward_from_settings(self) -> WardOptions | None:
        ble = self.settings.ble
        if ble.effective_backend != "simulated":
            return None
        return WardOptions(ble.sim_patients, scenario=ble.sim_scenario, seed=ble.sim_seed, speed=ble.sim_speed,
                           time_scale=ble.sim_time_scale)

    def _build_transport(self) -> tuple[BleTransport | None, Clock]:
        ble = self.settings.ble
        if self._transport_override is not None:
            return self._transport_override, SYSTEM_CLOCK
        if self._ward_options is not None:
            self.ward = SimulatedWard(self._ward_options, patient_prefix=self.settings.edge.id)
            return self.ward.transport, self.ward.clock
        if ble.effective_backend == "none":
            return None, SYSTEM_CLOCK
        from devices.ble.bleak_adapter import BleakTransport  # only real boxes need bleak

        policy = RetryPolicy(max_attempts=None, max_delay=ble.retry_max_delay_s, connect_timeout=ble.connect_timeout_s)
        return BleakTransport(adapter=ble.adapter or None, policy=policy,
                              max_concurrent_connects=ble.max_concurrent_connects, pair=ble.pair,
                              use_cached_services=ble.use_cached_services), SYSTEM_CLOCK

    def _start_alerting(self, commands: CommandRegistry) -> None:
        s = self.settings
        a = s.alerting
        assert self.outbox is not None and self._watch is not None
        if a.webhook_url:
            self._notifier = WebhookNotifier(WebhookConfig(
                url=a.webhook_url, secret=a.webhook_secret, timeout_s=a.webhook_timeout_s,
                max_attempts=a.webhook_max_attempts, backoff_initial_s=a.webhook_backoff_initial_s,
                backoff_max_s=a.webhook_backoff_max_s, queue=a.webhook_queue), metrics=self.metrics)
            self._notifier.start()
        self._alerting_store = AlertingStore(self._path(a.state_path))
        self.alerting = LocalAlerting(
            store=self._alerting_store, enqueue=self.outbox.enqueue, uplink_connected=self._watch.up_for_alerting,
            clock=self._clock.now, edge={"id": s.edge.id, "site": s.edge.site, "name": s.edge.name},
            config=LocalAlertingConfig(news2_medium=a.news2_medium, news2_high=a.news2_high,
                                       notify_when=a.webhook_when),
            notifier=self._notifier, metrics=self.metrics)
        self.alerting.start()
        register_alerting_commands(commands, self.alerting)

    async def _start_dicom(self, signer: Any) -> None:
        d = self.settings.dicom
        scp = ScpConfig(ae_title=d.ae_title, host=d.host, port=d.port, allowed_calling_aets=d.allowed_calling_aets,
                        tls_certfile=self._file(d.tls_certfile), tls_keyfile=self._file(d.tls_keyfile),
                        tls_cafile=self._file(d.tls_cafile), workers=d.scp_workers)
        config = DicomServiceConfig(storage_dir=d.storage_dir, scp=scp,
                                    limits=StoreLimits(max_bytes=d.max_bytes or None),
                                    study_complete_timeout_s=d.study_complete_timeout_s,
                                    retention_days=d.retention_days)
        forwarder = None
        request_signer = None
        if d.stow_url:
            forwarder = ForwarderConfig(base_url=d.stow_url, verify=str(self._file(d.stow_verify)) if d.stow_verify
                                        else True)
            request_signer = RequestSigner(self.settings.edge.id, signer)
        self.dicom = DicomService(config, on_manifest=self._on_manifest, forwarder=forwarder, signer=request_signer,
                                  registry=self.metrics, patient_id_of=pseudonymous_patient_id)
        try:
            await asyncio.to_thread(self.dicom.start)
        except Exception as exc:
            raise ServiceError(f"the DICOM SCP could not start on {d.host}:{d.port}: {exc}") from exc

    async def _start_collector(self) -> None:
        assert self.transport is not None and self.registry is not None and self.batcher is not None
        ble = self.settings.ble
        if self.ward is not None:
            self.registry.seed(self.ward.records())
        policy = TimePolicy(device_tz=ble.device_timezone, max_backfill_s=ble.max_backfill_s,
                            max_clock_skew_s=ble.max_clock_skew_s)
        self.collector = Collector(
            self.transport, self.registry, on_sample=self.batcher.add_sample, on_status=self._on_status,
            clock=self._clock, metrics=self.metrics,
            observer=self.alerting.observe if self.alerting is not None else None,
            config=CollectorConfig(time_policy=policy, lost_retry_s=ble.lost_retry_s))
        self.registry.add_listener(self.collector.request_sync)
        await self.collector.start()
        if self.ward is not None:
            self._spawn(self.ward.run(self._on_manual_sample), "sim-ward")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    # --- sinks ------------------------------------------------------------------------------------------

    def _on_status(self, status: DeviceStatus, at: dt.datetime) -> None:
        assert self.outbox is not None
        event = Event(event_id=uuid.uuid4(), event_type="device_status", at=at, device_status=status)
        try:
            self.outbox.enqueue(event)
        except (OutboxError, ValidationError) as exc:
            log.error("service.status_not_queued", extra={"device_id": status.device_id, "error": str(exc)})

    def _on_manual_sample(self, sample: VitalSample) -> None:
        """Charted observations (the simulated nurse): stored and evaluated like measured ones."""
        assert self.batcher is not None
        self.batcher.add_sample(sample)
        if self.alerting is not None:
            self.alerting.observe(sample)

    def _on_manifest(self, manifest: DicomManifest) -> None:
        """Called by the completion watcher: returns once the manifest is durable (else it is retried)."""
        assert self.outbox is not None
        self.outbox.enqueue(manifest).result(_MANIFEST_DURABLE_S)

    def _on_eviction(self, report: EvictionReport) -> None:
        if self.alerting is not None:
            self.alerting.outbox_evicted(report)

    def _devices_connected(self) -> int | None:
        return None if self.collector is None else self.collector.connected_count

    # --- periodic work ------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Evaluate alarms, save their state, notice registry edits made by the CLI, track the uplink."""
        a, ble = self.settings.alerting, self.settings.ble
        next_eval = next_poll = time.monotonic()
        next_save = time.monotonic() + a.save_interval_s
        last_save = 0.0
        while True:
            now = time.monotonic()
            if self._watch is not None:
                self._watch.poll()
            if now >= next_eval:
                next_eval = now + a.evaluate_interval_s
                if self.alerting is not None:
                    try:
                        self.alerting.evaluate()
                    except Exception:
                        log.exception("service.alerting_failed")
                    if now >= next_save or (self.alerting.dirty and now - last_save >= 1.0):
                        next_save, last_save = now + a.save_interval_s, now
                        await asyncio.to_thread(self.alerting.save)
            if now >= next_poll:
                next_poll = now + ble.registry_poll_s
                if self.registry is not None and self.collector is not None and self.registry.refresh():
                    log.info("service.registry_changed_externally")
                    self.collector.request_sync()
            await asyncio.sleep(max(0.05, min(next_eval, next_poll) - time.monotonic()))

    # --- status (edge.http.StatusSource) -------------------------------------------------------------------

    def health(self) -> Health:
        problems: list[str] = []
        uplink_state = self.uplink.state.value if self.uplink is not None else "stopped"
        down_for = self._watch.down_for() if self._watch is not None else None
        if down_for is not None and down_for > self.settings.http.uplink_grace_s:
            problems.append(f"uplink down for {down_for:.0f} s")
        for task in self._tasks:
            if task.done() and not task.cancelled():
                problems.append(f"{task.get_name()} stopped")
        if self.dicom is not None and self.settings.dicom.enabled and not self._dicom_listening():
            problems.append("DICOM SCP not listening")
        depth = {lane.label: st.depth for lane, st in self.outbox.stats().items()} if self.outbox else {}
        supervised = len(self.collector.devices()) if self.collector is not None else 0
        return Health(healthy=not problems, uplink=uplink_state, uplink_down_s=down_for, outbox_depth=depth,
                      devices_connected=self.collector.connected_count if self.collector else 0,
                      devices_supervised=supervised, problems=tuple(problems))

    def snapshot(self) -> StatusSnapshot:
        s = self.settings
        lanes = tuple(LaneView(lane.label, st.depth, st.bytes, st.oldest_age_s)
                      for lane, st in self.outbox.stats().items()) if self.outbox else ()
        return StatusSnapshot(
            edge_id=s.edge.id, site=s.edge.site, name=s.edge.name,
            now=dt.datetime.fromtimestamp(self._clock.now(), dt.UTC), uptime_s=time.monotonic() - self._started,
            health=self.health(), lanes=lanes,
            devices=tuple(self.collector.devices()) if self.collector else (),
            alerts=tuple(self.alerting.active()) if self.alerting else (),
            notices=tuple(self.alerting.notices()) if self.alerting else (),
            studies=self._recent_studies(), timezone=s.ble.device_timezone, simulated=self.ward is not None,
            software_version=_version())

    def metrics_text(self) -> str:
        return self.metrics.render()

    def _dicom_listening(self) -> bool:
        assert self.dicom is not None
        try:
            _ = self.dicom.server.address
        except RuntimeError:
            return False
        return True

    def _recent_studies(self) -> tuple[StudyView, ...]:
        if self.dicom is None:
            return ()
        index = self.dicom.store.index
        try:
            studies = sorted(index.studies(), key=lambda st: st.last_received_at, reverse=True)[:_RECENT_STUDIES]
            views = []
            for st in studies:
                if st.manifested_at is None:
                    state = "receiving"
                elif self.dicom.forwarder is not None and not index.instances(
                        st.study_instance_uid, states=[UploadState.PENDING]):
                    state = "uploaded"
                else:
                    state = "complete"
                views.append(StudyView(st.study_instance_uid, pseudonymous_patient_id(st), st.study_date,
                                       st.modalities, st.series_count, st.instance_count,
                                       dt.datetime.fromtimestamp(st.last_received_at, dt.UTC), state))
            return tuple(views)
        except Exception:
            log.exception("service.studies_unreadable")
            return ()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("service.task_crashed", exc_info=task.exception(), extra={"task": task.get_name()})
