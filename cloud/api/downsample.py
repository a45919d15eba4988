"""Planning a downsampled time series: bucket width, source table and effective range (pure).

A chart of `max_points` buckets over [start, end) needs a bucket width of at least (end - start) / max_points;
we round it up to a "nice" width (1, 2, 5, 10, 15, 30 s; 1, 2, 5, 10, 15, 30 min; 1, 2, 3, 6, 12 h; whole
days) so bucket edges fall on readable times, then read from the coarsest table whose resolution divides
the width: the hourly, 15-minute or minute rollup, or the raw samples (a week in 1000 points: 15-minute
buckets, 672 rollup rows rather than 10,080 minute rows). Buckets are aligned to the Unix epoch
(UTC), like the rollups, so a bucket is made of whole rollup rows and rollup-based answers equal raw ones.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DAY = dt.timedelta(days=1)
NICE_WIDTHS: tuple[dt.timedelta, ...] = tuple(
    dt.timedelta(seconds=s)
    for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
)


class DownsampleError(ValueError):
    """The requested range or point count cannot be planned; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Source:
    """A table vitals can be read from, and the width of its rows (zero for raw samples)."""

    name: str
    table: str
    resolution: dt.timedelta

    @property
    def is_rollup(self) -> bool:
        """Whether rows are pre-aggregated buckets (min/max/sum/count) rather than samples."""
        return self.resolution > dt.timedelta(0)


RAW = Source("raw", "vitals", dt.timedelta(0))
MINUTE = Source("1m", "vitals_1m", dt.timedelta(minutes=1))
QUARTER = Source("15m", "vitals_15m", dt.timedelta(minutes=15))
HOUR = Source("1h", "vitals_1h", dt.timedelta(hours=1))
SOURCES_COARSE_FIRST: tuple[Source, ...] = (HOUR, QUARTER, MINUTE, RAW)


@dataclass(frozen=True, slots=True)
class BucketPlan:
    """How to answer one series request.

    Data in [data_start, data_end) is grouped into buckets of `width` aligned to the epoch; there are at
    most `bucket_count` of them (only non-empty ones are returned).
    """

    width: dt.timedelta
    source: Source
    data_start: dt.datetime
    data_end: dt.datetime
    bucket_count: int


def floor_time(t: dt.datetime, width: dt.timedelta) -> dt.datetime:
    """`t` rounded down to a multiple of `width` since the epoch."""
    micros = _micros(t - EPOCH)
    step = _micros(width)
    return EPOCH + dt.timedelta(microseconds=micros - micros % step)


def ceil_time(t: dt.datetime, width: dt.timedelta) -> dt.datetime:
    """`t` rounded up to a multiple of `width` since the epoch."""
    floored = floor_time(t, width)
    return floored if floored == t else floored + width


def bucket_count(start: dt.datetime, end: dt.datetime, width: dt.timedelta) -> int:
    """How many epoch-aligned buckets of `width` intersect [start, end)."""
    return _micros(ceil_time(end, width) - floor_time(start, width)) // _micros(width)


def source_for(width: dt.timedelta) -> Source:
    """The coarsest source whose rows fit a whole number of times in a bucket of `width`."""
    for source in SOURCES_COARSE_FIRST:
        if not source.is_rollup or _micros(width) % _micros(source.resolution) == 0:
            return source
    raise AssertionError("RAW always fits")  # pragma: no cover


def plan_buckets(
    start: dt.datetime, end: dt.datetime, max_points: int, *, source: Source | None = None
) -> BucketPlan:
    """Plan [start, end) in at most `max_points` buckets; `source` forces a table (tests compare sources)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise DownsampleError("start" if start.tzinfo is None else "end", "times must carry a UTC offset")
    if end <= start:
        raise DownsampleError("end", "end must be after start")
    if max_points < 1:
        raise DownsampleError("max_points", "max_points must be at least 1")
    for width in _candidate_widths(end - start, max_points):
        chosen = source if source is not None else source_for(width)
        if chosen.is_rollup and _micros(width) % _micros(chosen.resolution):
            continue
        count = bucket_count(start, end, width)
        if count <= max_points:
            if chosen.is_rollup:
                data_start, data_end = floor_time(start, chosen.resolution), ceil_time(end, chosen.resolution)
            else:
                data_start, data_end = start, end
            return BucketPlan(width, chosen, data_start, data_end, count)
    raise AssertionError("widths grow without bound")  # pragma: no cover


def _candidate_widths(span: dt.timedelta, max_points: int) -> Iterator[dt.timedelta]:
    """Nice widths from the smallest that could fit, upwards; past a day, whole days without end."""
    minimum = span / max_points
    yield from (width for width in NICE_WIDTHS if width >= minimum)
    days = max(2, math.ceil(minimum / _DAY))
    while True:
        yield days * _DAY
        days += 1


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
