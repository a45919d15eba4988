"""Series planning: never more buckets than asked, nice widths, the coarsest fitting source, aligned ranges."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.api.downsample import (
    HOUR,
    MINUTE,
    NICE_WIDTHS,
    QUARTER,
    RAW,
    DownsampleError,
    bucket_count,
    ceil_time,
    floor_time,
    plan_buckets,
)

T0 = dt.datetime(2024, 5, 1, 10, 0, 30, tzinfo=dt.UTC)


def test_24_hours_in_1000_points_uses_two_minute_buckets_from_the_minute_rollup() -> None:
    plan = plan_buckets(T0 - dt.timedelta(hours=24), T0, 1000)
    assert plan.width == dt.timedelta(minutes=2)  # 86.4 s rounded up to a nice width
    assert plan.source is MINUTE
    assert plan.bucket_count == 721 <= 1000
    # A rollup row is a whole minute: the range widens to whole minutes.
    assert plan.data_start == dt.datetime(2024, 4, 30, 10, 0, tzinfo=dt.UTC)
    assert plan.data_end == dt.datetime(2024, 5, 1, 10, 1, tzinfo=dt.UTC)


def test_seven_days_uses_the_quarter_hour_rollup_and_a_year_the_hourly_rollup() -> None:
    week = plan_buckets(T0 - dt.timedelta(days=7), T0, 1000)
    assert (week.width, week.source) == (dt.timedelta(minutes=15), QUARTER)
    assert (week.data_start, week.data_end) == (dt.datetime(2024, 4, 24, 10, 0, tzinfo=dt.UTC),
                                                dt.datetime(2024, 5, 1, 10, 15, tzinfo=dt.UTC))
    half_hours = plan_buckets(T0 - dt.timedelta(days=14), T0, 1000)
    assert (half_hours.width, half_hours.source) == (dt.timedelta(minutes=30), QUARTER)
    year = plan_buckets(T0 - dt.timedelta(days=365), T0, 1000)
    assert year.source is HOUR and year.width == dt.timedelta(hours=12)


def test_short_ranges_read_raw_samples_exactly() -> None:
    plan = plan_buckets(T0 - dt.timedelta(hours=1), T0, 1000)
    assert (plan.width, plan.source) == (dt.timedelta(seconds=5), RAW)
    assert (plan.data_start, plan.data_end) == (T0 - dt.timedelta(hours=1), T0)


def test_alignment_slack_moves_to_the_next_width() -> None:
    # 10 s in 10 points would be 1 s buckets, but an unaligned start makes 11 of them.
    start = dt.datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=dt.UTC)
    plan = plan_buckets(start, start + dt.timedelta(seconds=10), 10)
    assert plan.width == dt.timedelta(seconds=2) and plan.bucket_count <= 10


def test_a_forced_source_gets_a_width_it_can_fill() -> None:
    plan = plan_buckets(T0 - dt.timedelta(hours=1), T0, 1000, source=MINUTE)
    assert plan.source is MINUTE and plan.width == dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("start", "end", "max_points", "field"),
    [
        (T0, T0, 10, "end"),
        (T0, T0 - dt.timedelta(seconds=1), 10, "end"),
        (T0, T0 + dt.timedelta(hours=1), 0, "max_points"),
        (T0.replace(tzinfo=None), T0 + dt.timedelta(hours=1), 10, "start"),
    ],
)
def test_impossible_requests_name_the_parameter(
    start: dt.datetime, end: dt.datetime, max_points: int, field: str
) -> None:
    with pytest.raises(DownsampleError) as err:
        plan_buckets(start, end, max_points)
    assert err.value.field == field


@settings(max_examples=300, deadline=None)
@given(
    start_us=st.integers(min_value=0, max_value=2_000_000_000 * 10**6),
    span_us=st.integers(min_value=1, max_value=400 * 86_400 * 10**6),
    max_points=st.integers(min_value=1, max_value=5000),
)
def test_plans_never_exceed_max_points_and_rollup_buckets_are_whole_rows(
    start_us: int, span_us: int, max_points: int
) -> None:
    start = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=start_us)
    end = start + dt.timedelta(microseconds=span_us)
    plan = plan_buckets(start, end, max_points)
    assert 1 <= plan.bucket_count <= max_points
    assert plan.bucket_count == bucket_count(start, end, plan.width)
    assert plan.width in NICE_WIDTHS or plan.width % dt.timedelta(days=1) == dt.timedelta(0)
    assert plan.data_start <= start and plan.data_end >= end
    if plan.source.is_rollup:
        assert plan.width % plan.source.resolution == dt.timedelta(0)
        assert floor_time(plan.data_start, plan.source.resolution) == plan.data_start
        assert ceil_time(plan.data_end, plan.source.resolution) == plan.data_end
    smaller = [w for w in NICE_WIDTHS if w < plan.width]
    if smaller:  # the chosen width is the smallest nice width that fits
        assert bucket_count(start, end, smaller[-1]) > max_points
