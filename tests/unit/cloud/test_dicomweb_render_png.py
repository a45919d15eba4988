"""The rendered-frame fast paths: the PNG encoder (cloud/dicomweb/png.py) and the decoded-frame LRU."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from cloud.dicomweb import render
from cloud.dicomweb.png import encode_png
from devices.modality import generate_ct_study
from tests.unit.cloud.test_dicomweb_render import part10


def _read(png: bytes) -> tuple[str, NDArray[Any]]:
    picture = Image.open(io.BytesIO(png))
    picture.load()  # checks every chunk's CRC and the zlib stream
    return picture.mode, np.asarray(picture)


@pytest.mark.parametrize("shape", [(512, 512), (37, 1), (1, 53), (3, 5, 3), (64, 31, 3)])
def test_png_round_trips_any_image(shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(len(shape) * 100 + shape[0]).integers(0, 256, shape, dtype=np.uint8)
    mode, pixels = _read(encode_png(image))
    assert mode == ("L" if image.ndim == 2 else "RGB")
    assert np.array_equal(pixels, image)


def test_png_of_a_rendered_ct_slice_equals_pillows() -> None:
    ds = generate_ct_study(slices=1, rows=128, columns=96, seed=7).instances[0]
    spec = render.RenderRequest(window=render.Window(-600, 1500), media_type="image/png")
    pixels, dataset = render.decode_frame(part10(ds), 0)
    image = render.display_frame(pixels, dataset, 0, spec.window)
    pillow = io.BytesIO()
    Image.fromarray(image).save(pillow, format="PNG")
    assert np.array_equal(_read(render.render(part10(ds), spec))[1], _read(pillow.getvalue())[1])


def test_png_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4), dtype=np.uint16))
    with pytest.raises(ValueError):
        encode_png(np.zeros((4, 4, 4), dtype=np.uint8))


def test_viewport_png_is_scaled_down() -> None:
    ds = generate_ct_study(slices=1, rows=64, columns=64, seed=1).instances[0]
    png = render.render(part10(ds), render.RenderRequest(viewport=render.Viewport(16, 32), media_type="image/png"))
    assert Image.open(io.BytesIO(png)).size == (16, 16)


def test_decoded_frames_are_reused_until_evicted(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = render.decode_frame

    def counting(data: bytes, frame_index: int) -> tuple[NDArray[Any], Any]:
        calls.append(frame_index)
        return real(data, frame_index)

    monkeypatch.setattr(render, "decode_frame", counting)
    first, second = (part10(ds) for ds in generate_ct_study(slices=2, rows=32, columns=32, seed=5).instances)
    cache = render.DecodedFrames(max_bytes=32 * 32 * 2)  # room for one int16 frame
    spec = render.RenderRequest(window=render.Window(40, 400), media_type="image/png")
    uncached = render.render(first, spec, cache=None)
    assert render.render(first, spec, cache=cache) == uncached
    assert render.render(first, render.RenderRequest(window=render.Window(-600, 1500)), cache=cache)
    assert len(calls) == 2 and len(cache) == 1  # the uncached render, then one decode for both windows
    render.render(second, spec, cache=cache)  # evicts the first
    render.render(first, spec, cache=cache)
    assert len(calls) == 4 and len(cache) == 1
    pixels, _ = cache.get(first, 0)
    assert not pixels.flags.writeable


def test_the_cache_key_is_the_content_not_the_instance() -> None:
    ds = generate_ct_study(slices=1, rows=16, columns=16, seed=2).instances[0]
    cache = render.DecodedFrames()
    before = render.render(part10(ds), render.RenderRequest(media_type="image/png"), cache=cache)
    ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()
    after = render.render(part10(ds), render.RenderRequest(media_type="image/png"), cache=cache)
    assert len(cache) == 2 and before != after
