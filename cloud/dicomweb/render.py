"""Rendering one frame of a DICOM instance to an 8-bit PNG or JPEG (pure: bytes in, bytes out).

The grayscale pipeline is PS3.3 C.11's: stored values -> Modality LUT (Rescale Slope/Intercept, C.11.1) ->
VOI LUT (window centre/width with the LINEAR, LINEAR_EXACT or SIGMOID function of C.11.2.1.2/C.11.2.1.3) ->
presentation (MONOCHROME1 is inverted) -> 0..255. Colour images (RGB, YBR_* which pydicom converts to RGB,
PALETTE COLOR through its lookup tables) are shown as they are. The window comes from the request
(`window=center,width,function`, PS3.18 8.3.5.1.1), else the instance's first VOI window, else the frame's
value range. Pixel data is decoded by pydicom (compressed syntaxes through the pylibjpeg/pyjpegls plugins).

Latency (the viewer's window drag asks for the same frame again and again): decoded frames are kept in a
small LRU (`DecodedFrames`, keyed by the SHA-256 of the instance's bytes and the frame, bounded in bytes),
and PNGs are written by `cloud.dicomweb.png` (one fixed row filter, zlib's RLE strategy) instead of Pillow.
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array

from cloud.dicomweb.png import encode_png

VoiFunction = Literal["linear", "linear-exact", "sigmoid"]
MediaType = Literal["image/png", "image/jpeg"]

VOI_FUNCTIONS: Final[dict[str, VoiFunction]] = {
    # PS3.18 8.3.5.1.1 names (lower case) and PS3.3 C.11.2.1.3 VOILUTFunction values.
    "linear": "linear", "linear-exact": "linear-exact", "sigmoid": "sigmoid",
    "LINEAR": "linear", "LINEAR_EXACT": "linear-exact", "SIGMOID": "sigmoid",
}
DEFAULT_JPEG_QUALITY: Final = 90
# Decoded frames kept for repeated renders (window drag): a 512x512 CT frame is 0.5 MiB.
DECODED_CACHE_BYTES: Final = 64 * 1024 * 1024
MAX_VIEWPORT: Final = 4096
_GRAYSCALE: Final = frozenset({"MONOCHROME1", "MONOCHROME2"})


class RenderError(Exception):
    """The frame cannot be rendered."""


class UnreadableInstanceError(RenderError):
    """The object is not a DICOM instance whose pixel data pydicom can decode."""


class FrameOutOfRangeError(RenderError):
    """The requested frame number is not in 1..NumberOfFrames."""


class InvalidRenderParameterError(RenderError):
    """A rendering query parameter is malformed; `parameter` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class Window:
    """A VOI window: centre and width in modality units (e.g. HU), and the VOI LUT function."""

    center: float
    width: float
    function: VoiFunction = "linear"


@dataclass(frozen=True, slots=True)
class Viewport:
    """The largest size of the rendered image (aspect ratio kept; images are never enlarged)."""

    width: int
    height: int


@dataclass(frozen=True, slots=True)
class RenderRequest:
    """What the client asked for: the frame (0-based), the window, the viewport and the encoding."""

    frame_index: int = 0
    window: Window | None = None
    viewport: Viewport | None = None
    media_type: MediaType = "image/jpeg"
    quality: int = DEFAULT_JPEG_QUALITY


def parse_window(text: str) -> Window:
    """`center,width[,function]` (PS3.18 8.3.5.1.1); function linear (default), linear-exact or sigmoid."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise InvalidRenderParameterError("window", "expected center,width[,function]")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidRenderParameterError("window", "center and width must be numbers") from None
    if not (math.isfinite(center) and math.isfinite(width)):
        raise InvalidRenderParameterError("window", "center and width must be finite")
    function = VOI_FUNCTIONS.get(parts[2], None) if len(parts) == 3 else "linear"
    if function is None:
        raise InvalidRenderParameterError("window", "function must be linear, linear-exact or sigmoid")
    # C.11.2.1.2.1: LINEAR needs width >= 1; C.11.2.1.3: LINEAR_EXACT and SIGMOID need width > 0.
    if width < 1 if function == "linear" else width <= 0:
        raise InvalidRenderParameterError("window", "width too small for the function")
    return Window(center, width, function)


def parse_viewport(text: str) -> Viewport:
    """`vw,vh` (PS3.18 8.3.5.1.3, without the source-region form)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise InvalidRenderParameterError("viewport", "expected vw,vh in pixels")
    width, height = int(parts[0]), int(parts[1])
    if not (1 <= width <= MAX_VIEWPORT and 1 <= height <= MAX_VIEWPORT):
        raise InvalidRenderParameterError("viewport", f"vw and vh must be 1..{MAX_VIEWPORT}")
    return Viewport(width, height)


