"""Reading the indexed attributes of received instances: the fast path agrees with pydicom, errors are typed."""

from __future__ import annotations

import io
import os
import struct

import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.filereader import _read_file_meta_info

from edge.dicom import parse
from edge.dicom.errors import MissingAttributeError, UnreadableDatasetError
from edge.dicom.models import InstanceHeader
from edge.dicom.part10 import IMPLEMENTATION_CLASS_UID, encode_file_meta, read_file_meta
from tests.unit.edge.test_dicom_support import (
    COMPRESSED_SYNTAXES,
    NATIVE_SYNTAXES,
    ct_study,
    in_syntax,
    minimal_instance,
    part10,
    with_undefined_length_sequence,
)


def _reference(encoded: bytes) -> InstanceHeader:
    """What pydicom reads, through the same validation."""
    transfer_syntax, _ = read_file_meta(encoded)
    return parse._header(parse._read_with_pydicom(encoded), transfer_syntax)


def test_reads_the_indexed_attributes_of_a_simulated_ct_slice() -> None:
    ds = ct_study(slices=1).instances[0]
    header = parse.read_header(part10(ds))
    assert header == InstanceHeader(
        sop_instance_uid=ds.SOPInstanceUID, sop_class_uid=ds.SOPClassUID,
        transfer_syntax_uid="1.2.840.10008.1.2.1", study_instance_uid=ds.StudyInstanceUID,
        series_instance_uid=ds.SeriesInstanceUID, patient_id=ds.PatientID, patient_name=str(ds.PatientName),
        study_id=ds.StudyID, study_date=ds.StudyDate, study_time=ds.StudyTime, accession_number=ds.AccessionNumber,
        study_description="胸部CT平扫", modality="CT", series_number=int(ds.SeriesNumber),
        series_description=ds.SeriesDescription, instance_number=int(ds.InstanceNumber),
    )


@pytest.mark.parametrize("transfer_syntax", NATIVE_SYNTAXES + COMPRESSED_SYNTAXES)
def test_fast_path_agrees_with_pydicom_in_every_transfer_syntax(transfer_syntax: str) -> None:
    ds = with_undefined_length_sequence(ct_study(slices=1, seed=7).instances[0])
    encoded = part10(in_syntax(ds, transfer_syntax))
    header = parse.read_header(encoded)
    assert header == _reference(encoded)
    assert header.transfer_syntax_uid == transfer_syntax
    assert header.study_description == "胸部CT平扫"


def test_undefined_length_sequences_are_skipped_without_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = part10(with_undefined_length_sequence(minimal_instance()))
    assert b"\xfe\xff\xdd\xe0" in encoded  # a sequence delimitation item: the sequence has undefined length

    def fail(_: bytes) -> dict[str, str]:
        raise AssertionError("the fast path fell back to pydicom")

    monkeypatch.setattr(parse, "_read_with_pydicom", fail)
    assert parse.read_header(encoded).accession_number == "A1"


def test_gb18030_text_is_decoded_with_the_dataset_character_set() -> None:
    ds = minimal_instance(charset="GB18030", description="胸部平扫", patient_name="Wang^Wei=王^伟")
    header = parse.read_header(part10(ds))
    assert (header.study_description, header.patient_name) == ("胸部平扫", "Wang^Wei=王^伟")


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_a_missing_required_uid_is_named(keyword: str) -> None:
    ds = minimal_instance()
    delattr(ds, keyword)
    with pytest.raises(MissingAttributeError) as caught:
        parse.read_header(part10(ds))
    assert caught.value.keyword == keyword


def test_an_invalid_uid_is_refused() -> None:
    ds = minimal_instance()
    del ds.StudyInstanceUID
    with pydicom_config.disable_value_validation():  # pydicom would warn about the value we want to send
        ds.StudyInstanceUID = "1.2.03.x"
        encoded = part10(ds)
    with pytest.raises(MissingAttributeError, match="StudyInstanceUID: not a valid UID"):
        parse.read_header(encoded)


def test_garbage_after_the_file_meta_is_unreadable_or_missing_its_uids() -> None:
    meta = encode_file_meta(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3",
                            transfer_syntax_uid="1.2.840.10008.1.2.1")
    for seed in range(20):
        garbage = bytes((seed * 31 + i * 17) % 256 for i in range(3000)) if seed else os.urandom(3000)
        with pytest.raises((UnreadableDatasetError, MissingAttributeError)):
            parse.read_header(meta + garbage)


def test_a_truncated_dataset_is_unreadable() -> None:
    encoded = part10(minimal_instance())
    offset = read_file_meta(encoded)[1]
    with pytest.raises((UnreadableDatasetError, MissingAttributeError)):
        parse.read_header(encoded[: offset + 30])


def test_bytes_without_the_dicm_prefix_are_not_a_file() -> None:
    with pytest.raises(UnreadableDatasetError, match="DICM"):
        parse.read_header(b"\x00" * 200)


def test_file_meta_we_write_is_read_back_by_pydicom_and_by_us() -> None:
    meta = encode_file_meta(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.345",
                            transfer_syntax_uid="1.2.840.10008.1.2.4.50")
    stream = io.BytesIO(meta)
    stream.seek(132)
    info = _read_file_meta_info(stream)
    assert info.MediaStorageSOPInstanceUID == "1.2.345"
    assert info.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert info.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    (group_length,) = struct.unpack_from("<I", meta, 132 + 8)
    assert group_length == len(meta) - 132 - 12
    assert read_file_meta(meta) == ("1.2.840.10008.1.2.4.50", len(meta))


def test_a_file_we_assemble_is_a_valid_dicom_file() -> None:
    ds = minimal_instance()
    dataset_only = part10(ds)[read_file_meta(part10(ds))[1]:]
    assembled = encode_file_meta(sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID,
                                 transfer_syntax_uid="1.2.840.10008.1.2.1") + dataset_only
    assert dcmread(io.BytesIO(assembled)).PixelData == ds.PixelData
