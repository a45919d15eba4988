"""QIDO-RS search parameters and attribute matching over DICOM JSON (pure).

Query parameters follow PS3.18 8.3.4: `{attributeID}={value}` (keyword or 8-hex-digit tag), `includefield`
(repeatable, comma-separated, or `all`), `fuzzymatching`, `limit` and `offset`. Matching follows PS3.4
C.2.2.2: single value, list of UIDs (backslash-separated), universal (empty), wildcard (`*`, `?`) on string
VRs, and range matching (`a-b`, `-b`, `a-`) on DA, TM and DT. A multi-valued attribute matches when any value
does. With fuzzymatching, person names match case-insensitively on any component group.

The attributes a search returns by default per level are PS3.18 Tables 10.6.3-3 (study), 10.6.3-4
(series) and 10.6.3-5 (instance).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

Level = Literal["study", "series", "instance"]
Attributes = dict[str, Any]  # DICOM JSON (PS3.18 F.2): {"0020000D": {"vr": "UI", "Value": [...]}}

MAX_LIMIT: Final = 1000

# Tags as DICOM JSON keys (8 upper-case hex digits).
SPECIFIC_CHARACTER_SET: Final = "00080005"
STUDY_DATE: Final = "00080020"
STUDY_TIME: Final = "00080030"
ACCESSION_NUMBER: Final = "00080050"
INSTANCE_AVAILABILITY: Final = "00080056"
MODALITIES_IN_STUDY: Final = "00080061"
MODALITY: Final = "00080060"
REFERRING_PHYSICIAN: Final = "00080090"
TIMEZONE_OFFSET: Final = "00080201"
STUDY_DESCRIPTION: Final = "00081030"
SERIES_DESCRIPTION: Final = "0008103E"
RETRIEVE_URL: Final = "00081190"
SOP_CLASS_UID: Final = "00080016"
SOP_INSTANCE_UID: Final = "00080018"
PATIENT_NAME: Final = "00100010"
PATIENT_ID: Final = "00100020"
PATIENT_BIRTH_DATE: Final = "00100030"
PATIENT_SEX: Final = "00100040"
STUDY_INSTANCE_UID: Final = "0020000D"
SERIES_INSTANCE_UID: Final = "0020000E"
STUDY_ID: Final = "00200010"
SERIES_NUMBER: Final = "00200011"
INSTANCE_NUMBER: Final = "00200013"
STUDY_RELATED_SERIES: Final = "00201206"
STUDY_RELATED_INSTANCES: Final = "00201208"
SERIES_RELATED_INSTANCES: Final = "00201209"
PPS_START_DATE: Final = "00400244"
PPS_START_TIME: Final = "00400245"
ROWS: Final = "00280010"
COLUMNS: Final = "00280011"
BITS_ALLOCATED: Final = "00280100"
NUMBER_OF_FRAMES: Final = "00280008"

STUDY_ATTRIBUTES: Final = (
    SPECIFIC_CHARACTER_SET, STUDY_DATE, STUDY_TIME, ACCESSION_NUMBER, INSTANCE_AVAILABILITY, MODALITIES_IN_STUDY,
    REFERRING_PHYSICIAN, TIMEZONE_OFFSET, STUDY_DESCRIPTION, RETRIEVE_URL, PATIENT_NAME, PATIENT_ID,
    PATIENT_BIRTH_DATE, PATIENT_SEX, STUDY_INSTANCE_UID, STUDY_ID, STUDY_RELATED_SERIES, STUDY_RELATED_INSTANCES,
)
SERIES_ATTRIBUTES: Final = (
    SPECIFIC_CHARACTER_SET, MODALITY, TIMEZONE_OFFSET, SERIES_DESCRIPTION, RETRIEVE_URL, SERIES_INSTANCE_UID,
    SERIES_NUMBER, SERIES_RELATED_INSTANCES, PPS_START_DATE, PPS_START_TIME,
)
INSTANCE_ATTRIBUTES: Final = (
    SPECIFIC_CHARACTER_SET, SOP_CLASS_UID, SOP_INSTANCE_UID, INSTANCE_AVAILABILITY, TIMEZONE_OFFSET, RETRIEVE_URL,
    INSTANCE_NUMBER, ROWS, COLUMNS, BITS_ALLOCATED, NUMBER_OF_FRAMES,
)
LEVEL_ATTRIBUTES: Final[dict[Level, tuple[str, ...]]] = {
    "study": STUDY_ATTRIBUTES, "series": SERIES_ATTRIBUTES, "instance": INSTANCE_ATTRIBUTES,
}

_WILDCARD_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_RANGE_VRS: Final = frozenset({"DA", "TM", "DT"})
_CONTROL: Final = frozenset({"includefield", "fuzzymatching", "limit", "offset"})
_HEX_TAG: Final = re.compile(r"^[0-9A-Fa-f]{8}$")


class QueryError(ValueError):
    """A search parameter that is malformed or not supported; `parameter` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def resolve_attribute(attribute_id: str) -> tuple[str, str]:
    """(JSON tag key, VR) of a keyword or 8-hex-digit tag; QueryError for anything else."""
    if _HEX_TAG.match(attribute_id):
        tag = int(attribute_id, 16)
    else:
        found = tag_for_keyword(attribute_id)
        if found is None:
            raise QueryError(attribute_id, f"unknown attribute {attribute_id!r} (sequence paths are not supported)")
        tag = found
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise QueryError(attribute_id, f"attribute {attribute_id} is not in the data dictionary") from None
    return f"{tag:08X}", vr


