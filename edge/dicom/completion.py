"""Study completion: a study with no new instance for a quiet period is complete, and gets a DicomManifest.

DICOM has no "end of study" signal a modality must send (Storage Commitment is optional and rare at county
hospitals), so the edge waits for silence. The state lives in the index (`manifested_through` is the arrival
time of the newest instance a manifest covered), which makes the tracker restart-safe: studies not yet
manifested when the edge stopped are simply due again at start. An instance arriving after a manifest
reopens the study and a new, complete manifest follows the next quiet period (the cloud keeps the newest).
The clock is injected; `check()` does the work and the watcher thread only decides when to call it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from edge.dicom.errors import DicomError
from edge.dicom.index import DicomIndex
from edge.dicom.models import SeriesRecord, StoredInstance, StudyRecord
from proto.messages import OPAQUE_ID, DicomManifest, InstanceEntry, SeriesEntry

log = logging.getLogger(__name__)

Clock = Callable[[], float]
ManifestSink = Callable[[DicomManifest], None]
PatientIdOf = Callable[[StudyRecord], str]

# PS3.3 C.7.3.1.1.1: OT (Other) when a series has no usable Modality.
UNKNOWN_MODALITY: Final = "OT"
_MODALITY: Final = re.compile(r"^[A-Z0-9]{2,16}$")
_DATE: Final = re.compile(r"^\d{8}$")


def pseudonymous_patient_id(study: StudyRecord) -> str:
    """The wire patient id for a study: the DICOM Patient ID when it is a valid opaque id, else a stable hash.

    The edge service may inject its own mapping (e.g. to the ward's pseudonymous patient ids) instead.
    """
    raw = study.patient_id.strip()
    if OPAQUE_ID.match(raw):
        return raw
    return "dcm-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def build_manifest(study: StudyRecord, series: Sequence[SeriesRecord], instances: Sequence[StoredInstance], *,
                   patient_id: str, completed_at: dt.datetime) -> DicomManifest:
    """The manifest of a study from its index records (pure); validated before it is returned."""
    by_series: dict[str, list[StoredInstance]] = {}
    for instance in instances:
        by_series.setdefault(instance.series_instance_uid, []).append(instance)
    entries: list[SeriesEntry] = []
    for record in series:
        members = sorted(by_series.get(record.series_instance_uid, ()),
                         key=lambda i: (i.instance_number is None, i.instance_number or 0, i.sop_instance_uid))
        if not members:
            continue
        entries.append(SeriesEntry(
            series_instance_uid=record.series_instance_uid,
            modality=record.modality if _MODALITY.match(record.modality) else UNKNOWN_MODALITY,
            instances=tuple(InstanceEntry(sop_instance_uid=i.sop_instance_uid, sop_class_uid=i.sop_class_uid,
                                          transfer_syntax_uid=i.transfer_syntax_uid, size_bytes=i.size_bytes,
                                          sha256=i.sha256) for i in members),
            series_number=record.series_number,
            description=record.series_description or None,
        ))
    manifest = DicomManifest(
        study_instance_uid=study.study_instance_uid,
        patient_id=patient_id,
        completed_at=completed_at,
        series=tuple(entries),
        accession_number=study.accession_number or None,
        study_date=study.study_date if _DATE.match(study.study_date) else None,
    )
    manifest.validate()
    return manifest


class CompletionTracker:
    """Finds studies quiet for `quiet_s` seconds and hands their manifests to `sink` (at least once)."""

    def __init__(self, index: DicomIndex, *, quiet_s: float, sink: ManifestSink, clock: Clock = time.time,
                 patient_id_of: PatientIdOf = pseudonymous_patient_id) -> None:
        if quiet_s <= 0:
            raise ValueError("quiet_s must be positive")
        self.index = index
        self.quiet_s = quiet_s
        self._sink = sink
        self._clock = clock
        self._patient_id_of = patient_id_of

    def next_due_at(self) -> float | None:
        """When the earliest pending study becomes complete (Unix seconds), or None if nothing is pending."""
        pending = self.index.unmanifested()
        return min(last for _, last in pending) + self.quiet_s if pending else None

    def check(self) -> list[DicomManifest]:
        """Manifest every study quiet for the period; returns the manifests handed to the sink."""
        now = self._clock()
        emitted: list[DicomManifest] = []
        for study_uid, last_received_at in self.index.unmanifested():
            if last_received_at + self.quiet_s > now:
                continue
            manifest = self._manifest(study_uid, now)
            if manifest is None:
                continue
            try:
                self._sink(manifest)
            except Exception:
                # The sink (the outbox) failed: leave the study pending, the next check retries.
                log.exception("dicom.completion.sink_failed study_instance_uid=%s", study_uid)
                continue
            if self.index.mark_manifested(study_uid, through=last_received_at, at=now):
                emitted.append(manifest)
                log.info("dicom.completion.study_complete study_instance_uid=%s series=%d instances=%d",
                         study_uid, len(manifest.series), manifest.instance_count)
            else:
                log.info("dicom.completion.reopened study_instance_uid=%s", study_uid)
        return emitted

    def _manifest(self, study_uid: str, now: float) -> DicomManifest | None:
        study = self.index.study(study_uid)
        if study is None:
            return None
        completed_at = dt.datetime.fromtimestamp(now, dt.UTC)
        try:
            return build_manifest(study, self.index.series([study_uid]), self.index.instances(study_uid),
                                  patient_id=self._patient_id_of(study), completed_at=completed_at)
        except (ValueError, DicomError):
            log.exception("dicom.completion.manifest_invalid study_instance_uid=%s", study_uid)
            return None


class CompletionWatcher:
    """Runs `tracker.check()` in a thread when a study falls due; `notify()` after each stored instance."""

    def __init__(self, tracker: CompletionTracker, *, clock: Clock = time.time, max_sleep_s: float = 60.0,
                 on_manifested: Callable[[list[DicomManifest]], None] | None = None) -> None:
        self.tracker = tracker
        self._on_manifested = on_manifested
        self._clock = clock
        self._max_sleep_s = max_sleep_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self, *_: object) -> None:
        """A new instance arrived: recompute when the next study falls due."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="dicom-completion", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                emitted = self.tracker.check()
                if emitted and self._on_manifested is not None:
                    self._on_manifested(emitted)
                due = self.tracker.next_due_at()
            except DicomError:
                log.exception("dicom.completion.check_failed")
                due = None
            delay = self._max_sleep_s if due is None else min(self._max_sleep_s, max(0.0, due - self._clock()))
            # Wake slightly after the due time so the study is past its quiet period when checked.
            self._wake.wait(delay + 0.01)
            self._wake.clear()
