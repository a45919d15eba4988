"""C-FIND over what the edge holds: Study Root Query/Retrieve Information Model - FIND, STUDY and SERIES levels.

Matching follows PS3.4 C.2.2.2: an empty key is universal (returned, not matched); a value with `*` or `?`
is wildcard matching (C.2.2.2.4), case-insensitive for person names as our conformance choice; DA and TM
keys may be ranges `a-b`, `-b`, `a-` (C.2.2.2.5); UI keys may be lists of UIDs separated by backslashes
(C.2.2.2.2); any other value is single value matching (C.2.2.2.1). The query is hierarchical (C.4.1.2.2.1)
except that a SERIES query without a Study Instance UID searches every study, as a relational SCP would.
Keys we do not hold are returned with zero length, which C.2.2.1.3 permits for optional keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from edge.dicom.errors import QueryError
from edge.dicom.index import DicomIndex
from edge.dicom.models import SeriesRecord, StudyRecord

Level = Literal["STUDY", "SERIES"]
LEVELS: Final = ("STUDY", "SERIES")

# Attributes that describe the query itself, not a match key.
_CONTROL: Final = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "InstanceAvailability"})


@dataclass(frozen=True)
class Query:
    """A parsed C-FIND identifier: its level, and each requested key with its matching value ('' = universal)."""

    level: Level
    keys: Mapping[str, str]

    def value(self, keyword: str) -> str:
        return self.keys.get(keyword, "")


def parse_query(identifier: Dataset) -> Query:
    """The query in a C-FIND identifier; QueryError if it has no supported Query/Retrieve Level."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS:
        raise QueryError(f"unsupported Query/Retrieve Level {level!r} (this SCP answers STUDY and SERIES)")
    keys: dict[str, str] = {}
    for element in identifier:
        keyword = element.keyword or keyword_for_tag(element.tag)
        if not keyword or keyword in _CONTROL or element.VR == "SQ":
            continue
        keys[keyword] = _text(element.value)
    return Query(level=cast(Level, level), keys=keys)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):  # a multi-valued element
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip()
    return str(value).strip()


