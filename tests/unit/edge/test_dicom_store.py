"""The edge's instance store: byte-exact atomic files, the index, duplicates, the disk budget, recovery."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from edge.dicom.errors import SopClassMismatchError, StorageFullError, UidMismatchError, UnreadableDatasetError
from edge.dicom.models import PutOutcome, UploadState
from edge.dicom.store import InstanceStore, StoreLimits
from tests.unit.edge.test_dicom_support import FakeClock, minimal_instance, part10

NO_FREE_SPACE_RESERVE = StoreLimits(min_free_bytes=0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> InstanceStore:
    return InstanceStore(tmp_path / "dicom", limits=NO_FREE_SPACE_RESERVE, clock=clock)


def test_an_instance_is_stored_byte_exact_under_study_series_instance(store: InstanceStore, clock: FakeClock) -> None:
    ds = minimal_instance()
    encoded = part10(ds)
    result = store.put(encoded, calling_ae="CT1")
    assert result.outcome is PutOutcome.STORED
    path = store.root / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert path.read_bytes() == encoded
    assert result.instance.path == path.relative_to(store.root).as_posix()
    assert result.instance.sha256 == hashlib.sha256(encoded).hexdigest()
    assert result.instance.size_bytes == len(encoded)
    assert result.instance.received_at == clock.now
    assert result.instance.upload_state is UploadState.PENDING
    assert store.index.instance(ds.SOPInstanceUID) == result.instance
    assert store.used_bytes == len(encoded)
    assert not list(path.parent.glob("*.tmp"))


def test_study_and_series_records_follow_the_instances(store: InstanceStore, clock: FakeClock) -> None:
    first = minimal_instance(modality="CT", series_number=2)
    store.put(part10(first))
    clock.advance(5)
    store.put(part10(minimal_instance(study=first.StudyInstanceUID, series=first.SeriesInstanceUID,
                                      instance_number=2)))
    store.put(part10(minimal_instance(study=first.StudyInstanceUID, modality="SR", series_number=3)))
    study = store.index.study(first.StudyInstanceUID)
    assert study is not None
    assert (study.instance_count, study.series_count, study.modalities) == (3, 2, ("CT", "SR"))
    assert study.last_received_at - study.first_received_at == 5
    assert [(s.modality, s.instance_count) for s in store.index.series([first.StudyInstanceUID])] == [("CT", 2),
                                                                                                        ("SR", 1)]


def test_the_same_instance_again_is_a_duplicate_that_changes_nothing(store: InstanceStore) -> None:
    encoded = part10(minimal_instance())
    first = store.put(encoded)
    again = store.put(encoded)
    assert again.outcome is PutOutcome.DUPLICATE
    assert again.instance == first.instance
    assert store.used_bytes == len(encoded)


def test_different_bytes_under_a_held_uid_keep_the_first(store: InstanceStore) -> None:
    ds = minimal_instance()
    original = part10(ds)
    store.put(original)
    ds.StudyDescription = "CHANGED"
    result = store.put(part10(ds))
    assert result.outcome is PutOutcome.CONFLICT
    assert store.path_of(result.instance).read_bytes() == original


def test_the_disk_budget_refuses_what_does_not_fit(tmp_path: Path) -> None:
    first = part10(minimal_instance())
    store = InstanceStore(tmp_path, limits=StoreLimits(max_bytes=len(first) + 10, min_free_bytes=0))
    store.put(first)
    with pytest.raises(StorageFullError, match="budget"):
        store.put(part10(minimal_instance()))
    assert store.index.total_bytes() == len(first)
    assert len(list(tmp_path.rglob("*.dcm"))) == 1


def test_the_free_space_reserve_refuses_when_the_disk_is_nearly_full(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path, limits=StoreLimits(min_free_bytes=1 << 62))
    with pytest.raises(StorageFullError, match="free"):
        store.put(part10(minimal_instance()))


def test_request_and_dataset_must_name_the_same_instance(store: InstanceStore) -> None:
    encoded = part10(minimal_instance())
    with pytest.raises(UidMismatchError):
        store.put(encoded, expected_sop_instance_uid="1.2.3.4")
    with pytest.raises(SopClassMismatchError):
        store.put(encoded, expected_sop_class_uid="1.2.840.10008.5.1.4.1.1.4")
    assert store.index.total_bytes() == 0


def test_an_unreadable_dataset_is_not_written(store: InstanceStore) -> None:
    with pytest.raises(UnreadableDatasetError):
        store.put(b"not dicom at all" * 20)
    assert not list(store.root.rglob("*.dcm"))


def test_concurrent_stores_of_one_instance_write_it_once(store: InstanceStore) -> None:
    encoded = part10(minimal_instance())
    outcomes: list[PutOutcome] = []
    threads = [threading.Thread(target=lambda: outcomes.append(store.put(encoded).outcome)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == sorted([PutOutcome.STORED] + [PutOutcome.DUPLICATE] * 7)
    assert store.used_bytes == len(encoded)


def test_listeners_hear_of_new_instances_only(store: InstanceStore) -> None:
    heard: list[str] = []
    store.add_listener(lambda instance: heard.append(instance.sop_instance_uid))
    encoded = part10(minimal_instance())
    store.put(encoded)
    store.put(encoded)
    assert len(heard) == 1


def test_reconcile_indexes_orphans_forgets_missing_files_and_removes_temporaries(tmp_path: Path) -> None:
    root = tmp_path / "dicom"
    store = InstanceStore(root, limits=NO_FREE_SPACE_RESERVE)
    kept = store.put(part10(minimal_instance())).instance
    lost = store.put(part10(minimal_instance())).instance
    store.path_of(lost).unlink()
    orphan = minimal_instance()
    orphan_path = root / orphan.StudyInstanceUID / orphan.SeriesInstanceUID / f"{orphan.SOPInstanceUID}.dcm"
    orphan_path.parent.mkdir(parents=True)
    orphan_path.write_bytes(part10(orphan))  # a crash between rename and index commit
    (orphan_path.parent / "x.dcm.1234.tmp").write_bytes(b"half written")
    stray = root / "1.2.3" / "1.2.4" / "1.2.5.dcm"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"junk")
    store.close()

    reopened = InstanceStore(root, limits=NO_FREE_SPACE_RESERVE)
    report = reopened.reconcile()
    assert (report.indexed, report.forgotten, report.temporaries, report.unreadable) == (1, 1, 1, 1)
    assert reopened.index.instance(orphan.SOPInstanceUID) is not None
    assert reopened.index.instance(lost.sop_instance_uid) is None
    assert reopened.index.instance(kept.sop_instance_uid) is not None
    assert not stray.exists() and stray.with_name("1.2.5.dcm.bad").exists()
    assert reopened.used_bytes == reopened.index.total_bytes()
    assert reopened.reconcile() == type(report)(0, 0, 0, 0)


def test_remove_files_frees_bytes_and_empty_directories(store: InstanceStore) -> None:
    instance = store.put(part10(minimal_instance())).instance
    store.index.remove_instances([instance.sop_instance_uid])
    freed = store.remove_files([instance.path])
    assert freed == instance.size_bytes
    assert not (store.root / instance.study_instance_uid).exists()
    assert store.used_bytes == 0
