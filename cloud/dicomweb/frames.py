"""Bytes for WADO-RS: pixel data frames, instances in Explicit VR Little Endian, multipart/related bodies (pure).

Frames (PS3.18 8.7.3.5 and Table 8.7.3-5): uncompressed frames are application/octet-stream in Explicit VR
Little Endian (sliced from native pixel data, or decoded by pydicom when stored compressed, deflated or big
endian); with `transfer-syntax=*` a compressed frame is sent as stored, as image/jpeg, image/jls, image/jp2,
image/jpx, image/jphc or image/dicom-rle. Multipart bodies are RFC 2387 multipart/related (PS3.18 8.7.3.1).
"""

from __future__ import annotations

import io
import secrets
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, Final

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

OCTET_STREAM: Final = "application/octet-stream"
DICOM: Final = "application/dicom"

# PS3.18 Table 8.7.3-5: the media type of a compressed frame by its transfer syntax.
COMPRESSED_MEDIA_TYPES: Final[dict[str, str]] = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx", "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc", "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}
_NATIVE_LE: Final = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


class FrameError(Exception):
    """The requested bytes cannot be produced from this instance."""


class FrameNotFoundError(FrameError):
    """A frame number outside 1..NumberOfFrames, or an instance without pixel data."""


class TranscodeError(FrameError):
    """The instance cannot be converted to the requested transfer syntax."""


def read_dataset(data: bytes) -> Dataset:
    """The whole instance (FrameError when it is not readable DICOM)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dcmread(io.BytesIO(data))
    except (InvalidDicomError, ValueError, EOFError, OSError) as exc:
        raise FrameError(f"not a readable DICOM instance: {exc}") from exc


def frame_count(ds: Dataset) -> int:
    """NumberOfFrames (1 when absent)."""
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def transfer_syntax(ds: Dataset) -> UID:
    return UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))


def _check(ds: Dataset, numbers: Iterable[int]) -> list[int]:
    if "PixelData" not in ds:
        raise FrameNotFoundError("the instance has no pixel data")
    count = frame_count(ds)
    indices = []
    for number in numbers:
        if not 1 <= number <= count:
            raise FrameNotFoundError(f"frame {number} is not in 1..{count}")
        indices.append(number - 1)
    return indices


def _native_frame(ds: Dataset, index: int) -> bytes:
    """One frame in Explicit VR Little Endian byte order."""
    syntax = transfer_syntax(ds)
    bits = int(ds.get("BitsAllocated", 8))
    if syntax in _NATIVE_LE and bits % 8 == 0:
        length = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
        data: bytes = ds.PixelData
        return bytes(data[index * length:(index + 1) * length])
    try:
        array: np.ndarray[Any, Any] = pixel_array(ds, index=index, as_rgb=False)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError) as exc:
        raise TranscodeError(f"cannot decode the pixel data: {exc}") from exc
    return bytes(np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).tobytes())


def stored_media_type(ds: Dataset) -> str | None:
    """The media type of the instance's frames as stored, None for native (uncompressed) pixel data."""
    return COMPRESSED_MEDIA_TYPES.get(str(transfer_syntax(ds)))


def frames(ds: Dataset, numbers: Iterable[int], *, as_stored: bool) -> list[bytes]:
    """Frames `numbers` (1-based): the stored compressed bitstreams when `as_stored` and the instance is
    compressed, else uncompressed in Explicit VR Little Endian byte order."""
    indices = _check(ds, numbers)
    if as_stored and stored_media_type(ds) is not None:
        count = frame_count(ds)
        return [get_frame(ds.PixelData, i, number_of_frames=count) for i in indices]
    return [_native_frame(ds, i) for i in indices]


def element_bytes(ds: Dataset, key: str) -> bytes:
    """The value of a binary element (bulk data) of the instance, as stored."""
    tag = int(key, 16)
    if tag not in ds:
        raise FrameNotFoundError(f"the instance has no element {key}")
    value = ds[tag].value
    if not isinstance(value, bytes | bytearray):
        raise FrameNotFoundError(f"element {key} is not bulk data")
    return bytes(value)


def to_explicit_little_endian(data: bytes) -> bytes:
    """The instance re-encoded in Explicit VR Little Endian (decompressing its pixel data if needed)."""
    ds = read_dataset(data)
    if transfer_syntax(ds) == ExplicitVRLittleEndian:
        return data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if transfer_syntax(ds).is_compressed:
                ds.decompress()  # sets the transfer syntax to Explicit VR Little Endian
            else:
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError) as exc:
        raise TranscodeError(f"cannot convert to Explicit VR Little Endian: {exc}") from exc
    return out.getvalue()


# --- multipart/related --------------------------------------------------------------------------------------


def new_boundary() -> str:
    """A boundary that cannot occur in the parts (RFC 2046 5.1.1: at most 70 characters)."""
    return "telemed-" + secrets.token_hex(16)


def multipart_content_type(boundary: str, part_type: str, transfer_syntax_uid: str | None = None) -> str:
    """The Content-Type of a multipart/related response (PS3.18 8.7.3.1)."""
    value = f'multipart/related; type="{part_type}"; boundary={boundary}'
    if transfer_syntax_uid is not None:
        value += f"; transfer-syntax={transfer_syntax_uid}"
    return value


def part(boundary: str, content_type: str, data: bytes, *, location: str | None = None) -> bytes:
    """One body part with its delimiter line."""
    head = f"--{boundary}\r\nContent-Type: {content_type}\r\n"
    if location is not None:
        head += f"Content-Location: {location}\r\n"
    return head.encode("ascii") + f"Content-Length: {len(data)}\r\n\r\n".encode("ascii") + data + b"\r\n"


def closing(boundary: str) -> bytes:
    """The close delimiter."""
    return f"--{boundary}--\r\n".encode("ascii")


def multipart_body(boundary: str, parts: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """The chunks of a whole body from (content type, data) pairs."""
    for content_type, data in parts:
        yield part(boundary, content_type, data)
    yield closing(boundary)