def parse_quality(text: str) -> int:
    """JPEG quality 1..100 (PS3.18 8.3.5.1.2)."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 100:
        raise InvalidRenderParameterError("quality", "quality must be 1..100")
    return int(text)


# --- VOI LUT functions (PS3.3 C.11.2.1.2 and C.11.2.1.3), output in [0, 1] -------------------------------


def apply_window(values: NDArray[Any], window: Window) -> NDArray[np.float32]:
    """Map modality values through the window to [0, 1]."""
    x = values.astype(np.float32, copy=False)
    c, w = np.float32(window.center), np.float32(window.width)
    if window.function == "sigmoid":
        # C.11.2.1.3.1: y = 1 / (1 + exp(-4 (x - c) / w)) (ymin = 0, ymax = 1)
        out: NDArray[np.float32] = 1.0 / (1.0 + np.exp(np.float32(-4.0) * (x - c) / w))
        return out.astype(np.float32, copy=False)
    if window.function == "linear-exact":
        # C.11.2.1.3.2: (x - c) / w + 0.5, clipped
        scaled = (x - c) / w + np.float32(0.5)
    else:
        # C.11.2.1.2.1: ((x - (c - 0.5)) / (w - 1) + 0.5), clipped; w == 1 is a threshold at c - 0.5
        if window.width == 1:
            return (x > c - np.float32(0.5)).astype(np.float32)
        scaled = (x - (c - np.float32(0.5))) / (w - np.float32(1)) + np.float32(0.5)
    return np.clip(scaled, 0.0, 1.0, out=scaled)


# --- the instance's own attributes ------------------------------------------------------------------------


def _first(value: Any) -> float | None:
    """The first value of a possibly multi-valued numeric attribute."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _functional_item(ds: Dataset, frame_index: int, sequence: str) -> Dataset | None:
    """The first item of `sequence` for a frame of an enhanced multi-frame object (PS3.3 C.7.6.16):
    per-frame groups override the shared ones."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame_index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items is not None and len(items) > index:
            nested = items[index].get(sequence)
            if nested is not None and len(nested) > 0:
                item: Dataset = nested[0]
                return item
    return None


def modality_rescale(ds: Dataset, frame_index: int = 0) -> tuple[float, float]:
    """(slope, intercept) of the Modality LUT (C.11.1), from the dataset or its functional groups."""
    source: Dataset = ds
    if "RescaleSlope" not in ds:
        source = _functional_item(ds, frame_index, "PixelValueTransformationSequence") or ds
    slope = _first(source.get("RescaleSlope"))
    intercept = _first(source.get("RescaleIntercept"))
    return (slope if slope not in (None, 0.0) else 1.0), (intercept if intercept is not None else 0.0)


def default_window(ds: Dataset, frame_index: int = 0) -> Window | None:
    """The instance's first VOI window (C.11.2), if it has one."""
    source: Dataset = ds
    if "WindowCenter" not in ds:
        source = _functional_item(ds, frame_index, "FrameVOILUTSequence") or ds
    center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    function = VOI_FUNCTIONS.get(str(source.get("VOILUTFunction", "LINEAR")), "linear")
    if function == "linear" and width < 1:
        return None
    return Window(center, width, function)


# --- decoding and rendering --------------------------------------------------------------------------------


def number_of_frames(ds: Dataset) -> int:
    """NumberOfFrames, 1 when absent (single-frame IODs)."""
    value = ds.get("NumberOfFrames")
    try:
        return max(1, int(value)) if value not in (None, "") else 1
    except (TypeError, ValueError):
        return 1


