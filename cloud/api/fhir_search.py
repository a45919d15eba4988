"""FHIR search parameters for Observation (pure): `date` with prefixes, `code` tokens, `_count`, paging cursor.

Semantics follow FHIR R4 "Search" (http://hl7.org/fhir/R4/search.html): a date value stands for the
whole interval its precision implies (`2024-05` is all of May), and the prefix compares the sample time
with that interval: eq inside it, ge/gt at or after its start/end, le/lt before its end/start.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_PREFIXES = ("eq", "ge", "gt", "le", "lt")
_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
DEFAULT_COUNT = 100
MAX_COUNT = 1000


class SearchParameterError(ValueError):
    """A search parameter that cannot be understood; `parameter` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Sample times t with `lower <= t < upper` (either bound may be open)."""

    lower: dt.datetime | None = None
    upper: dt.datetime | None = None

    def intersect(self, other: TimeRange) -> TimeRange:
        """Both constraints at once (repeated `date` parameters are ANDed)."""
        lowers = [t for t in (self.lower, other.lower) if t is not None]
        uppers = [t for t in (self.upper, other.upper) if t is not None]
        return TimeRange(max(lowers) if lowers else None, min(uppers) if uppers else None)

    @property
    def empty(self) -> bool:
        """Whether no time satisfies the range."""
        return self.lower is not None and self.upper is not None and self.lower >= self.upper


def parse_dates(values: Iterable[str], *, default_tz: str) -> TimeRange:
    """The time range selected by one or more `date` parameters (ANDed)."""
    result = TimeRange()
    for value in values:
        result = result.intersect(_parse_date(value, default_tz))
    return result


def _parse_date(value: str, default_tz: str) -> TimeRange:
    prefix, text = ("eq", value)
    if len(value) > 2 and value[:2].isalpha():
        prefix, text = value[:2], value[2:]
    if prefix not in _PREFIXES:
        raise SearchParameterError("date", f"unsupported date prefix {prefix!r} (use {', '.join(_PREFIXES)})")
    start, end = _interval(text, default_tz)
    if prefix == "eq":
        return TimeRange(start, end)
    if prefix == "ge":
        return TimeRange(lower=start)
    if prefix == "gt":
        return TimeRange(lower=end)
    if prefix == "le":
        return TimeRange(upper=end)
    return TimeRange(upper=start)  # lt


def _interval(text: str, default_tz: str) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) interval a FHIR date/dateTime of any precision stands for."""
    match = _DATE.match(text)
    if match is None:
        raise SearchParameterError("date", f"not a FHIR date or dateTime: {text!r}")
    parts = match.groupdict()
    tz = _timezone(parts["tz"], default_tz)
    try:
        year = int(parts["year"])
        if parts["month"] is None:
            return _local(dt.datetime(year, 1, 1), tz), _local(dt.datetime(year + 1, 1, 1), tz)
        month = int(parts["month"])
        if parts["day"] is None:
            start = dt.datetime(year, month, 1)
            following = dt.datetime(year + (month == 12), month % 12 + 1, 1)
            return _local(start, tz), _local(following, tz)
        day = dt.datetime(year, month, int(parts["day"]))
        if parts["hour"] is None:
            return _local(day, tz), _local(day + dt.timedelta(days=1), tz)
        start = day.replace(hour=int(parts["hour"]), minute=int(parts["minute"]))
        if parts["second"] is None:
            return _local(start, tz), _local(start + dt.timedelta(minutes=1), tz)
        start = start.replace(second=int(parts["second"]))
        fraction = parts["fraction"]
        if fraction is None:
            return _local(start, tz), _local(start + dt.timedelta(seconds=1), tz)
        digits = len(fraction)
        micros = int((fraction + "000000")[:6])
        # The interval of a fractional second is one unit of its last digit (microseconds at most).
        unit = dt.timedelta(microseconds=10 ** max(0, 6 - digits))
        start = start.replace(microsecond=micros)
        return _local(start, tz), _local(start + unit, tz)
    except ValueError as exc:
        raise SearchParameterError("date", f"not a valid date: {text!r}") from exc


def _timezone(offset: str | None, default_tz: str) -> dt.tzinfo:
    if offset is None:
        return zoneinfo.ZoneInfo(default_tz)
    if offset == "Z":
        return dt.UTC
    sign = 1 if offset[0] == "+" else -1
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 14 or minutes > 59:
        raise SearchParameterError("date", f"invalid UTC offset {offset!r}")
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _local(naive: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    return naive.replace(tzinfo=tz).astimezone(dt.UTC)


def parse_codes(values: Iterable[str], *, loinc_index: Mapping[str, str], loinc_system: str) -> frozenset[str] | None:
    """Kind names selected by `code` parameters: None when absent (all kinds).

    Each parameter is a comma-separated OR list of tokens `code`, `system|code` or `|code` (code without a
    system: matches no coded concept here, all ours carry a system); repeated parameters are ANDed.
    Codes we do not export select nothing (an empty set), as FHIR search requires.
    """
    selected: frozenset[str] | None = None
    for value in values:
        names: set[str] = set()
        for token in value.split(","):
            token = token.strip()
            if not token:
                raise SearchParameterError("code", "empty code token")
            system, sep, code = token.rpartition("|")
            if sep and system not in ("", loinc_system):
                continue
            if sep and system == "":
                continue
            if not code:
                names.update(loinc_index.values())
                continue
            if code in loinc_index:
                names.add(loinc_index[code])
        selected = frozenset(names) if selected is None else selected & names
    return selected


def parse_count(value: str | None) -> int:
    """The page size from `_count` (default 100, at most 1000)."""
    if value is None:
        return DEFAULT_COUNT
    try:
        count = int(value)
    except ValueError:
        raise SearchParameterError("_count", "_count must be an integer") from None
    if not 1 <= count <= MAX_COUNT:
        raise SearchParameterError("_count", f"_count must be between 1 and {MAX_COUNT}")
    return count


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the next page starts: after the sample with this sort key (time, kind, device)."""

    time_us: int
    kind_id: int
    device_id: str

    def encode(self) -> str:
        """The opaque `_cursor` value."""
        raw = json.dumps([self.time_us, self.kind_id, self.device_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_cursor(value: str | None) -> Cursor | None:
    """The cursor from `_cursor`, or None for the first page."""
    if value is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        time_us, kind_id, device_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise SearchParameterError("_cursor", "malformed paging cursor") from None
    if not (isinstance(time_us, int) and isinstance(kind_id, int) and isinstance(device_id, str)):
        raise SearchParameterError("_cursor", "malformed paging cursor")
    return Cursor(time_us, kind_id, device_id)


def parse_reference(value: str, resource_type: str) -> str:
    """The logical id in a reference parameter: `id`, `Type/id` or an absolute URL ending in `Type/id`."""
    parts = value.rstrip("/").split("/")
    if len(parts) == 1:
        return parts[0]
    if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
        return parts[-1]
    raise SearchParameterError(resource_type.lower(), f"expected a {resource_type} reference, got {value!r}")
