"""Generated studies are valid DICOM: they round-trip, carry each IOD's required tags and plausible pixels."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileDataset
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import UID, ExplicitVRLittleEndian

from devices.modality.dataset_modules import IMPLEMENTATION_CLASS_UID
from devices.modality.errors import InvalidPatientNameError, InvalidStudyParametersError
from devices.modality.studies import (
    CT_IMAGE_STORAGE,
    DX_IMAGE_STORAGE_FOR_PRESENTATION,
    US_MULTIFRAME_IMAGE_STORAGE,
    Study,
    StudyKind,
    generate_ct_study,
    generate_dx_study,
    generate_study,
    generate_us_study,
)

WHEN = dt.datetime(2025, 3, 14, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))

# Type 1 and 2 attributes of the modules each IOD requires (PS3.3 A.3 CT, A.7 US multi-frame, A.26 DX).
COMMON = ("SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "PatientName", "PatientID", "PatientBirthDate",
          "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
          "AccessionNumber", "Modality", "SeriesInstanceUID", "SeriesNumber", "Manufacturer", "InstanceNumber",
          "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
          "HighBit", "PixelRepresentation", "PixelData")
REQUIRED = {
    CT_IMAGE_STORAGE: (*COMMON, "FrameOfReferenceUID", "PositionReferenceIndicator", "PatientPosition",
                                "ImageType", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient",
                                "SliceThickness", "RescaleIntercept", "RescaleSlope", "KVP", "AcquisitionNumber"),
    US_MULTIFRAME_IMAGE_STORAGE: (*COMMON, "NumberOfFrames", "FrameIncrementPointer", "FrameTime", "ImageType",
                                           "PatientOrientation"),
    DX_IMAGE_STORAGE_FOR_PRESENTATION: (
        *COMMON, "PresentationIntentType", "ImageType", "PatientOrientation", "ImageLaterality", "ImagerPixelSpacing",
        "PixelIntensityRelationship", "PixelIntensityRelationshipSign", "RescaleIntercept", "RescaleSlope",
        "RescaleType", "PresentationLUTShape", "WindowCenter", "WindowWidth", "DetectorType", "ViewPosition",
        "PositionerType", "AcquisitionContextSequence", "BurnedInAnnotation", "LossyImageCompression"),
}


def round_trip(ds: Dataset) -> FileDataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return dcmread(io.BytesIO(buffer.getvalue()))


@pytest.fixture(scope="module")
def ct() -> Study:
    return generate_ct_study(slices=6, rows=128, columns=128, slice_thickness=2.5, seed=11, when=WHEN)


@pytest.fixture(scope="module")
def us() -> Study:
    return generate_us_study(frames=6, rows=96, columns=128, color=True, seed=12, when=WHEN)


@pytest.fixture(scope="module")
def dx() -> Study:
    return generate_dx_study(rows=256, columns=256, seed=13, when=WHEN)


@pytest.mark.parametrize("name", ["ct", "us", "dx"])
def test_every_instance_round_trips_with_required_tags_and_file_meta(name: str, request: pytest.FixtureRequest) -> None:
    study: Study = request.getfixturevalue(name)
    for ds in study.instances:
        back = round_trip(ds)
        missing = [keyword for keyword in REQUIRED[UID(ds.SOPClassUID)] if keyword not in back]
        assert missing == []
        assert back.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert back.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert np.array_equal(back.pixel_array, ds.pixel_array)
        assert back.StudyInstanceUID == study.study_instance_uid


def test_uids_are_valid_and_unique_across_studies(ct: Study, us: Study, dx: Study) -> None:
    uids = [str(ds.SOPInstanceUID) for study in (ct, us, dx) for ds in study.instances]
    uids += [str(study.study_instance_uid) for study in (ct, us, dx)]
    uids += [str(ct.instances[0].SeriesInstanceUID), str(ct.instances[0].FrameOfReferenceUID)]
    assert len(set(uids)) == len(uids)
    assert all(UID(uid).is_valid for uid in uids)
    assert all(len(uid) <= 64 for uid in uids)


def test_same_seed_gives_same_content_but_fresh_uids() -> None:
    first = generate_ct_study(slices=2, rows=32, columns=32, seed=5, when=WHEN)
    second = generate_ct_study(slices=2, rows=32, columns=32, seed=5, when=WHEN)
    assert first.instances[0].PixelData == second.instances[0].PixelData
    assert first.instances[0].PatientName == second.instances[0].PatientName
    assert first.study_instance_uid != second.study_instance_uid
    assert first.instances[0].SOPInstanceUID != second.instances[0].SOPInstanceUID


def test_ct_geometry_steps_by_slice_thickness_along_the_slice_normal(ct: Study) -> None:
    orientation = np.array(ct.instances[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in ct.instances])
    steps = np.diff(positions @ normal)
    assert np.allclose(np.abs(steps), 2.5)
    assert np.all(np.sign(steps) == np.sign(steps[0]))
    assert [float(ds.SliceLocation) for ds in ct.instances] == pytest.approx(list(positions[:, 2]))
    assert [ds.InstanceNumber for ds in ct.instances] == list(range(1, 7))
    assert np.allclose(positions[:, :2], positions[0, :2])
    assert len({ds.FrameOfReferenceUID for ds in ct.instances}) == 1
    assert len({ds.SeriesInstanceUID for ds in ct.instances}) == 1
    spacing = [float(v) for v in ct.instances[0].PixelSpacing]
    assert spacing == pytest.approx([360.0 / 128] * 2)
    # The first pixel's centre is half a field of view minus half a pixel from the isocentre.
    assert positions[0, 0] == pytest.approx(-(128 - 1) / 2 * spacing[1])


def test_ct_pixels_look_like_a_chest_in_hounsfield_units(ct: Study) -> None:
    ds = round_trip(ct.instances[3])
    assert (ds.RescaleIntercept, ds.RescaleSlope, ds.PixelRepresentation, ds.BitsStored) == (-1024, 1, 1, 16)
    hu = apply_modality_lut(ds.pixel_array, ds)
    total = hu.size
    assert np.count_nonzero(hu < -900) / total > 0.3  # air around the body
    assert np.count_nonzero((hu > -950) & (hu < -650)) / total > 0.1  # lung parenchyma
    assert np.count_nonzero((hu > -200) & (hu < 150)) / total > 0.12  # fat, muscle, heart
    assert np.count_nonzero(hu > 400) / total > 0.003  # spine, ribs, sternum
    assert hu.min() >= -1100 and hu.max() <= 1100


def test_ct_twelve_bit_variant_is_unsigned_and_keeps_the_same_hu() -> None:
    signed = generate_ct_study(slices=1, rows=64, columns=64, seed=3, when=WHEN)
    unsigned = generate_ct_study(slices=1, rows=64, columns=64, bits_stored=12, seed=3, when=WHEN)
    ds = round_trip(unsigned.instances[0])
    assert (ds.PixelRepresentation, ds.BitsStored, ds.HighBit) == (0, 12, 11)
    assert ds.pixel_array.max() < 4096
    hu_signed = apply_modality_lut(round_trip(signed.instances[0]).pixel_array, signed.instances[0])
    # Unsigned storage cannot go below -1024 HU, where noise takes a few air pixels in the signed one.
    assert np.array_equal(apply_modality_lut(ds.pixel_array, ds), np.maximum(hu_signed, -1024))


def test_ct_window_presets_cover_soft_tissue_lung_and_bone(ct: Study) -> None:
    ds = ct.instances[0]
    assert list(ds.WindowCenterWidthExplanation) == ["SOFT TISSUE", "LUNG", "BONE"]
    assert [float(c) for c in ds.WindowCenter] == [40, -600, 400]
    assert [float(w) for w in ds.WindowWidth] == [400, 1500, 1800]


def test_chinese_patient_name_survives_utf8_encoding() -> None:
    study = generate_ct_study(slices=1, rows=32, columns=32, patient_name="张伟", seed=1, when=WHEN)
    buffer = io.BytesIO()
    study.instances[0].save_as(buffer, enforce_file_format=True)
    raw = buffer.getvalue()
    assert "张^伟".encode() in raw  # ISO_IR 192 is plain UTF-8 on the wire
    back = dcmread(io.BytesIO(raw))
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Zhang^Wei=张^伟"
    assert back.PatientName.ideographic == "张^伟"
    assert back.PatientName.family_name == "Zhang"
    assert back.StudyDescription == "胸部CT平扫"
    assert back.InstitutionName.endswith("县人民医院")


def test_study_and_instance_times_follow_the_visit(ct: Study) -> None:
    ds = ct.instances[0]
    assert ds.StudyDate == "20250314" and ds.StudyTime.startswith("0930")
    assert ds.TimezoneOffsetFromUTC == "+0800"
    assert ds.ContentTime > ds.StudyTime
    assert ds.PatientAge.endswith("Y") and len(ds.PatientAge) == 4


def test_ultrasound_is_a_moving_rgb_cine_loop(us: Study) -> None:
    ds = round_trip(us.instances[0])
    frames = ds.pixel_array
    assert frames.shape == (6, 96, 128, 3)
    assert (ds.PhotometricInterpretation, ds.PlanarConfiguration, ds.NumberOfFrames) == ("RGB", 0, 6)
    assert ds.FrameIncrementPointer == 0x00181063
    assert float(ds.FrameTime) == pytest.approx(40.0)
    assert ds.CineRate == 25
    assert ds.ImageType[3] == "0011"  # 2D plus colour Doppler
    assert np.mean(np.abs(frames[1].astype(int) - frames[0].astype(int))) > 1.0  # speckle moves
    grey = frames[0][..., 0] == frames[0][..., 1]
    assert np.count_nonzero(~grey) > 0  # colour Doppler pixels
    regions = ds.SequenceOfUltrasoundRegions
    assert regions[0].PhysicalUnitsXDirection == 3 and regions[0].PhysicalDeltaX > 0
    assert regions[0].RegionLocationMaxX1 < 128 and regions[0].RegionLocationMaxY1 < 96
    outside_sector = frames[0][0, 0]
    assert not outside_sector.any()


def test_greyscale_ultrasound_is_monochrome2() -> None:
    study = generate_us_study(frames=3, rows=33, columns=41, seed=2, when=WHEN)  # odd pixel count
    ds = round_trip(study.instances[0])
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
    assert "PlanarConfiguration" not in ds
    assert ds.pixel_array.shape == (3, 33, 41)
    assert ds.ImageType[3] == "0001"


def test_dx_is_a_chest_radiograph_for_presentation(dx: Study) -> None:
    ds = round_trip(dx.instances[0])
    image = ds.pixel_array.astype(float)
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert list(ds.PatientOrientation) == ["L", "F"] and ds.ViewPosition == "PA"
    assert ds.AnatomicRegionSequence[0].CodeMeaning == "Chest"
    assert image.max() < 2**ds.BitsStored
    rows, cols = image.shape
    centre_column = image[:, cols // 2 - 3 : cols // 2 + 3].mean()  # spine and mediastinum
    lung_field = image[rows // 3 : rows // 2, cols // 4 - 5 : cols // 4 + 5].mean()  # patient's right lung
    outside = image[rows // 2, :3].mean()  # beside the body: direct exposure
    assert centre_column > lung_field > outside


@pytest.mark.parametrize(
    "call",
    [
        lambda: generate_ct_study(slices=0),
        lambda: generate_ct_study(rows=8),
        lambda: generate_ct_study(bits_stored=14),
        lambda: generate_us_study(frames=0),
        lambda: generate_dx_study(bits_stored=20),
        lambda: generate_study(StudyKind.DX, count=3),
        lambda: generate_study(StudyKind.CT, count=0),
    ],
)
def test_out_of_range_options_raise_a_typed_error(call: object) -> None:
    with pytest.raises(InvalidStudyParametersError):
        call()  # type: ignore[operator]


def test_bad_patient_name_is_rejected_before_any_pixels() -> None:
    with pytest.raises(InvalidPatientNameError):
        generate_ct_study(slices=1, rows=16, columns=16, patient_name="张")


def test_generate_study_dispatches_on_kind() -> None:
    study = generate_study(StudyKind.US, count=2, rows=40, columns=48, seed=1, when=WHEN)
    assert study.kind is StudyKind.US
    assert study.sop_classes() == {US_MULTIFRAME_IMAGE_STORAGE}
    assert study.transfer_syntaxes() == {ExplicitVRLittleEndian}
    assert study.instances[0].NumberOfFrames == 2