def attribute_name(key: str) -> str:
    """The keyword of a JSON tag key, or the key itself (private or unknown tags)."""
    return keyword_for_tag(int(key, 16)) or key


# --- value normalisation for range matching ---------------------------------------------------------------

# Missing trailing components of a TM or DT bound are filled with the lowest value for a lower bound and
# the highest for an upper one, so "10" as an upper time bound includes 10:59:59.999999 (PS3.4 C.2.2.2.5).
_TM_PAD: Final = {False: "000000", True: "235959"}
_DT_PAD: Final = {False: "00000101000000", True: "99991231235959"}


def _normalise(vr: str, value: str, *, upper: bool = False) -> str:
    """A DA, TM or DT value as a fixed-width string that sorts in time order (DT offsets are ignored)."""
    if vr == "DA":
        return value.replace(".", "")  # ACR-NEMA yyyy.mm.dd tolerated
    text = value.replace(":", "") if vr == "TM" else re.split(r"[+-]", value, maxsplit=1)[0]
    whole, _, fraction = text.partition(".")
    pad = (_TM_PAD if vr == "TM" else _DT_PAD)[upper]
    whole = (whole + pad[len(whole):])[: len(pad)]
    return whole + "." + fraction.ljust(6, "9" if upper and not fraction else "0")[:6]


# --- matchers ---------------------------------------------------------------------------------------------


def _strings(element: Mapping[str, Any] | None) -> list[str]:
    """Every string form of an element's values (each component group of a person name)."""
    if element is None:
        return []
    out: list[str] = []
    for value in element.get("Value", []):
        if isinstance(value, dict):
            out.extend(str(v) for k, v in value.items() if k in ("Alphabetic", "Ideographic", "Phonetic"))
        elif value is not None:
            out.append(str(value))
    return out