def decode_frame(data: bytes, frame_index: int) -> tuple[NDArray[Any], Dataset]:
    """The frame's pixel array (colour converted to RGB) and the instance's dataset, decoding only that frame."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data))
            if "PixelData" not in ds:
                raise UnreadableInstanceError("the instance has no pixel data")
            frames = number_of_frames(ds)
            if not 0 <= frame_index < frames:
                raise FrameOutOfRangeError(f"frame {frame_index + 1} is not in 1..{frames}")
            pixels = pixel_array(ds, index=frame_index)
    except RenderError:
        raise
    except (InvalidDicomError, ValueError, TypeError, AttributeError, KeyError, RuntimeError,
            NotImplementedError) as exc:
        raise UnreadableInstanceError(f"cannot decode the pixel data: {exc}") from exc
    return pixels, ds


class DecodedFrames:
    """An LRU of decoded frames (pixel array and dataset without its pixel data), at most `max_bytes` of pixels.

    Keyed by the SHA-256 of the instance's bytes, so a replaced object can never be served from the cache.
    The arrays are read-only: rendering always works on copies. Thread-safe (renders run in a thread pool).
    """

    def __init__(self, max_bytes: int = DECODED_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[bytes, int], tuple[NDArray[Any], Dataset]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, data: bytes, frame_index: int) -> tuple[NDArray[Any], Dataset]:
        """The frame's pixel array and the instance's dataset, decoded once per (bytes, frame)."""
        key = (hashlib.sha256(data).digest(), frame_index)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        pixels, ds = decode_frame(data, frame_index)  # outside the lock: decoding may take a while
        pixels.flags.writeable = False
        if "PixelData" in ds:
            del ds.PixelData  # the cached dataset is for its attributes only
        if pixels.nbytes <= self.max_bytes:
            with self._lock:
                if key not in self._entries:
                    self._entries[key] = (pixels, ds)
                    self._bytes += pixels.nbytes
                while self._bytes > self.max_bytes:
                    _, (old, _) = self._entries.popitem(last=False)
                    self._bytes -= old.nbytes
        return pixels, ds

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)


DECODED = DecodedFrames()


def _to_gray8(pixels: NDArray[Any], ds: Dataset, frame_index: int, window: Window | None) -> NDArray[np.uint8]:
    slope, intercept = modality_rescale(ds, frame_index)
    values = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    chosen = window or default_window(ds, frame_index)
    if chosen is None:
        low, high = float(values.min()), float(values.max())
        chosen = Window((low + high) / 2.0, max(high - low, 1.0), "linear-exact")
    unit = apply_window(values, chosen)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        unit = np.float32(1.0) - unit  # C.7.6.3.1.2: minimum value is white
    out: NDArray[np.uint8] = np.rint(unit * np.float32(255.0)).astype(np.uint8)
    return out


def _to_rgb8(pixels: NDArray[Any], ds: Dataset) -> NDArray[np.uint8]:
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    bits = int(ds.get("BitsStored", 8)) if photometric != "PALETTE COLOR" else 16
    if pixels.dtype != np.uint8:
        shift = max(0, bits - 8)
        pixels = (pixels.astype(np.uint32) >> shift).clip(0, 255)
    out: NDArray[np.uint8] = pixels.astype(np.uint8)
    return out


def display_frame(pixels: NDArray[Any], ds: Dataset, frame_index: int, window: Window | None) -> NDArray[np.uint8]:
    """The frame as 8-bit grayscale (H, W) or RGB (H, W, 3) ready for encoding."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric in _GRAYSCALE and pixels.ndim == 2:
        return _to_gray8(pixels, ds, frame_index, window)
    if (pixels.ndim == 3 and pixels.shape[-1] == 3) or photometric == "PALETTE COLOR":
        return _to_rgb8(pixels, ds)
    raise UnreadableInstanceError(f"cannot render photometric interpretation {photometric or 'unknown'}")


def encode_image(image: NDArray[np.uint8], *, media_type: MediaType, quality: int = DEFAULT_JPEG_QUALITY,
                 viewport: Viewport | None = None) -> bytes:
    """PNG or baseline JPEG bytes of an 8-bit image, scaled down to fit `viewport` when given."""
    height, width = image.shape[:2]
    if viewport is not None and (width > viewport.width or height > viewport.height):
        picture = Image.fromarray(image)
        picture.thumbnail((viewport.width, viewport.height), Image.Resampling.BILINEAR)
        image = np.asarray(picture)
    if media_type == "image/png":
        return encode_png(image)
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def render(data: bytes, request: RenderRequest, *, cache: DecodedFrames | None = DECODED) -> bytes:
    """The encoded image of one frame of the instance in `data` (a DICOM Part 10 file)."""
    pixels, ds = cache.get(data, request.frame_index) if cache is not None else decode_frame(data,
                                                                                               request.frame_index)
    image = display_frame(pixels, ds, request.frame_index, request.window)
    return encode_image(image, media_type=request.media_type, quality=request.quality, viewport=request.viewport)
