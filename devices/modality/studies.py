"""Whole studies as a county-hospital modality produces them: a CT series, an ultrasound cine loop, a chest DX.

Each generator returns a `Study` of pydicom datasets in Explicit VR Little Endian with File Meta;
`devices.modality.syntaxes.encode_study` re-encodes a study for another transfer syntax. A seed fixes
the patient, anatomy and noise; UIDs are always fresh so that sending the same seed twice is two studies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.tag import Tag
from pydicom.uid import UID
from pydicom.valuerep import format_number_as_ds

from devices.modality.ct_phantom import ct_slice_hu, random_torso
from devices.modality.dataset_modules import (
    CHINA_STANDARD_TIME,
    Encounter,
    add_content_time,
    add_equipment,
    add_patient,
    add_series,
    add_study,
    new_instance,
    new_uid,
)
from devices.modality.dx_phantom import DETECTOR_MM, chest_radiograph
from devices.modality.errors import InvalidStudyParametersError
from devices.modality.identity import pick_site, random_patient, random_physician
from devices.modality.raster import Grid
from devices.modality.us_phantom import CineLoop, ultrasound_loop

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
US_MULTIFRAME_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.3.1")
DX_IMAGE_STORAGE_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.1")

CT_RESCALE_INTERCEPT = -1024
# Window presets (centre, width) in HU a reading station offers for a chest CT.
CT_WINDOWS = (("SOFT TISSUE", 40, 400), ("LUNG", -600, 1500), ("BONE", 400, 1800))
MAX_MATRIX = 4096
CT_SLICES, CT_MATRIX = 100, 512
US_FRAMES, US_ROWS, US_COLUMNS = 30, 480, 640
DX_MATRIX = 2048  # 0.21 mm pixels on a 43 cm panel


class StudyKind(StrEnum):
    CT = "ct"
    US = "us"
    DX = "dx"


_DESCRIPTIONS = {StudyKind.CT: "胸部CT平扫", StudyKind.US: "肝胆超声检查", StudyKind.DX: "胸部正位DR摄影"}


@dataclass(frozen=True)
class Study:
    """The instances of one study, in acquisition order, and the visit they belong to."""

    kind: StudyKind
    encounter: Encounter
    instances: tuple[Dataset, ...]

    @property
    def study_instance_uid(self) -> UID:
        return self.encounter.study_instance_uid

    def sop_classes(self) -> frozenset[UID]:
        return frozenset(UID(ds.SOPClassUID) for ds in self.instances)

    def transfer_syntaxes(self) -> frozenset[UID]:
        return frozenset(UID(ds.file_meta.TransferSyntaxUID) for ds in self.instances)


def _ds(value: float) -> str:
    """The most precise Decimal String that fits the 16-byte DS limit (PS3.5 6.2)."""
    return format_number_as_ds(float(value))


def _code_item(code: Code) -> Dataset:
    """A Code Sequence item (PS3.3 8.8)."""
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme_designator
    item.CodeMeaning = code.meaning
    return item


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidStudyParametersError(message)


def _check_matrix(rows: int, columns: int) -> None:
    _check(16 <= rows <= MAX_MATRIX and 16 <= columns <= MAX_MATRIX, f"rows and columns must be 16..{MAX_MATRIX}")


def _pixel_bytes(array: NDArray[np.generic]) -> bytes:
    """Little-endian pixel bytes padded to even length (PS3.5 7.1.1: values have even length)."""
    data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).tobytes()
    return data + b"\x00" if len(data) % 2 else data


def new_encounter(
    rng: np.random.Generator, kind: StudyKind, *, patient_name: str | None = None, when: dt.datetime | None = None
) -> Encounter:
    """A visit at a random county hospital, now (China Standard Time) unless `when` is given."""
    moment = (when or dt.datetime.now(CHINA_STANDARD_TIME)).astimezone(CHINA_STANDARD_TIME)
    site = pick_site(rng)
    number = int(rng.integers(0, 10**6))
    return Encounter(
        site=site,
        patient=random_patient(rng, site, name=patient_name, today=moment.date()),
        referring_physician=random_physician(rng),
        operator=random_physician(rng),
        when=moment,
        accession_number=f"{site.code}{moment:%y%m%d}{number:06d}",
        study_id=f"{kind.value.upper()}{number:06d}",
        study_instance_uid=new_uid(),
        study_description=_DESCRIPTIONS[kind],
    )


def _base_instance(
    sop_class: UID, encounter: Encounter, acquired: dt.datetime, instance_number: int
) -> Dataset:
    ds = new_instance(sop_class, acquired)
    add_patient(ds, encounter.patient, encounter.when.date())
    add_study(ds, encounter)
    add_content_time(ds, acquired)
    ds.InstanceNumber = instance_number
    return ds


def generate_ct_study(
    *,
    slices: int = CT_SLICES,
    rows: int = CT_MATRIX,
    columns: int = CT_MATRIX,
    slice_thickness: float = 5.0,
    field_of_view: float = 360.0,
    bits_stored: int = 16,
    patient_name: str | None = None,
    seed: int | None = None,
    when: dt.datetime | None = None,
) -> Study:
    """An axial chest CT series centred on mid-thorax (CT Image IOD, PS3.3 A.3).

    `bits_stored` 16 stores signed values, 12 unsigned (0..4095); both with Rescale Intercept -1024.
    """
    _check(1 <= slices <= 2000, "slices must be 1..2000")
    _check_matrix(rows, columns)
    _check(bits_stored in (12, 16), "CT bits stored must be 12 or 16")
    _check(0.1 <= slice_thickness <= 20.0, "slice thickness must be 0.1..20 mm")
    _check(100.0 <= field_of_view <= 700.0, "field of view must be 100..700 mm")
    rng = np.random.default_rng(seed)
    encounter = new_encounter(rng, StudyKind.CT, patient_name=patient_name, when=when)
    torso = random_torso(rng)
    spacing = field_of_view / max(rows, columns)
    grid = Grid(rows, columns, spacing, spacing)
    series_uid, frame_of_reference = new_uid(), new_uid()
    signed = bits_stored == 16
    low, high = (-(2**15), 2**15 - 1) if signed else (0, 2**bits_stored - 1)
    first_depth = 140.0 - (slices - 1) * slice_thickness / 2.0  # centre the range on the hila
    instances = []
    for index in range(slices):
        depth = first_depth + index * slice_thickness
        z = -depth  # +z points to the head (LPS), depth grows towards the feet
        acquired = encounter.when + dt.timedelta(minutes=2, seconds=index * 0.5)
        ds = _base_instance(CT_IMAGE_STORAGE, encounter, acquired, index + 1)
        add_series(ds, modality="CT", series_uid=series_uid, number=2,
                   description=f"胸部平扫 {slice_thickness:g}mm", encounter=encounter)
        ds.PatientPosition = "HFS"
        ds.BodyPartExamined = "CHEST"
        add_equipment(ds, encounter.site, station="CT01", model="SimCT 64")
        ds.FrameOfReferenceUID = frame_of_reference
        ds.PositionReferenceIndicator = "SN"  # sternal notch
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.AcquisitionNumber = 1
        ds.ScanOptions = "HELICAL MODE"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = _ds(field_of_view)
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "150"
        ds.RotationDirection = "CW"
        ds.ExposureTime = "500"
        ds.XRayTubeCurrent = "200"
        ds.ConvolutionKernel = "STANDARD"
        ds.SliceThickness = _ds(slice_thickness)
        ds.SpacingBetweenSlices = _ds(slice_thickness)
        ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [_ds(grid.x0), _ds(grid.y0), _ds(z)]
        ds.SliceLocation = _ds(z)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = rows, columns
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleIntercept = str(CT_RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = [str(c) for _, c, _ in CT_WINDOWS]
        ds.WindowWidth = [str(w) for _, _, w in CT_WINDOWS]
        ds.WindowCenterWidthExplanation = [name for name, _, _ in CT_WINDOWS]
        hu = ct_slice_hu(grid, torso, depth, rng)
        stored = np.clip(np.rint(hu - CT_RESCALE_INTERCEPT), low, high).astype(np.int16 if signed else np.uint16)
        ds.PixelData = _pixel_bytes(stored)
        instances.append(ds)
    return Study(StudyKind.CT, encounter, tuple(instances))


def _us_regions(loop: CineLoop, rows: int, columns: int) -> Sequence:
    """US Region Calibration (PS3.3 C.8.5.5): lets a viewer measure in cm on the sector."""
    g = loop.geometry
    cm = g.mm_per_pixel / 10.0
    regions: list[tuple[tuple[int, int, int, int], int]] = [((g.min_row, g.max_row, g.min_column, g.max_column), 1)]
    if loop.color_box is not None:
        regions.append((loop.color_box, 2))  # RegionDataType 2: colour flow
    items = []
    for (min_row, max_row, min_column, max_column), data_type in regions:
        item = Dataset()
        item.RegionSpatialFormat = 1  # 2D
        item.RegionDataType = data_type  # 1 tissue, 2 colour flow
        item.RegionFlags = 0
        item.RegionLocationMinX0 = max(0, min_column)
        item.RegionLocationMinY0 = max(0, min_row)
        item.RegionLocationMaxX1 = min(columns - 1, max_column)
        item.RegionLocationMaxY1 = min(rows - 1, max_row)
        item.ReferencePixelX0 = g.apex_column
        item.ReferencePixelY0 = g.apex_row
        item.PhysicalUnitsXDirection = 3  # cm
        item.PhysicalUnitsYDirection = 3
        item.ReferencePixelPhysicalValueX = 0.0
        item.ReferencePixelPhysicalValueY = 0.0
        item.PhysicalDeltaX = cm
        item.PhysicalDeltaY = cm
        items.append(item)
    return Sequence(items)


def generate_us_study(
    *,
    frames: int = US_FRAMES,
    rows: int = US_ROWS,
    columns: int = US_COLUMNS,
    frame_rate: float = 25.0,
    color: bool = False,
    patient_name: str | None = None,
    seed: int | None = None,
    when: dt.datetime | None = None,
) -> Study:
    """One abdominal cine loop (Ultrasound Multi-frame Image IOD, PS3.3 A.7); RGB with colour Doppler."""
    _check(1 <= frames <= 2000, "frames must be 1..2000")
    _check_matrix(rows, columns)
    _check(1.0 <= frame_rate <= 200.0, "frame rate must be 1..200 per second")
    rng = np.random.default_rng(seed)
    encounter = new_encounter(rng, StudyKind.US, patient_name=patient_name, when=when)
    frame_time = 1000.0 / frame_rate
    loop = ultrasound_loop(rows, columns, frames, frame_time, rng, color=color)
    acquired = encounter.when + dt.timedelta(minutes=3)
    ds = _base_instance(US_MULTIFRAME_IMAGE_STORAGE, encounter, acquired, 1)
    add_series(ds, modality="US", series_uid=new_uid(), number=1, description="肝脏 动态", encounter=encounter)
    ds.BodyPartExamined = "ABDOMEN"
    add_equipment(ds, encounter.site, station="US01", model="SimUS C5-2")
    # Image Type value 4 is a bit mask of modes (PS3.3 C.8.5.6.1.1): 0001 2D, 0010 colour Doppler.
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL", "0011" if color else "0001"]
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        ds.PlanarConfiguration = 0  # R, G, B interleaved per pixel
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = Tag(0x0018, 0x1063)  # Frame Time
    ds.FrameTime = _ds(frame_time)
    ds.CineRate = round(frame_rate)
    ds.RecommendedDisplayFrameRate = round(frame_rate)
    ds.ActualFrameDuration = round(frame_time)
    ds.EffectiveDuration = _ds(frames * frame_time / 1000.0)
    ds.PreferredPlaybackSequencing = 0  # looping
    ds.StartTrim = 1
    ds.StopTrim = frames
    ds.TransducerType = "CURVED LINEAR"
    ds.SequenceOfUltrasoundRegions = _us_regions(loop, rows, columns)
    ds.PixelData = _pixel_bytes(loop.frames)
    return Study(StudyKind.US, encounter, (ds,))


def generate_dx_study(
    *,
    rows: int = DX_MATRIX,
    columns: int = DX_MATRIX,
    bits_stored: int = 12,
    patient_name: str | None = None,
    seed: int | None = None,
    when: dt.datetime | None = None,
) -> Study:
    """A PA chest radiograph (Digital X-Ray Image IOD for presentation, PS3.3 A.26)."""
    _check_matrix(rows, columns)
    _check(10 <= bits_stored <= 16, "DX bits stored must be 10..16")
    rng = np.random.default_rng(seed)
    encounter = new_encounter(rng, StudyKind.DX, patient_name=patient_name, when=when)
    spacing = DETECTOR_MM / max(rows, columns)
    pixels = chest_radiograph(Grid(rows, columns, spacing, spacing), rng, bits_stored)
    acquired = encounter.when + dt.timedelta(minutes=1, seconds=30)
    ds = _base_instance(DX_IMAGE_STORAGE_FOR_PRESENTATION, encounter, acquired, 1)
    add_series(ds, modality="DX", series_uid=new_uid(), number=1, description="胸部 后前位", encounter=encounter)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    add_equipment(ds, encounter.site, station="DR01", model="SimDR 4343")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["L", "F"]  # PA view displayed as if facing the patient
    ds.ViewPosition = "PA"
    ds.ImageLaterality = "U"
    ds.ViewCodeSequence = Sequence([_code_item(codes.SCT.PosteroAnterior)])  # CID 4010
    ds.AnatomicRegionSequence = Sequence([_code_item(codes.SCT.Chest)])  # CID 4031
    ds.PositionerType = "COLUMN"  # a wall-stand chest unit
    ds.AcquisitionContextSequence = Sequence([])
    ds.KVP = "120"
    ds.ExposureTime = "10"
    ds.XRayTubeCurrent = "250"
    ds.Exposure = "3"
    ds.DistanceSourceToDetector = "1800"
    ds.DistanceSourceToPatient = "1650"
    ds.ImagerPixelSpacing = [_ds(spacing), _ds(spacing)]
    ds.DetectorType = "SCINTILLATOR"
    ds.DetectorConfiguration = "AREA"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    # PS3.3 C.8.11.3.1.2: MONOCHROME2 with bone bright, so higher values mean less beam intensity.
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    top = 2**bits_stored
    ds.WindowCenter = str(top // 2)
    ds.WindowWidth = str(top)
    ds.PixelData = _pixel_bytes(pixels)
    return Study(StudyKind.DX, encounter, (ds,))


def generate_study(
    kind: StudyKind,
    *,
    count: int | None = None,
    rows: int | None = None,
    columns: int | None = None,
    color: bool = False,
    patient_name: str | None = None,
    seed: int | None = None,
    when: dt.datetime | None = None,
) -> Study:
    """Any kind of study with its defaults; `count` is slices (CT) or frames (US), `color` is US only."""
    if kind is StudyKind.CT:
        return generate_ct_study(
            slices=CT_SLICES if count is None else count, rows=rows or CT_MATRIX, columns=columns or CT_MATRIX,
            patient_name=patient_name, seed=seed, when=when,
        )
    if kind is StudyKind.US:
        return generate_us_study(
            frames=US_FRAMES if count is None else count, rows=rows or US_ROWS, columns=columns or US_COLUMNS,
            color=color, patient_name=patient_name, seed=seed, when=when,
        )
    _check(count is None, "a DX study has one image; omit the count")
    return generate_dx_study(
        rows=rows or DX_MATRIX, columns=columns or DX_MATRIX, patient_name=patient_name, seed=seed, when=when
    )
