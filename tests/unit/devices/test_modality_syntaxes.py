"""Re-encoding for other transfer syntaxes is lossless, and missing encoder plugins are reported clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless

from devices.modality.errors import EncoderUnavailableError
from devices.modality.studies import Study, generate_ct_study, generate_dx_study, generate_us_study
from devices.modality.syntaxes import (
    SYNTAX_OPTIONS,
    SYNTAXES_BY_NAME,
    available_syntaxes,
    encode_instance,
    encode_study,
    missing_encoder_dependencies,
    to_native,
)


@pytest.fixture(scope="module")
def studies() -> list[Study]:
    return [
        generate_ct_study(slices=2, rows=48, columns=64, seed=1),
        generate_ct_study(slices=1, rows=32, columns=32, bits_stored=12, seed=2),
        generate_us_study(frames=3, rows=40, columns=56, color=True, seed=3),
        generate_us_study(frames=2, rows=40, columns=56, seed=4),
        generate_dx_study(rows=64, columns=48, seed=5),
    ]


def written(ds: object) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
    return buffer.getvalue()


@pytest.mark.parametrize("name", [option.name for option in available_syntaxes()])
def test_every_available_syntax_decodes_back_to_the_same_pixels(name: str, studies: list[Study]) -> None:
    option = SYNTAXES_BY_NAME[name]
    for study in studies:
        encoded = encode_study(study, option)
        for original, ds in zip(study.instances, encoded.instances, strict=True):
            back = dcmread(io.BytesIO(written(ds)))
            assert back.file_meta.TransferSyntaxUID == option.uid
            assert back.SOPInstanceUID == original.SOPInstanceUID  # lossless: same instance
            assert np.array_equal(back.pixel_array, original.pixel_array)
            assert back.PatientName == original.PatientName


def test_rle_and_deflate_are_always_available_and_shrink_a_ct_slice(studies: list[Study]) -> None:
    names = {option.name for option in available_syntaxes()}
    assert {"explicit", "implicit", "deflate", "rle"} <= names
    native = len(written(studies[0].instances[0]))
    for name in ("rle", "deflate"):
        assert len(written(encode_instance(studies[0].instances[0], SYNTAXES_BY_NAME[name]))) < native


def test_encoding_leaves_the_original_untouched(studies: list[Study]) -> None:
    original = studies[0].instances[0]
    pixel_data = original.PixelData
    encode_instance(original, SYNTAXES_BY_NAME["rle"])
    assert original.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert original.PixelData == pixel_data


@pytest.mark.parametrize("option", SYNTAX_OPTIONS, ids=lambda option: option.name)
def test_a_syntax_either_encodes_or_names_what_to_install(option: object, studies: list[Study]) -> None:
    from devices.modality.syntaxes import SyntaxOption

    assert isinstance(option, SyntaxOption)
    missing = missing_encoder_dependencies(option)
    instance = studies[1].instances[0]
    if missing:
        with pytest.raises(EncoderUnavailableError) as caught:
            encode_instance(instance, option)
        assert caught.value.missing == missing
        assert option.uid.name in str(caught.value)
        assert option not in available_syntaxes()
    else:
        assert encode_instance(instance, option).file_meta.TransferSyntaxUID == option.uid


@pytest.mark.parametrize("uid", [RLELossless, DeflatedExplicitVRLittleEndian])
def test_to_native_gives_explicit_vr_with_identical_pixels(uid: str, studies: list[Study]) -> None:
    option = next(o for o in SYNTAX_OPTIONS if o.uid == uid)
    original = studies[2].instances[0]
    native = to_native(encode_instance(original, option))
    assert native.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert native.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(dcmread(io.BytesIO(written(native))).pixel_array, original.pixel_array)
