"""Value types of the edge's DICOM store: what a received instance says about itself, and index records."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InstanceHeader:
    """The attributes of a received instance the edge indexes (read without decoding pixel data)."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str = ""
    patient_name: str = ""  # indexed for C-FIND only: never logged, never sent to the cloud outside the file
    study_id: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    instance_number: int | None = None


class UploadState(enum.StrEnum):
    """Where an instance stands with the cloud."""

    PENDING = "pending"  # not yet confirmed by a STOW-RS response
    CONFIRMED = "confirmed"  # listed in a STOW-RS ReferencedSOPSequence
    FAILED = "failed"  # refused for good (e.g. its bytes no longer match the hash taken on receipt)


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One instance held by the edge, as its index row."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    series_instance_uid: str
    size_bytes: int
    sha256: str
    path: str  # relative to the store root
    received_at: float  # Unix seconds
    instance_number: int | None = None
    upload_state: UploadState = UploadState.PENDING
    upload_attempts: int = 0
    upload_error: str | None = None
    confirmed_at: float | None = None


class PutOutcome(enum.StrEnum):
    """What storing an instance did."""

    STORED = "stored"  # new instance written
    DUPLICATE = "duplicate"  # same SOP Instance UID and same bytes: nothing new
    CONFLICT = "conflict"  # same SOP Instance UID, different bytes: the first one is kept


@dataclass(frozen=True, slots=True)
class PutResult:
    outcome: PutOutcome
    instance: StoredInstance


@dataclass(frozen=True, slots=True)
class StudyRecord:
    """A study the edge holds, with the counts C-FIND reports."""

    study_instance_uid: str
    patient_id: str
    patient_name: str
    study_id: str
    study_date: str
    study_time: str
    accession_number: str
    study_description: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    first_received_at: float
    last_received_at: float
    manifested_at: float | None = None


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """A series the edge holds."""

    series_instance_uid: str
    study_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    instance_count: int
