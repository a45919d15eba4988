"""Helpers (no tests) for the DICOM tests: instances as PS3.10 bytes in any transfer syntax, and a fake clock."""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Iterable

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from devices.modality.studies import Study, generate_ct_study

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
NATIVE = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"})
COMPRESSED_SYNTAXES = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless P14
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")


class FakeClock:
    """A settable clock (Unix seconds)."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ct_study(*, slices: int = 3, seed: int = 1, size: int = 32) -> Study:
    """A small chest CT from the modality simulator (UTF-8 text, a Chinese patient name and description)."""
    return generate_ct_study(slices=slices, rows=size, columns=size, seed=seed)


def part10(ds: Dataset) -> bytes:
    """A dataset (with its file meta) as PS3.10 file bytes, encoded in its file meta's transfer syntax."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def dataset_bytes(encoded: bytes) -> bytes:
    """The dataset part of a PS3.10 file (after the file meta group)."""
    from edge.dicom.part10 import read_file_meta

    return encoded[read_file_meta(encoded)[1]:]


def in_syntax(ds: Dataset, transfer_syntax: str, *, fragment_seed: int = 0) -> Dataset:
    """A copy of a native instance labelled with `transfer_syntax`.

    For a compressed syntax the pixel data is replaced by an encapsulated opaque fragment: the SCP never
    decodes pixels, so what matters is that these exact bytes come out the other end.
    """
    copied = copy.deepcopy(ds)
    copied.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    if transfer_syntax not in NATIVE:
        rng_bytes = os.urandom(64) if fragment_seed == 0 else bytes((fragment_seed * 7 + i) % 256 for i in range(64))
        copied.PixelData = encapsulate([b"\xff\xd8" + rng_bytes + b"\xff\xd9"])
        copied["PixelData"].VR = "OB"
    return copied


def minimal_instance(*, study: str | None = None, series: str | None = None, sop: str | None = None,
                     sop_class: str = CT_IMAGE_STORAGE, patient_id: str = "QC00000001", modality: str = "CT",
                     study_date: str = "20261101", study_time: str = "083000", accession: str = "A1",
                     series_number: int = 1, instance_number: int = 1, description: str = "CHEST",
                     charset: str | None = None, patient_name: str = "Test^Patient",
                     extra: Iterable[tuple[str, object]] = ()) -> Dataset:
    """A small, valid image instance in Explicit VR Little Endian with the attributes the edge indexes."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = UID(sop or generate_uid())
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.StudyDescription = description
    ds.SeriesDescription = description + " series"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.StudyInstanceUID = UID(study or generate_uid())
    ds.SeriesInstanceUID = UID(series or generate_uid())
    ds.StudyID = "S1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    for keyword, value in extra:
        setattr(ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(128))
    return ds


def with_undefined_length_sequence(ds: Dataset) -> Dataset:
    """A copy with nested sequences and items of undefined length before the indexed attributes."""
    copied = copy.deepcopy(ds)
    inner = Dataset()
    inner.CodeValue = "123"
    inner.CodingSchemeDesignator = "DCM"
    outer = Dataset()
    outer.CodeMeaning = "outer"
    outer.ConceptCodeSequence = Sequence([inner])
    outer["ConceptCodeSequence"].is_undefined_length = True
    inner.is_undefined_length_sequence_item = True
    second = copy.deepcopy(outer)
    outer.is_undefined_length_sequence_item = True  # the second item keeps a defined length
    copied.ProcedureCodeSequence = Sequence([outer, second])
    copied["ProcedureCodeSequence"].is_undefined_length = True
    return copied
