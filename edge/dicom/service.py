"""The edge's DICOM side wired together: store, SCP, study completion, forwarding and retention.

The edge service creates one DicomService, passes `on_manifest` (which enqueues the manifest in the outbox)
and, when the cloud's URL is configured, a ForwarderConfig and its request signer. `start()` reconciles the
store with its files, listens for modalities, and runs two threads: the completion watcher and the
upload/retention loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.dicom.completion import CompletionTracker, CompletionWatcher, ManifestSink, PatientIdOf
from edge.dicom.completion import pseudonymous_patient_id as _default_patient_id
from edge.dicom.errors import DicomError
from edge.dicom.forwarder import Forwarder, ForwarderConfig, ForwardReport, ProgressCallback, StowClient
from edge.dicom.retention import SweepReport, sweep_retention
from edge.dicom.scp import DicomServer, ScpConfig
from edge.dicom.signing import RequestSigner
from edge.dicom.store import InstanceStore, StoreLimits
from edge.metrics import Registry
from edge.settings import DicomSettings
from proto.messages import DicomManifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DicomServiceConfig:
    """Everything the DICOM side needs besides its collaborators."""

    storage_dir: Path
    scp: ScpConfig = field(default_factory=ScpConfig)
    limits: StoreLimits = field(default_factory=StoreLimits)
    study_complete_timeout_s: float = 30.0
    retention_days: float = 7.0  # kept locally this long after the cloud confirmed a whole study
    forward_interval_s: float = 30.0  # how often pending uploads are retried when nothing wakes the loop
    retention_interval_s: float = 3600.0

    @classmethod
    def from_settings(cls, dicom: DicomSettings, **overrides: Any) -> DicomServiceConfig:
        """The config for the edge's [dicom] settings (fields they do not carry yet come from `overrides`)."""
        scp = overrides.pop("scp", None) or ScpConfig(ae_title=dicom.ae_title, host=dicom.host, port=dicom.port)
        return cls(storage_dir=dicom.storage_dir, scp=scp, study_complete_timeout_s=dicom.study_complete_timeout_s,
                   **overrides)


class DicomService:
    """Owns the store, the SCP and the background threads of the DICOM side."""

    def __init__(self, config: DicomServiceConfig, *, on_manifest: ManifestSink,
                 forwarder: ForwarderConfig | None = None, signer: RequestSigner | None = None,
                 clock: Callable[[], float] = time.time, registry: Registry | None = None,
                 patient_id_of: PatientIdOf = _default_patient_id, progress: ProgressCallback | None = None) -> None:
        if (forwarder is None) != (signer is None):
            raise ValueError("a forwarder needs a request signer, and a signer is only used by the forwarder")
        self.config = config
        self._clock = clock
        self._progress = progress
        self.store = InstanceStore(config.storage_dir, limits=config.limits, clock=clock)
        self.server = DicomServer(self.store, config.scp, registry=registry)
        self.tracker = CompletionTracker(self.store.index, quiet_s=config.study_complete_timeout_s,
                                         sink=on_manifest, clock=clock, patient_id_of=patient_id_of)
        self.watcher = CompletionWatcher(self.tracker, clock=clock, on_manifested=self._manifested)
        self.store.add_listener(self.watcher.notify)
        self.forwarder = Forwarder(self.store, StowClient(forwarder, signer), clock=clock) \
            if forwarder is not None and signer is not None else None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._loop: threading.Thread | None = None
        self._next_sweep = 0.0

    def start(self) -> None:
        self.store.reconcile()
        self.server.start()
        self.watcher.start()
        self._stop.clear()
        self._loop = threading.Thread(target=self._run, name="dicom-forward", daemon=True)
        self._loop.start()

    def stop(self) -> None:
        self.server.stop()
        self.watcher.stop()
        self._stop.set()
        self._wake.set()
        if self.forwarder is not None:
            self.forwarder.stop()
        if self._loop is not None:
            self._loop.join(30)
            self._loop = None
        if self.forwarder is not None:
            self.forwarder.client.close()
        self.store.close()

    def _manifested(self, manifests: list[DicomManifest]) -> None:
        self._wake.set()

    def forward_now(self) -> ForwardReport | None:
        """One upload run (what the loop does); None without a forwarder."""
        return self.forwarder.forward_pending(self._progress) if self.forwarder is not None else None

    def sweep_now(self) -> SweepReport:
        return sweep_retention(self.store, now=self._clock(), keep_days=self.config.retention_days)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            delay = self.config.forward_interval_s
            try:
                report = self.forward_now()
                if report is not None and report.errors:
                    failures += 1
                    delay = min(600.0, self.config.forward_interval_s * 2 ** min(failures, 5))
                else:
                    failures = 0
                if self._clock() >= self._next_sweep:
                    self.sweep_now()
                    self._next_sweep = self._clock() + self.config.retention_interval_s
            except DicomError:
                log.exception("dicom.service.loop_failed")
            self._wake.wait(delay)
            self._wake.clear()