@dataclass(frozen=True, slots=True)
class Matcher:
    """One matching key: the attribute, its VR and the request's value."""

    key: str
    vr: str
    value: str
    fuzzy: bool = False

    @property
    def is_universal(self) -> bool:
        return self.value == "" or self.value == "*"

    @property
    def exact_values(self) -> list[str] | None:
        """The values to match exactly (single value or UID list), None for wildcard or range keys."""
        if self.is_universal:
            return None
        if self.vr == "UI":
            return [v for v in self.value.split("\\") if v]
        if self.vr in _RANGE_VRS and "-" in self.value:
            return None
        if self.vr in _WILDCARD_VRS and ("*" in self.value or "?" in self.value):
            return None
        return [self.value]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        """Whether the dataset (DICOM JSON) matches this key."""
        if self.is_universal:
            return True
        values = _strings(attributes.get(self.key))
        if not values:
            return False
        return any(self._one(v) for v in values)

    def _one(self, candidate: str) -> bool:
        if self.vr == "UI":
            return candidate in self.value.split("\\")
        if self.vr in _RANGE_VRS:
            return self._range(candidate)
        if self.vr in _WILDCARD_VRS and ("*" in self.value or "?" in self.value):
            pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in self.value)
            flags = re.IGNORECASE if self.fuzzy and self.vr == "PN" else 0
            return re.fullmatch(pattern, candidate, flags | re.DOTALL) is not None
        if self.fuzzy and self.vr == "PN":
            return candidate.casefold() == self.value.casefold()
        return candidate == self.value

    def _range(self, candidate: str) -> bool:
        # In a key, "-" always separates a range: DT keys with a negative UTC offset are not supported.
        if "-" not in self.value:
            return _normalise(self.vr, candidate) == _normalise(self.vr, self.value)
        low, _, high = self.value.partition("-")
        value = _normalise(self.vr, candidate)
        if low and value < _normalise(self.vr, low):
            return False
        return not high or value <= _normalise(self.vr, high, upper=True)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """A parsed QIDO-RS request."""

    matchers: tuple[Matcher, ...]
    include_all: bool
    include: tuple[str, ...]
    limit: int | None
    offset: int
    fuzzy: bool

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        return all(m.matches(attributes) for m in self.matchers)

    def exact(self, key: str) -> list[str] | None:
        """Values every result's `key` must equal (for the database to filter), or None when unconstrained."""
        for matcher in self.matchers:
            if matcher.key == key:
                values = matcher.exact_values
                if values is not None:
                    return values
        return None

    def returned_keys(self, level: Level) -> tuple[str, ...]:
        """The level's default attributes, the matching keys and the included fields (PS3.18 8.3.4.3)."""
        keys = list(LEVEL_ATTRIBUTES[level])
        for key in (*(m.key for m in self.matchers), *self.include):
            if key not in keys:
                keys.append(key)
        return tuple(keys)


def _int(name: str, text: str, *, low: int, high: int | None = None) -> int:
    if not text.isdigit():
        raise QueryError(name, f"{name} must be a non-negative integer")
    value = int(text)
    if value < low or (high is not None and value > high):
        raise QueryError(name, f"{name} must be {low}..{high}" if high is not None else f"{name} must be >= {low}")
    return value


def parse_search(params: Iterable[tuple[str, str]]) -> SearchQuery:
    """A SearchQuery from the request's query parameters, in order (QueryError on the first bad one)."""
    items = list(params)
    fuzzy = False
    limit: int | None = None
    offset = 0
    include_all = False
    include: list[str] = []
    for name, value in items:
        if name == "fuzzymatching":
            if value not in ("true", "false"):
                raise QueryError(name, "fuzzymatching must be true or false")
            fuzzy = value == "true"
        elif name == "limit":
            limit = _int(name, value, low=1, high=MAX_LIMIT)
        elif name == "offset":
            offset = _int(name, value, low=0)
        elif name == "includefield":
            for field in (f.strip() for f in value.split(",")):
                if field == "all":
                    include_all = True
                elif field:
                    include.append(resolve_attribute(field)[0])
    matchers: list[Matcher] = []
    seen: set[str] = set()
    for name, value in items:
        if name in _CONTROL:
            continue
        key, vr = resolve_attribute(name)
        if key in seen:
            raise QueryError(name, f"{name} is given more than once")
        seen.add(key)
        if vr == "SQ":
            raise QueryError(name, "matching on sequences is not supported")
        matchers.append(Matcher(key, vr, value, fuzzy))
    return SearchQuery(tuple(matchers), include_all, tuple(include), limit, offset, fuzzy)


def select(attributes: Mapping[str, Any], keys: Sequence[str], *, include_all: bool) -> Attributes:
    """The attributes to return: `keys` that are present, or every top-level attribute with `include_all`."""
    if include_all:
        return dict(attributes)
    return {key: attributes[key] for key in keys if key in attributes}


def element(vr: str, *values: Any) -> dict[str, Any]:
    """A DICOM JSON element (an element without values has no "Value", PS3.18 F.2.2)."""
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def first_value(attributes: Mapping[str, Any], key: str) -> Any:
    """The first value of an element, None when absent or empty."""
    values = attributes.get(key, {}).get("Value") or [None]
    return values[0]


def sort_key_number(attributes: Mapping[str, Any], key: str) -> float:
    """A numeric attribute for sorting (absent values last)."""
    value = first_value(attributes, key)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")
