"""What one STOW-RS part is: an instance we can store, or a failure with its FailureReason (pure)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from typing import Final

from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag, Tag

from cloud.dicomweb import reasons
from cloud.dicomweb.multipart import BodyPart, parse_media_type
from cloud.dicomweb.store import ObjectKey
from proto.messages import DICOM_UID

DICOM_MEDIA_TYPE: Final = "application/dicom"
_DIGEST: Final = re.compile(r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/=]+):")
_TAGS: Final[list[BaseTag | int]] = [Tag(t) for t in (0x00080016, 0x00080018, 0x00100020, 0x0020000D, 0x0020000E)]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A part that is a readable instance whose bytes match the digest the edge sent."""

    key: ObjectKey
    sop_class_uid: str
    transfer_syntax_uid: str
    sha256: str
    data: bytes
    dicom_patient_id: str

    @property
    def sop_instance_uid(self) -> str:
        return self.key.sop_instance_uid


@dataclass(frozen=True, slots=True)
class Failure:
    """A part we refuse, with the UIDs we could read (may be empty) and the STOW-RS FailureReason."""

    sop_class_uid: str
    sop_instance_uid: str
    reason: int
    detail: str


def declared_sha256(headers: dict[str, str]) -> str | None:
    """The SHA-256 (hex) from a part's RFC 9530 Content-Digest header, if it has a sha-256 entry."""
    match = _DIGEST.search(headers.get("content-digest", ""))
    if match is None:
        return None
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def _uid(value: object) -> str:
    return str(value or "").strip("\x00 ")


def examine(part: BodyPart, *, study_uid: str | None) -> Candidate | Failure:
    """Check one part: media type, PS3.10 readability, required UIDs, target study and content digest."""
    media_type, _ = parse_media_type(part.headers.get("content-type", DICOM_MEDIA_TYPE))
    if media_type != DICOM_MEDIA_TYPE:
        return Failure("", "", reasons.CANNOT_UNDERSTAND, f"part of type {media_type!r}, not {DICOM_MEDIA_TYPE}")
    try:
        with warnings.catch_warnings(), pydicom_config.disable_value_validation():
            warnings.simplefilter("ignore")
            dataset = dcmread(io.BytesIO(part.data), stop_before_pixels=True, specific_tags=_TAGS)
            meta = dataset.file_meta
            transfer_syntax = _uid(meta.get("TransferSyntaxUID"))
            sop_class = _uid(dataset.get("SOPClassUID")) or _uid(meta.get("MediaStorageSOPClassUID"))
            sop_instance = _uid(dataset.get("SOPInstanceUID")) or _uid(meta.get("MediaStorageSOPInstanceUID"))
            study = _uid(dataset.get("StudyInstanceUID"))
            series = _uid(dataset.get("SeriesInstanceUID"))
            patient_id = str(dataset.get("PatientID") or "").strip()
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            NotImplementedError, OverflowError) as exc:
        return Failure("", "", reasons.CANNOT_UNDERSTAND, f"not a readable PS3.10 file: {type(exc).__name__}")
    for name, uid in (("SOPInstanceUID", sop_instance), ("SOPClassUID", sop_class), ("StudyInstanceUID", study),
                      ("SeriesInstanceUID", series), ("TransferSyntaxUID", transfer_syntax)):
        if len(uid) > 64 or not DICOM_UID.match(uid):
            return Failure(sop_class, sop_instance, reasons.MISSING_ATTRIBUTE, f"{name} absent or invalid")
    if study_uid is not None and study != study_uid:
        return Failure(sop_class, sop_instance, reasons.DATASET_DOES_NOT_MATCH,
                       "the instance belongs to another study than the request's")
    declared = declared_sha256(part.headers)
    actual = hashlib.sha256(part.data).hexdigest()
    if declared is None:
        return Failure(sop_class, sop_instance, reasons.INTEGRITY_FAILURE, "no sha-256 Content-Digest")
    if declared != actual:
        return Failure(sop_class, sop_instance, reasons.INTEGRITY_FAILURE, "content does not match its digest")
    return Candidate(key=ObjectKey(study, series, sop_instance), sop_class_uid=sop_class,
                     transfer_syntax_uid=transfer_syntax, sha256=actual, data=part.data,
                     dicom_patient_id=patient_id[:64])
