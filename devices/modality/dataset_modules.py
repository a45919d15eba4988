"""IOD modules shared by every generated instance: File Meta, Patient, Study, Series, Equipment, SOP Common.

Module and attribute names follow PS3.3 (C.7 common modules, C.12.1 SOP Common) and PS3.10 7.1
(File Meta Information). Text is UTF-8 under Specific Character Set 'ISO_IR 192' (PS3.3 C.12.1.1.2),
which carries both the Pinyin and the Chinese characters of a name.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from devices.modality.identity import Patient, Site
from devices.modality.names import ChineseName

# PS3.5 B.2: a UID derived from a UUID under the 2.25 root needs no registered organisation root.
# Ours is fixed per implementation, derived from a name so it never changes between releases.
IMPLEMENTATION_CLASS_UID = UID(f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'telemed/devices/modality').int}")
IMPLEMENTATION_VERSION_NAME = "TELEMED_SIM_01"  # SH, at most 16 characters
SOFTWARE_VERSION = "telemed-modality 0.1.0"
MANUFACTURER = "Telemed"
CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
UTF8_CHARACTER_SET = "ISO_IR 192"


def new_uid() -> UID:
    """A fresh UID under the UUID-derived 2.25 root (PS3.5 B.2), unique without coordination."""
    return generate_uid(prefix=None)


@dataclass(frozen=True)
class Encounter:
    """One imaging visit: who, where, when and the study-level identifiers every instance repeats."""

    site: Site
    patient: Patient
    referring_physician: ChineseName
    operator: ChineseName
    when: dt.datetime  # timezone-aware
    accession_number: str
    study_id: str
    study_instance_uid: UID
    study_description: str


def dicom_date(when: dt.date) -> str:
    return when.strftime("%Y%m%d")


def dicom_time(when: dt.datetime) -> str:
    return when.strftime("%H%M%S.%f")


def timezone_offset(when: dt.datetime) -> str:
    """Timezone Offset From UTC (0008,0201) as '+HHMM'."""
    offset = when.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def file_meta(sop_class_uid: UID, sop_instance_uid: UID) -> FileMetaDataset:
    """File Meta Information (PS3.10 7.1); generated instances start as Explicit VR Little Endian."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def new_instance(sop_class_uid: UID, created: dt.datetime) -> Dataset:
    """An empty instance with File Meta and the SOP Common module (PS3.3 C.12.1)."""
    ds = Dataset()
    sop_instance_uid = new_uid()
    ds.file_meta = file_meta(sop_class_uid, sop_instance_uid)
    ds.SpecificCharacterSet = UTF8_CHARACTER_SET
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = dicom_date(created)
    ds.InstanceCreationTime = dicom_time(created)
    ds.TimezoneOffsetFromUTC = timezone_offset(created)
    return ds


def add_patient(ds: Dataset, patient: Patient, on: dt.date) -> None:
    """Patient module (C.7.1.1) and the age from Patient Study (C.7.2.2)."""
    ds.PatientName = patient.name.to_dicom()
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "HIS"
    ds.PatientBirthDate = dicom_date(patient.birth_date)
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{min(patient.age_on(on), 999):03d}Y"


def add_study(ds: Dataset, encounter: Encounter) -> None:
    """General Study module (C.7.2.1)."""
    ds.StudyInstanceUID = encounter.study_instance_uid
    ds.StudyDate = dicom_date(encounter.when)
    ds.StudyTime = dicom_time(encounter.when)
    ds.ReferringPhysicianName = encounter.referring_physician.to_dicom()
    ds.StudyID = encounter.study_id
    ds.AccessionNumber = encounter.accession_number
    ds.StudyDescription = encounter.study_description


def add_series(
    ds: Dataset, *, modality: str, series_uid: UID, number: int, description: str, encounter: Encounter
) -> None:
    """General Series module (C.7.3.1); the series starts a minute into the visit."""
    started = encounter.when + dt.timedelta(minutes=1)
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.SeriesDate = dicom_date(started)
    ds.SeriesTime = dicom_time(started)
    ds.SeriesDescription = description
    ds.OperatorsName = encounter.operator.to_dicom()


def add_equipment(ds: Dataset, site: Site, *, station: str, model: str) -> None:
    """General Equipment module (C.7.5.1): an honest simulator name, at a real-looking county site."""
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = site.institution
    ds.InstitutionalDepartmentName = site.department
    ds.StationName = f"{site.code}-{station}"
    ds.ManufacturerModelName = model
    ds.DeviceSerialNumber = f"SIM{site.code}{station}"
    ds.SoftwareVersions = SOFTWARE_VERSION


def add_content_time(ds: Dataset, when: dt.datetime) -> None:
    """Content and acquisition timing of General Image (C.7.6.1) and General Acquisition (C.7.10.1)."""
    ds.ContentDate = dicom_date(when)
    ds.ContentTime = dicom_time(when)
    ds.AcquisitionDate = dicom_date(when)
    ds.AcquisitionTime = dicom_time(when)
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S.%f") + timezone_offset(when)
