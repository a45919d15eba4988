"""The DICOM File Format (PS3.10 section 7): the preamble and File Meta Information around an encoded dataset.

The SCP wraps every received dataset in a file of its own making: writing the few group 0002 elements here
costs microseconds, where building them as a pydicom dataset cost about a millisecond per instance.
"""

from __future__ import annotations

import struct
from typing import Final

from edge.dicom.errors import UnreadableDatasetError
from proto.messages import DICOM_UID

PREAMBLE: Final = b"\x00" * 128
MAGIC: Final = b"DICM"
# Our Implementation Class UID (PS3.7 D.3.3.2), a UUID-derived UID under 2.25 (PS3.5 B.2), and version name.
IMPLEMENTATION_CLASS_UID: Final = "2.25.281151586270869514832065347279787564582"
IMPLEMENTATION_VERSION_NAME: Final = "TELEMED_EDGE_1"

# VRs of the meta elements we read or write whose length field is 4 bytes (PS3.5 Table 7.1-1).
_LONG_VRS: Final = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                              b"UT", b"UV"})


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii")
    return raw + pad if len(raw) % 2 else raw  # values have even length (PS3.5 7.1.1)


def _short(element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def encode_file_meta(*, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str) -> bytes:
    """Preamble, prefix and File Meta Information (always Explicit VR Little Endian, PS3.10 7.1).

    The bytes depend on nothing but the instance and its transfer syntax (no Source AE Title, no time), so
    the same instance received twice makes the same file and the same hash: a duplicate, not a conflict.
    """
    elements = [
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",  # File Meta Information Version
        _short(0x0002, b"UI", _padded(sop_class_uid, b"\x00")),  # Media Storage SOP Class UID
        _short(0x0003, b"UI", _padded(sop_instance_uid, b"\x00")),  # Media Storage SOP Instance UID
        _short(0x0010, b"UI", _padded(transfer_syntax_uid, b"\x00")),  # Transfer Syntax UID
        _short(0x0012, b"UI", _padded(IMPLEMENTATION_CLASS_UID, b"\x00")),
        _short(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION_NAME, b" ")),
    ]
    body = b"".join(elements)
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return PREAMBLE + MAGIC + group_length + body


def read_file_meta(encoded: bytes) -> tuple[str, int]:
    """(Transfer Syntax UID, offset of the dataset) of a PS3.10 file given as bytes."""
    if len(encoded) < len(PREAMBLE) + 4 + 12 or encoded[len(PREAMBLE) : len(PREAMBLE) + 4] != MAGIC:
        raise UnreadableDatasetError("not a PS3.10 file: no DICM prefix after the preamble")
    pos = len(PREAMBLE) + 4
    transfer_syntax = ""
    end = len(encoded)
    while pos + 8 <= end:
        group, element = struct.unpack_from("<HH", encoded, pos)
        if group != 0x0002:
            break
        vr = encoded[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise UnreadableDatasetError("truncated file meta element")
            (length,) = struct.unpack_from("<I", encoded, pos + 8)
            pos += 12
        else:
            (length,) = struct.unpack_from("<H", encoded, pos + 6)
            pos += 8
        if pos + length > end:
            raise UnreadableDatasetError("file meta element runs past the end of the data")
        if element == 0x0010:
            transfer_syntax = encoded[pos : pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos += length
    if not DICOM_UID.match(transfer_syntax):
        raise UnreadableDatasetError("file meta has no valid Transfer Syntax UID")
    return transfer_syntax, pos
