"""Which DIMSE status each C-STORE outcome gets (PS3.4 B.2.3, PS3.7 C), without a network."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.dicom import status
from edge.dicom.scp import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES, store_instance
from edge.dicom.store import InstanceStore, StoreLimits
from tests.unit.edge.test_dicom_support import CT_IMAGE_STORAGE, dataset_bytes, minimal_instance, part10

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT = "1.2.840.10008.1.2.1"


@pytest.fixture
def store(tmp_path: Path) -> InstanceStore:
    return InstanceStore(tmp_path, limits=StoreLimits(max_bytes=20_000, min_free_bytes=0))


def _status(store: InstanceStore, dataset: bytes, *, sop_class: str = CT_IMAGE_STORAGE, sop_instance: str,
            context: str = CT_IMAGE_STORAGE) -> int:
    return store_instance(store, dataset=dataset, affected_sop_class_uid=sop_class,
                          affected_sop_instance_uid=sop_instance, context_abstract_syntax=context,
                          transfer_syntax_uid=EXPLICIT, calling_ae="CT1")


def test_statuses_for_each_outcome(store: InstanceStore) -> None:
    ds = minimal_instance()
    data = dataset_bytes(part10(ds))
    uid = str(ds.SOPInstanceUID)
    assert _status(store, data, sop_instance=uid) == status.SUCCESS
    assert _status(store, data, sop_instance=uid) == status.SUCCESS  # duplicate
    assert _status(store, data, sop_instance="1.2.3.4") == status.UID_MISMATCH
    assert _status(store, data, sop_class=MR_IMAGE_STORAGE, context=MR_IMAGE_STORAGE,
                   sop_instance=uid) == status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert _status(store, data, sop_class=MR_IMAGE_STORAGE, sop_instance=uid) == status.SOP_CLASS_NOT_SUPPORTED
    assert _status(store, data, sop_class="1.2.3.4.5", context="1.2.3.4.5",
                   sop_instance=uid) == status.SOP_CLASS_NOT_SUPPORTED
    assert _status(store, b"\x08\x00\x16\x00garbage", sop_instance=uid) in (status.CANNOT_UNDERSTAND,
                                                                             status.MISSING_ATTRIBUTE)
    no_uid = minimal_instance()
    del no_uid.StudyInstanceUID
    assert _status(store, dataset_bytes(part10(no_uid)),
                   sop_instance=str(no_uid.SOPInstanceUID)) == status.MISSING_ATTRIBUTE
    big = minimal_instance()
    big.PixelData = bytes(30_000)
    assert _status(store, dataset_bytes(part10(big)), sop_instance=str(big.SOPInstanceUID)) == status.OUT_OF_RESOURCES


def test_an_unexpected_fault_is_an_internal_error(store: InstanceStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(store, "put", broken)
    ds = minimal_instance()
    assert _status(store, dataset_bytes(part10(ds)), sop_instance=str(ds.SOPInstanceUID)) == status.INTERNAL_ERROR


def test_we_accept_every_standard_storage_class_in_the_common_syntaxes() -> None:
    assert CT_IMAGE_STORAGE in STORAGE_SOP_CLASSES and len(STORAGE_SOP_CLASSES) > 100
    assert {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
            "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
            "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
            "1.2.840.10008.1.2.5"} <= set(TRANSFER_SYNTAXES)


def test_the_service_config_follows_the_edge_settings(tmp_path: Path) -> None:
    from edge.dicom.service import DicomServiceConfig
    from edge.settings import DicomSettings

    settings = DicomSettings(ae_title="QC_EDGE", host="0.0.0.0", port=11113, storage_dir=tmp_path,
                             study_complete_timeout_s=45)
    config = DicomServiceConfig.from_settings(settings, retention_days=3)
    assert (config.scp.ae_title, config.scp.host, config.scp.port) == ("QC_EDGE", "0.0.0.0", 11113)
    assert (config.storage_dir, config.study_complete_timeout_s, config.retention_days) == (tmp_path, 45, 3)
