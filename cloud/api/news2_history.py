"""NEWS2 over time from per-minute vitals (pure): the score "as of" each point of a regular grid.

At a point t each NEWS2 parameter takes its latest minute value before t, if that value is recent enough
(the parameter's recency window below); an older or absent value leaves the parameter missing and the
score partial (`complete` is False). Scoring is proto.news2's, the same as the edge's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from cloud.api.downsample import floor_time
from proto import news2
from proto.vocabulary import ValueType, consciousness_level, kind

# Vocabulary kind feeding each NEWS2 parameter (news2.score keyword -> kind name).
PARAMETER_KINDS: Mapping[str, str] = {
    "respiratory_rate": "respiratory_rate",
    "spo2": "spo2",
    "on_oxygen": "on_oxygen",
    "temperature": "body_temperature",
    "systolic_bp": "systolic_bp",
    "heart_rate": "heart_rate",
    "consciousness": "consciousness",
}
# How long a value still describes the patient. Continuous monitors (1 Hz) going quiet for 15 min are
# off the patient; non-invasive BP cycles every 15-60 min; temperature is charted every few hours; the
# manual entries (ACVPU, oxygen) keep for 12 h, the NEWS2 minimum observation frequency for a score of 0
# (RCP 2017, chart 4 "Clinical response to NEWS2 trigger thresholds").
RECENCY: Mapping[str, dt.timedelta] = {
    "respiratory_rate": dt.timedelta(minutes=15),
    "spo2": dt.timedelta(minutes=15),
    "heart_rate": dt.timedelta(minutes=15),
    "systolic_bp": dt.timedelta(hours=1),
    "temperature": dt.timedelta(hours=4),
    "consciousness": dt.timedelta(hours=12),
    "on_oxygen": dt.timedelta(hours=12),
}
LONGEST_RECENCY = max(RECENCY.values())
# Kinds reduced to their worst value within a minute rather than the mean: any confusion, any oxygen.
WORST_OF_MINUTE: frozenset[str] = frozenset({"consciousness", "on_oxygen"})


@dataclass(frozen=True, slots=True)
class MinuteValue:
    """One kind's value for the minute starting at `bucket`."""

    bucket: dt.datetime
    value: float


@dataclass(frozen=True, slots=True)
class News2Point:
    """The score as of `time`, and the time of the newest value it used."""

    time: dt.datetime
    score: news2.News2Score
    newest_input: dt.datetime


def score_history(
    series: Mapping[str, Sequence[MinuteValue]],
    points: Sequence[dt.datetime],
) -> list[News2Point]:
    """Score NEWS2 at each of `points` (ascending) from per-kind minute series (ascending by bucket).

    `series` is keyed by vocabulary kind name. A point t on the minute grid sees the minutes that started
    before it, i.e. that were complete at t. Points where no parameter has a recent value are left out.
    """
    cursors = {param: _Cursor(series.get(kind_name, ())) for param, kind_name in PARAMETER_KINDS.items()}
    result: list[News2Point] = []
    for t in points:
        inputs: dict[str, MinuteValue] = {}
        for param, cursor in cursors.items():
            latest = cursor.latest_before(t)
            if latest is not None and latest.bucket >= t - RECENCY[param] and _usable(param, latest.value):
                inputs[param] = latest
        if not inputs:
            continue
        score = _score(inputs)
        result.append(News2Point(time=t, score=score, newest_input=max(v.bucket for v in inputs.values())))
    return result


def grid(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> Iterator[dt.datetime]:
    """Points on multiples of `step` (epoch-aligned) in (start, end]."""
    t = floor_time(start, step) + step
    while t <= end:
        yield t
        t += step


class _Cursor:
    """Walks one ascending series forward as the points advance."""

    __slots__ = ("_index", "_series")

    def __init__(self, series: Sequence[MinuteValue]) -> None:
        self._series = series
        self._index = -1

    def latest_before(self, t: dt.datetime) -> MinuteValue | None:
        """The last value whose bucket is before `t` (t never decreases between calls)."""
        while self._index + 1 < len(self._series) and self._series[self._index + 1].bucket < t:
            self._index += 1
        return self._series[self._index] if self._index >= 0 else None


def _usable(param: str, value: float) -> bool:
    """Whether a value can be scored: plausible for its kind, and a whole code for coded kinds."""
    entry = kind(PARAMETER_KINDS[param])
    if not entry.is_plausible(value):
        return False
    return entry.value_type is ValueType.QUANTITY or value == int(value)


def _score(inputs: Mapping[str, MinuteValue]) -> news2.News2Score:
    def value(param: str) -> float | None:
        found = inputs.get(param)
        return found.value if found is not None else None

    oxygen = value("on_oxygen")
    level = value("consciousness")
    return news2.score(
        respiratory_rate=value("respiratory_rate"),
        spo2=value("spo2"),
        on_oxygen=None if oxygen is None else oxygen >= 1.0,
        temperature=value("temperature"),
        systolic_bp=value("systolic_bp"),
        heart_rate=value("heart_rate"),
        consciousness=None if level is None else consciousness_level(level),
    )


def score_now(latest: Mapping[str, MinuteValue], *, now: dt.datetime) -> News2Point | None:
    """NEWS2 from each kind's latest sample (keyed by kind name, `bucket` = sample time), as of `now`."""
    after_now = now + dt.timedelta(microseconds=1)
    found = score_history({name: [value] for name, value in latest.items() if value.bucket <= now}, [after_now])
    return dataclasses.replace(found[0], time=now) if found else None
