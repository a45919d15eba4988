"""Read the indexed attributes of a received instance from its encoded bytes, never touching pixel data.

A C-STORE handler runs once per instance on the association's thread, so this is on the hot path. The fast
path walks the top-level data elements of the encoded dataset (PS3.5 section 7.1) up to the last attribute
we need, (0020,0013) Instance Number, skipping values by their length; it handles implicit and explicit VR
in either byte order and sequences of defined or undefined length (PS3.5 section 7.5). Anything it does not
handle (a deflated transfer syntax, an undefined-length UN, a malformed element) goes to pydicom, which is
the reference: tests check that both agree.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Final

from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_partial
from pydicom.tag import BaseTag, Tag

from edge.dicom.errors import MissingAttributeError, UnreadableDatasetError
from edge.dicom.models import InstanceHeader
from edge.dicom.part10 import read_file_meta
from proto.messages import DICOM_UID

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN: Final = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"
_DEFLATED: Final = frozenset({DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.8.1"})  # + JPIP deflate

# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1); the others have a
# 2-byte length (Table 7.1-2).
_LONG_VRS: Final = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                              b"UT", b"UV"})
_UNDEFINED: Final = 0xFFFFFFFF
_ITEM: Final = 0xFFFEE000
_ITEM_END: Final = 0xFFFEE00D
_SEQUENCE_END: Final = 0xFFFEE0DD

# The attributes we index, by tag; the walk stops after the highest one.
_CHARSET: Final = 0x00080005
_WANTED: Final[dict[int, str]] = {
    0x00080016: "sop_class_uid",
    0x00080018: "sop_instance_uid",
    0x00080020: "study_date",
    0x00080030: "study_time",
    0x00080050: "accession_number",
    0x00080060: "modality",
    0x00081030: "study_description",
    0x0008103E: "series_description",
    0x00100010: "patient_name",
    0x00100020: "patient_id",
    0x0020000D: "study_instance_uid",
    0x0020000E: "series_instance_uid",
    0x00200010: "study_id",
    0x00200011: "series_number",
    0x00200013: "instance_number",
}
_LAST_WANTED: Final = max(_WANTED)
_UIDS: Final = ("sop_instance_uid", "sop_class_uid", "study_instance_uid", "series_instance_uid")
_KEYWORDS: Final = {
    "sop_instance_uid": "SOPInstanceUID",
    "sop_class_uid": "SOPClassUID",
    "study_instance_uid": "StudyInstanceUID",
    "series_instance_uid": "SeriesInstanceUID",
}
# Text attributes that may carry non-ASCII characters in the dataset's Specific Character Set.
_TEXT: Final = frozenset({"study_description", "series_description", "patient_id", "patient_name", "accession_number",
                         "study_id"})


class _Unhandled(Exception):
    """The fast path cannot read this dataset; pydicom decides."""


def read_header(encoded: bytes) -> InstanceHeader:
    """The indexed attributes of a PS3.10 file (preamble, file meta, dataset) given as bytes.

    Raises UnreadableDatasetError if the bytes do not parse, MissingAttributeError if a required UID is
    absent or invalid.
    """
    transfer_syntax, offset = read_file_meta(encoded)
    try:
        if transfer_syntax in _DEFLATED:
            raise _Unhandled("deflated")
        raw = _walk(encoded, offset, transfer_syntax)
        values = _decode(raw)
    except _Unhandled:
        values = _read_with_pydicom(encoded)
    return _header(values, transfer_syntax)


# --- fast path ------------------------------------------------------------------------------------------------


def _walk(data: bytes, pos: int, transfer_syntax: str) -> dict[int, bytes]:
    """Raw values of the wanted top-level elements, walking the dataset from `pos`."""
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
    endian = ">" if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN else "<"
    header = struct.Struct(endian + "HH")
    long_length = struct.Struct(endian + "I")
    short_length = struct.Struct(endian + "H")
    end = len(data)
    found: dict[int, bytes] = {}

    def element_at(at: int) -> tuple[int, int, int, bool]:
        """(tag, value length, value offset, is a sequence or undefined-length value) of the element at `at`."""
        if at + 8 > end:
            raise _Unhandled("truncated element header")
        group, elem = header.unpack_from(data, at)
        tag = (group << 16) | elem
        if implicit or group == 0xFFFE:
            (length,) = long_length.unpack_from(data, at + 4)
            return tag, length, at + 8, length == _UNDEFINED
        vr = data[at + 4 : at + 6]
        if vr in _LONG_VRS:
            if at + 12 > end:
                raise _Unhandled("truncated element header")
            (length,) = long_length.unpack_from(data, at + 8)
            if length == _UNDEFINED and vr != b"SQ":
                raise _Unhandled(f"undefined length {vr!r}")  # UN/OB of undefined length: pydicom's job
            return tag, length, at + 12, vr == b"SQ"
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise _Unhandled("not an explicit VR")
        (length,) = short_length.unpack_from(data, at + 6)
        return tag, length, at + 8, False

    def skip_sequence(at: int) -> int:
        """The offset after an undefined-length sequence whose first item starts at `at`."""
        while True:
            tag, length, value_at, _ = element_at(at)
            if tag == _SEQUENCE_END:
                return value_at
            if tag != _ITEM:
                raise _Unhandled(f"unexpected tag {tag:08X} in a sequence")
            if length != _UNDEFINED:
                at = value_at + length
                continue
            at = value_at
            while True:  # an undefined-length item: its elements until the item delimiter
                tag, length, value_at, _ = element_at(at)
                if tag == _ITEM_END:
                    at = value_at
                    break
                at = skip_sequence(value_at) if length == _UNDEFINED else value_at + length

    while pos < end:
        tag, length, value_at, _ = element_at(pos)
        if tag > _LAST_WANTED:
            break
        if length == _UNDEFINED:
            pos = skip_sequence(value_at)
            continue
        if value_at + length > end:
            raise _Unhandled("value runs past the end of the data")
        if tag in _WANTED or tag == _CHARSET:
            found[tag] = data[value_at : value_at + length]
        pos = value_at + length
    return found


def _decode(raw: dict[int, bytes]) -> dict[str, str]:
    charset = raw.get(_CHARSET, b"").decode("ascii", "replace").strip()
    encodings: list[str] | None = None
    values: dict[str, str] = {}
    for tag, name in _WANTED.items():
        value = raw.get(tag)
        if value is None:
            continue
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            if name not in _TEXT:
                raise _Unhandled(f"non-ASCII {name}") from None
            if encodings is None:
                encodings = convert_encodings([c.strip() for c in charset.split("\\")] or ["ISO_IR 6"])
            text = decode_bytes(value, encodings, set())
        values[name] = text.strip("\x00 ")
    return values


# --- reference path -------------------------------------------------------------------------------------------


def _stop_after_wanted(tag: BaseTag, vr: str | None, length: int) -> bool:
    return bool(tag > _LAST_WANTED)


_PYDICOM_TAGS: Final[list[BaseTag | int]] = [Tag(t) for t in (*_WANTED, _CHARSET)]


def _read_with_pydicom(encoded: bytes) -> dict[str, str]:
    try:
        with warnings.catch_warnings(), pydicom_config.disable_value_validation():
            warnings.simplefilter("ignore")
            dataset = read_partial(io.BytesIO(encoded), stop_when=_stop_after_wanted, specific_tags=_PYDICOM_TAGS)
            values: dict[str, str] = {}
            for tag, name in _WANTED.items():
                element = dataset.get(Tag(tag))
                if element is None or element.value is None:
                    continue
                value = element.value
                if isinstance(value, bytes):
                    value = value.decode("ascii", "replace")
                values[name] = str(value).strip("\x00 ")
            return values
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError, struct.error,
            NotImplementedError, AttributeError, OverflowError, MemoryError) as exc:
        raise UnreadableDatasetError(f"the dataset does not parse: {type(exc).__name__}") from None


# --- validation -----------------------------------------------------------------------------------------------


def _integer(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text.split("\\")[0].strip())
    except ValueError:
        return None


def _header(values: dict[str, str], transfer_syntax: str) -> InstanceHeader:
    for name in _UIDS:
        uid = values.get(name, "")
        if not uid:
            raise MissingAttributeError(_KEYWORDS[name])
        if len(uid) > 64 or not DICOM_UID.match(uid):
            raise MissingAttributeError(_KEYWORDS[name], "not a valid UID")
    return InstanceHeader(
        sop_instance_uid=values["sop_instance_uid"],
        sop_class_uid=values["sop_class_uid"],
        transfer_syntax_uid=transfer_syntax,
        study_instance_uid=values["study_instance_uid"],
        series_instance_uid=values["series_instance_uid"],
        patient_id=values.get("patient_id", ""),
        patient_name=values.get("patient_name", ""),
        study_id=values.get("study_id", ""),
        study_date=values.get("study_date", ""),
        study_time=values.get("study_time", ""),
        accession_number=values.get("accession_number", ""),
        study_description=values.get("study_description", ""),
        modality=values.get("modality", ""),
        series_number=_integer(values.get("series_number")),
        series_description=values.get("series_description", ""),
        instance_number=_integer(values.get("instance_number")),
    )
