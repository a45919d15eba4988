"""NEWS2 over time from minute values: latest value per parameter within its recency window, partial scores."""

from __future__ import annotations

import datetime as dt

from cloud.api.news2_history import RECENCY, MinuteValue, grid, score_history, score_now
from proto import news2

T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def minutes(*pairs: tuple[int, float]) -> list[MinuteValue]:
    return [MinuteValue(T0 + m * MIN, v) for m, v in pairs]


FULL_SET = {
    "respiratory_rate": minutes((0, 18)),
    "spo2": minutes((0, 97)),
    "on_oxygen": minutes((0, 0)),
    "body_temperature": minutes((0, 37.0)),
    "systolic_bp": minutes((0, 120)),
    "heart_rate": minutes((0, 80)),
    "consciousness": minutes((0, 0)),
}


def test_a_full_set_scores_like_proto_news2() -> None:
    [point] = score_history(FULL_SET, [T0 + MIN])
    expected = news2.score(respiratory_rate=18, spo2=97, on_oxygen=False, temperature=37.0, systolic_bp=120,
                           heart_rate=80, consciousness="A")
    assert point.score == expected and point.score.complete
    assert point.time == T0 + MIN and point.newest_input == T0


def test_a_point_sees_only_minutes_complete_before_it() -> None:
    assert score_history(FULL_SET, [T0]) == []  # the minute starting at T0 ends at T0 + 1 min


def test_each_parameter_expires_after_its_recency_window() -> None:
    late = T0 + RECENCY["heart_rate"] + MIN
    [point] = score_history(FULL_SET, [late])
    assert "heart_rate" in point.score.missing and "spo2" in point.score.missing
    assert "consciousness" not in point.score.missing and not point.score.complete
    assert point.score.subscores["heart_rate"] == 0


def test_the_latest_value_wins_and_scores_change_over_time() -> None:
    series = {**FULL_SET, "heart_rate": minutes((0, 80), (5, 135))}
    points = score_history(series, [T0 + 2 * MIN, T0 + 6 * MIN])
    assert [p.score.subscores["heart_rate"] for p in points] == [0, 3]
    assert points[1].score.risk == "low-medium"  # a single 3 (RCP 2017 chart 3)


def test_implausible_or_fractional_codes_are_treated_as_missing() -> None:
    series = {"heart_rate": minutes((0, 900)), "consciousness": minutes((0, 1.5)), "spo2": minutes((0, 95))}
    [point] = score_history(series, [T0 + MIN])
    assert {"heart_rate", "consciousness"} <= set(point.score.missing)
    assert point.score.subscores["spo2"] == 1


def test_points_without_any_recent_input_are_left_out() -> None:
    assert score_history({}, [T0 + MIN]) == []


def test_grid_is_aligned_and_excludes_the_start() -> None:
    points = list(grid(T0 + dt.timedelta(seconds=30), T0 + 3 * MIN, MIN))
    assert points == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]


def test_score_now_uses_sample_times() -> None:
    latest = {name: series[0] for name, series in FULL_SET.items()}
    point = score_now(latest, now=T0)
    assert point is not None and point.time == T0 and point.score.complete
    assert score_now(latest, now=T0 + dt.timedelta(hours=13)) is None
