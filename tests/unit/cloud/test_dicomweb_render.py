"""Rendering frames (cloud/dicomweb/render.py): the PS3.3 C.11 VOI functions, parameter parsing, decoding and
encoding of monochrome, inverted, colour and compressed instances."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from pydicom import dcmwrite
from pydicom.dataset import Dataset

from cloud.dicomweb import render
from devices.modality import SYNTAXES_BY_NAME, encode_study, generate_ct_study, generate_us_study


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def decoded(image: bytes) -> NDArray[Any]:
    return np.asarray(Image.open(io.BytesIO(image)))


def test_linear_window_follows_c_11_2_1_2_1() -> None:
    x = np.array([-1000.0, -0.5 - 200, 0.0, 199.5, 1000.0])
    y = render.apply_window(x, render.Window(0, 401, "linear"))
    # x <= c - 0.5 - (w-1)/2 -> 0; x > c - 0.5 + (w-1)/2 -> 1; else ((x - (c - 0.5)) / (w - 1) + 0.5)
    assert y[0] == 0 and y[1] == 0 and y[4] == 1
    assert y[2] == pytest.approx((0 + 0.5) / 400 + 0.5)
    assert y[3] == pytest.approx(1.0)


def test_linear_exact_and_sigmoid_windows() -> None:
    x = np.array([-200.0, 0.0, 100.0, 200.0])
    exact = render.apply_window(x, render.Window(0, 400, "linear-exact"))
    assert exact.tolist() == pytest.approx([0.0, 0.5, 0.75, 1.0])
    sigmoid = render.apply_window(x, render.Window(0, 400, "sigmoid"))
    assert sigmoid[1] == pytest.approx(0.5)
    assert sigmoid[3] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert np.all(np.diff(sigmoid) > 0)


@pytest.mark.parametrize(("text", "expected"), [
    ("-600,1500", render.Window(-600, 1500, "linear")),
    ("40,80,linear-exact", render.Window(40, 80, "linear-exact")),
    (" 50 , 350 , sigmoid", render.Window(50, 350, "sigmoid")),
])
def test_parse_window(text: str, expected: render.Window) -> None:
    assert render.parse_window(text) == expected


@pytest.mark.parametrize("text", ["40", "40,0", "a,b", "40,400,cubic", "40,0.5,linear", "nan,40", "1,2,3,4"])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(render.InvalidRenderParameterError) as caught:
        render.parse_window(text)
    assert caught.value.parameter == "window"


def test_parse_viewport_and_quality() -> None:
    assert render.parse_viewport("256,128") == render.Viewport(256, 128)
    assert render.parse_quality("75") == 75
    for bad in ("0,10", "10", "x,y", "5000,10"):
        with pytest.raises(render.InvalidRenderParameterError):
            render.parse_viewport(bad)
    for bad in ("0", "101", "high"):
        with pytest.raises(render.InvalidRenderParameterError):
            render.parse_quality(bad)


def test_ct_slice_in_hounsfield_units_through_a_lung_window() -> None:
    ds = generate_ct_study(slices=1, rows=32, columns=32, seed=1).instances[0]
    hu = ds.pixel_array.astype(float) + float(ds.RescaleIntercept)
    png = render.render(part10(ds), render.RenderRequest(window=render.Window(-600, 1500, "linear-exact"),
                                                        media_type="image/png"))
    expected = np.rint(np.clip((hu + 600) / 1500 + 0.5, 0, 1) * 255)
    assert np.abs(decoded(png).astype(int) - expected).max() <= 1


def test_default_window_is_the_instances_first_voi_window() -> None:
    ds = generate_ct_study(slices=1, rows=32, columns=32, seed=1).instances[0]
    assert render.default_window(ds) == render.Window(40, 400, "linear")
    as_default = render.render(part10(ds), render.RenderRequest(media_type="image/png"))
    explicit = render.render(part10(ds), render.RenderRequest(window=render.Window(40, 400), media_type="image/png"))
    assert np.array_equal(decoded(as_default), decoded(explicit))


def test_without_a_voi_window_the_value_range_is_stretched() -> None:
    ds = generate_ct_study(slices=1, rows=32, columns=32, seed=1).instances[0]
    for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation"):
        del ds[keyword]
    image = decoded(render.render(part10(ds), render.RenderRequest(media_type="image/png")))
    assert image.min() == 0 and image.max() == 255


def test_monochrome1_is_inverted() -> None:
    ds = generate_ct_study(slices=1, rows=32, columns=32, seed=1).instances[0]
    normal = decoded(render.render(part10(ds), render.RenderRequest(media_type="image/png")))
    ds.PhotometricInterpretation = "MONOCHROME1"
    inverted = decoded(render.render(part10(ds), render.RenderRequest(media_type="image/png")))
    assert np.array_equal(inverted.astype(int), 255 - normal.astype(int))


def test_colour_cine_frames_render_as_rgb_and_out_of_range_frames_fail() -> None:
    ds = generate_us_study(frames=3, rows=32, columns=48, color=True, seed=2).instances[0]
    image = decoded(render.render(part10(ds), render.RenderRequest(frame_index=2, media_type="image/png")))
    assert np.array_equal(image, ds.pixel_array[2])
    with pytest.raises(render.FrameOutOfRangeError):
        render.render(part10(ds), render.RenderRequest(frame_index=3))


@pytest.mark.parametrize("syntax", ["rle", "jpeg-ls", "j2k"])
def test_compressed_instances_are_decoded_losslessly(syntax: str) -> None:
    study = generate_ct_study(slices=1, rows=32, columns=32, seed=4)
    native = render.render(part10(study.instances[0]), render.RenderRequest(media_type="image/png"))
    encoded = encode_study(study, SYNTAXES_BY_NAME[syntax]).instances[0]
    assert np.array_equal(decoded(render.render(part10(encoded), render.RenderRequest(media_type="image/png"))),
                          decoded(native))


def test_jpeg_output_and_viewport() -> None:
    ds = generate_ct_study(slices=1, rows=64, columns=64, seed=1).instances[0]
    jpeg = render.render(part10(ds), render.RenderRequest(viewport=render.Viewport(16, 32)))
    picture = Image.open(io.BytesIO(jpeg))
    assert picture.format == "JPEG" and picture.size == (16, 16)


def test_non_images_are_refused() -> None:
    ds = generate_ct_study(slices=1, rows=16, columns=16, seed=1).instances[0]
    del ds.PixelData
    with pytest.raises(render.UnreadableInstanceError):
        render.render(part10(ds), render.RenderRequest())
    with pytest.raises(render.UnreadableInstanceError):
        render.render(b"not dicom at all" * 20, render.RenderRequest())