# --- matching primitives (pure) --------------------------------------------------------------------------------


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts) + r"\Z", re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def match_text(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """Single value or wildcard matching (PS3.4 C.2.2.2.1, C.2.2.2.4); '' and '*' match everything."""
    if pattern in ("", "*"):
        return True
    if "*" in pattern or "?" in pattern:
        return _wildcard(pattern, ignore_case=ignore_case).match(value) is not None
    return value.casefold() == pattern.casefold() if ignore_case else value == pattern


def match_person_name(pattern: str, value: str) -> bool:
    """PN matching against the whole name or any of its component groups (alphabetic=ideographic=phonetic)."""
    if pattern in ("", "*"):
        return True
    candidates = [value, *value.split("=")]
    return any(match_text(pattern, c.strip(), ignore_case=True) for c in candidates)


def match_uid_list(pattern: str, value: str) -> bool:
    """List of UID matching (PS3.4 C.2.2.2.2): the value is one of the backslash-separated UIDs."""
    if not pattern:
        return True
    return value in {p.strip() for p in pattern.split("\\")}


def _normalise_date(text: str) -> str:
    return text.strip().replace(".", "")  # ACR-NEMA style YYYY.MM.DD (PS3.5 6.2, note on DA)


def _normalise_time(text: str, *, upper: bool) -> str:
    """HHMMSS.FFFFFF padded so that string order is time order; a partial upper bound covers its whole span."""
    text = text.strip().replace(":", "")
    whole, _, fraction = text.partition(".")
    fill = "9" if upper else "0"
    return whole.ljust(6, fill) + "." + fraction.ljust(6, fill)


def match_range(pattern: str, value: str, *, kind: Literal["DA", "TM"]) -> bool:
    """Single value or range matching for DA and TM (PS3.4 C.2.2.2.5); a record without the value never matches."""
    if not pattern:
        return True
    if not value:
        return False
    if kind == "DA":
        norm_value = _normalise_date(value)
        low, dash, high = (_normalise_date(p) for p in pattern.partition("-"))
        if not dash:
            return norm_value == low
        return (not low or norm_value >= low) and (not high or norm_value <= high)
    low_text, dash, high_text = pattern.partition("-")
    point = _normalise_time(value, upper=False)
    if not dash:
        return _normalise_time(low_text, upper=False) <= point <= _normalise_time(low_text, upper=True)
    return ((not low_text.strip() or point >= _normalise_time(low_text, upper=False))
            and (not high_text.strip() or point <= _normalise_time(high_text, upper=True)))


def match_integer(pattern: str, value: int | None) -> bool:
    """IS single value matching."""
    if not pattern:
        return True
    try:
        return value is not None and int(pattern) == value
    except ValueError:
        return False


def match_any_of(pattern: str, values: Iterable[str]) -> bool:
    """Matching of a multi-valued attribute (Modalities in Study): any value matches any pattern value."""
    if not pattern:
        return True
    candidates = list(values)
    return any(match_text(p, v) for p in pattern.split("\\") for v in candidates)


# --- the two levels ---------------------------------------------------------------------------------------------

_STUDY_MATCHERS: Final[dict[str, Callable[[str, StudyRecord], bool]]] = {
    "StudyInstanceUID": lambda p, s: match_uid_list(p, s.study_instance_uid),
    "PatientID": lambda p, s: match_text(p, s.patient_id),
    "PatientName": lambda p, s: match_person_name(p, s.patient_name),
    "StudyID": lambda p, s: match_text(p, s.study_id),
    "StudyDate": lambda p, s: match_range(p, s.study_date, kind="DA"),
    "StudyTime": lambda p, s: match_range(p, s.study_time, kind="TM"),
    "AccessionNumber": lambda p, s: match_text(p, s.accession_number),
    "StudyDescription": lambda p, s: match_text(p, s.study_description, ignore_case=True),
    "ModalitiesInStudy": lambda p, s: match_any_of(p, s.modalities),
}

_STUDY_VALUES: Final[dict[str, Callable[[StudyRecord], str | int]]] = {
    "StudyInstanceUID": lambda s: s.study_instance_uid,
    "PatientID": lambda s: s.patient_id,
    "PatientName": lambda s: s.patient_name,
    "StudyID": lambda s: s.study_id,
    "StudyDate": lambda s: s.study_date,
    "StudyTime": lambda s: s.study_time,
    "AccessionNumber": lambda s: s.accession_number,
    "StudyDescription": lambda s: s.study_description,
    "ModalitiesInStudy": lambda s: "\\".join(s.modalities),
    "NumberOfStudyRelatedSeries": lambda s: s.series_count,
    "NumberOfStudyRelatedInstances": lambda s: s.instance_count,
}

_SERIES_MATCHERS: Final[dict[str, Callable[[str, SeriesRecord], bool]]] = {
    "StudyInstanceUID": lambda p, r: match_uid_list(p, r.study_instance_uid),
    "SeriesInstanceUID": lambda p, r: match_uid_list(p, r.series_instance_uid),
    "Modality": lambda p, r: match_text(p, r.modality),
    "SeriesNumber": lambda p, r: match_integer(p, r.series_number),
    "SeriesDescription": lambda p, r: match_text(p, r.series_description, ignore_case=True),
}

_SERIES_VALUES: Final[dict[str, Callable[[SeriesRecord], str | int | None]]] = {
    "StudyInstanceUID": lambda r: r.study_instance_uid,
    "SeriesInstanceUID": lambda r: r.series_instance_uid,
    "Modality": lambda r: r.modality,
    "SeriesNumber": lambda r: r.series_number,
    "SeriesDescription": lambda r: r.series_description,
    "NumberOfSeriesRelatedInstances": lambda r: r.instance_count,
}


def matches_study(query: Query, study: StudyRecord) -> bool:
    """Whether a study matches every matching key of a STUDY-level query (keys we do not hold are ignored)."""
    return all(matcher(query.value(k), study) for k, matcher in _STUDY_MATCHERS.items() if query.value(k))


def matches_series(query: Query, series: SeriesRecord) -> bool:
    """Whether a series matches every matching key of a SERIES-level query."""
    return all(matcher(query.value(k), series) for k, matcher in _SERIES_MATCHERS.items() if query.value(k))


def _response(query: Query, values: Mapping[str, str | int | None], *, retrieve_ae: str | None) -> Dataset:
    response = Dataset()
    response.QueryRetrieveLevel = query.level
    texts: list[str] = []
    for keyword in query.keys:
        value = values.get(keyword)
        vr = dictionary_VR(keyword) if keyword else ""
        if value is None or value == "":
            setattr(response, keyword, None)  # zero length: unknown or not held (PS3.4 C.2.2.1.3)
        elif vr == "IS" or isinstance(value, int):
            setattr(response, keyword, str(value))
        else:
            text = str(value)
            setattr(response, keyword, text.split("\\") if "\\" in text else text)
            texts.append(text)
    if retrieve_ae:
        response.RetrieveAETitle = retrieve_ae
    if any(not t.isascii() for t in texts):
        response.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 (PS3.3 C.12.1.1.2)
    return response


def study_response(query: Query, study: StudyRecord, *, retrieve_ae: str | None = None) -> Dataset:
    """The C-FIND response identifier for a matching study: every requested key, filled in."""
    return _response(query, {k: f(study) for k, f in _STUDY_VALUES.items()}, retrieve_ae=retrieve_ae)


def series_response(query: Query, series: SeriesRecord, *, retrieve_ae: str | None = None) -> Dataset:
    """The C-FIND response identifier for a matching series."""
    return _response(query, {k: f(series) for k, f in _SERIES_VALUES.items()}, retrieve_ae=retrieve_ae)


def search(index: DicomIndex, query: Query, *, retrieve_ae: str | None = None) -> Iterator[Dataset]:
    """Response identifiers of everything in `index` matching `query`, oldest study first."""
    uid_filter = query.value("StudyInstanceUID")
    study_uids = [u.strip() for u in uid_filter.split("\\")] if uid_filter and "*" not in uid_filter else None
    if query.level == "STUDY":
        for study in index.studies(study_uids):
            if matches_study(query, study):
                yield study_response(query, study, retrieve_ae=retrieve_ae)
        return
    for series in index.series(study_uids):
        if matches_series(query, series):
            yield series_response(query, series, retrieve_ae=retrieve_ae)
