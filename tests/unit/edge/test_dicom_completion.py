"""Study completion after a quiet period (fake clock), restart safety, reopening; and local retention."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from edge.dicom.completion import CompletionTracker, pseudonymous_patient_id
from edge.dicom.models import StudyRecord
from edge.dicom.retention import DAY_S, sweep_retention
from edge.dicom.store import InstanceStore, StoreLimits
from proto import envelope
from proto.messages import DicomManifest
from tests.unit.edge.test_dicom_support import FakeClock, minimal_instance, part10

QUIET_S = 30.0
STUDY = "1.2.826.9.1"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> InstanceStore:
    return InstanceStore(tmp_path / "dicom", limits=StoreLimits(min_free_bytes=0), clock=clock)


def _tracker(store: InstanceStore, clock: FakeClock, sink: list[DicomManifest]) -> CompletionTracker:
    return CompletionTracker(store.index, quiet_s=QUIET_S, sink=sink.append, clock=clock)


def _put(store: InstanceStore, *, series: str = "1.2.826.9.1.1", number: int = 1, modality: str = "CT") -> bytes:
    encoded = part10(minimal_instance(study=STUDY, series=series, instance_number=number, modality=modality,
                                      series_number=int(series.rsplit(".", 1)[1])))
    store.put(encoded)
    return encoded


def test_a_study_completes_after_the_quiet_period_with_a_full_manifest(store: InstanceStore,
                                                                       clock: FakeClock) -> None:
    sink: list[DicomManifest] = []
    tracker = _tracker(store, clock, sink)
    second = _put(store, number=2)
    first = _put(store, number=1)
    third = _put(store, series="1.2.826.9.1.2", modality="SR")
    clock.advance(QUIET_S - 1)
    assert tracker.check() == []
    assert tracker.next_due_at() == pytest.approx(clock.now + 1)
    clock.advance(1)
    [manifest] = tracker.check()
    assert sink == [manifest]
    assert manifest.study_instance_uid == STUDY
    assert manifest.patient_id == "QC00000001"
    assert manifest.completed_at == dt.datetime.fromtimestamp(clock.now, dt.UTC)
    assert manifest.study_date == "20261101" and manifest.accession_number == "A1"
    assert [(s.series_instance_uid, s.modality, s.series_number) for s in manifest.series] == [
        ("1.2.826.9.1.1", "CT", 1), ("1.2.826.9.1.2", "SR", 2)]
    ct_instances = manifest.series[0].instances
    assert [i.sha256 for i in ct_instances] == [hashlib.sha256(b).hexdigest() for b in (first, second)]
    assert [i.size_bytes for i in ct_instances] == [len(first), len(second)]
    assert manifest.series[1].instances[0].sha256 == hashlib.sha256(third).hexdigest()
    envelope.serialize(manifest)  # it is a valid wire payload
    assert tracker.check() == [] and tracker.next_due_at() is None


def test_a_new_instance_restarts_the_quiet_period(store: InstanceStore, clock: FakeClock) -> None:
    sink: list[DicomManifest] = []
    tracker = _tracker(store, clock, sink)
    _put(store, number=1)
    clock.advance(QUIET_S - 5)
    _put(store, number=2)
    clock.advance(10)
    assert tracker.check() == []
    clock.advance(QUIET_S)
    assert [m.instance_count for m in tracker.check()] == [2]


def test_an_instance_after_the_manifest_reopens_the_study(store: InstanceStore, clock: FakeClock) -> None:
    sink: list[DicomManifest] = []
    tracker = _tracker(store, clock, sink)
    _put(store, number=1)
    clock.advance(QUIET_S)
    tracker.check()
    clock.advance(100)
    _put(store, number=2)
    clock.advance(QUIET_S)
    assert [m.instance_count for m in tracker.check()] == [2]
    assert [m.instance_count for m in sink] == [1, 2]


def test_pending_studies_survive_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    store = InstanceStore(tmp_path, limits=StoreLimits(min_free_bytes=0), clock=clock)
    _put(store)
    store.close()
    clock.advance(3600)
    sink: list[DicomManifest] = []
    reopened = InstanceStore(tmp_path, limits=StoreLimits(min_free_bytes=0), clock=clock)
    assert [m.study_instance_uid for m in _tracker(reopened, clock, sink).check()] == [STUDY]


def test_a_failing_sink_leaves_the_study_pending(store: InstanceStore, clock: FakeClock) -> None:
    calls: list[DicomManifest] = []

    def flaky(manifest: DicomManifest) -> None:
        calls.append(manifest)
        if len(calls) == 1:
            raise OSError("outbox unavailable")

    tracker = CompletionTracker(store.index, quiet_s=QUIET_S, sink=flaky, clock=clock)
    _put(store)
    clock.advance(QUIET_S)
    assert tracker.check() == []
    assert len(tracker.check()) == 1
    assert len(calls) == 2


def test_patient_ids_that_are_not_opaque_tokens_are_hashed() -> None:
    def study(patient_id: str) -> StudyRecord:
        return StudyRecord(STUDY, patient_id, "", "", "", "", "", "", (), 0, 0, 0.0, 0.0)

    assert pseudonymous_patient_id(study("QC0001")) == "QC0001"
    hashed = pseudonymous_patient_id(study("王伟 110101"))
    assert hashed.startswith("dcm-") and "王" not in hashed
    assert hashed == pseudonymous_patient_id(study("王伟 110101"))
    assert pseudonymous_patient_id(study("")).startswith("dcm-")


def test_retention_deletes_studies_confirmed_long_enough_ago(store: InstanceStore, clock: FakeClock) -> None:
    sink: list[DicomManifest] = []
    tracker = _tracker(store, clock, sink)
    _put(store, number=1)
    _put(store, number=2)
    other = store.put(part10(minimal_instance())).instance  # another study, never confirmed
    clock.advance(QUIET_S)
    tracker.check()
    uids = [i.sop_instance_uid for i in store.index.instances(STUDY)]
    store.index.mark_confirmed(uids[:1], at=clock.now)
    clock.advance(8 * DAY_S)
    assert sweep_retention(store, now=clock.now, keep_days=7).studies == 0  # not all confirmed yet
    store.index.mark_confirmed(uids[1:], at=clock.now)
    clock.advance(6 * DAY_S)
    assert sweep_retention(store, now=clock.now, keep_days=7).studies == 0  # confirmed 6 days ago
    clock.advance(2 * DAY_S)
    report = sweep_retention(store, now=clock.now, keep_days=7)
    assert (report.studies, report.instances) == (1, 2)
    assert report.bytes_freed > 0
    assert store.index.study(STUDY) is None
    assert not (store.root / STUDY).exists()
    assert store.index.instance(other.sop_instance_uid) is not None


def test_retention_keeps_a_study_reopened_since_its_manifest(store: InstanceStore, clock: FakeClock) -> None:
    tracker = _tracker(store, clock, [])
    _put(store, number=1)
    clock.advance(QUIET_S)
    tracker.check()
    store.index.mark_confirmed([i.sop_instance_uid for i in store.index.instances(STUDY)], at=clock.now)
    _put(store, number=2)  # arrives after the manifest, not yet told to the cloud
    store.index.mark_confirmed([i.sop_instance_uid for i in store.index.instances(STUDY)], at=clock.now)
    clock.advance(30 * DAY_S)
    assert sweep_retention(store, now=clock.now, keep_days=7).studies == 0
