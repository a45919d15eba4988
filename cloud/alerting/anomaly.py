"""Personalised anomaly detection: an advisory when a patient's vitals stop looking like their own baseline.

Threshold rules catch what is abnormal for anyone; this catches what is unusual for this patient (a heart
rate of 100 with a respiratory rate of 22 is within every threshold, yet new for a patient who spent the
day at 70 and 14). Per patient, one-minute means of HR, SpO2, RR and systolic BP (vitals_1m) over the last
24 h, minus the most recent hour so that a slow change is not learnt as normal, fit a scikit-learn
IsolationForest (Liu, Ting and Zhou 2008: anomalies are isolated in fewer random splits), refitted hourly.
Recent minutes scoring below the baseline's `contamination` quantile are anomalous; `confirm_minutes` of
them in a row raise an advisory, `clear_minutes` of normal ones clear it.

The output is an Alert of category "advisory", priority low: it shows on the dashboard and in the alarm log
but never pages anyone on its own (escalation pages clinical alarms only). Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

from cloud.alerting.errors import AnomalyError
from proto.alerting import alert_id_for
from proto.messages import Alert
from proto.vitals import to_micros
from proto.vocabulary import kind

RULE: Final = "anomaly.personal"
FEATURES: Final[tuple[str, ...]] = ("heart_rate", "spo2", "respiratory_rate", "systolic_bp")
MINUTE: Final = dt.timedelta(minutes=1)
_UNITS: Final = {name: kind(name).unit for name in FEATURES}

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AnomalyConfig:
    """Baseline window, fitting and confirmation parameters."""

    baseline: dt.timedelta = dt.timedelta(hours=24)
    exclude_recent: dt.timedelta = dt.timedelta(hours=1)
    refit_every: dt.timedelta = dt.timedelta(hours=1)
    min_minutes: int = 360  # six hours of complete minutes before a baseline is trusted
    min_coverage: float = 0.5  # a feature present in fewer of the baseline's minutes is left out
    contamination: float = 0.01
    n_estimators: int = 100
    confirm_minutes: int = 5
    clear_minutes: int = 15
    # Intermittent measurements stand for this long (a cuff every 30 min).
    carry: Mapping[str, dt.timedelta] = field(
        default_factory=lambda: MappingProxyType({"systolic_bp": dt.timedelta(hours=1)}))
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.contamination < 0.5:
            raise AnomalyError("contamination must be in (0, 0.5)")
        if self.min_minutes < 30 or self.confirm_minutes < 1 or self.clear_minutes < 1:
            raise AnomalyError("need min_minutes >= 30 and positive confirm/clear minutes")


@dataclass(frozen=True, slots=True)
class MinuteMean:
    """One minute's mean of one kind for a patient (a row of vitals_1m: sum / count)."""

    bucket: dt.datetime
    kind: str
    mean: float


@dataclass(frozen=True, slots=True)
class Frame:
    """Complete feature vectors, one per minute."""

    minutes: tuple[dt.datetime, ...]
    columns: tuple[str, ...]
    values: FloatArray  # (minutes, columns)


def feature_frame(rows: Iterable[MinuteMean], *, config: AnomalyConfig,
                  columns: Sequence[str] | None = None) -> Frame:
    """Minute-by-feature matrix: intermittent kinds carried forward, minutes missing a feature dropped.

    Without `columns`, the features present (after carrying) in at least `min_coverage` of the minutes.
    """
    table: dict[dt.datetime, dict[str, float]] = {}
    for row in rows:
        if row.kind in FEATURES and math.isfinite(row.mean):
            table.setdefault(row.bucket, {})[row.kind] = row.mean
    minutes = sorted(table)
    if not minutes:
        return Frame((), tuple(columns or ()), np.empty((0, len(columns or ()))))
    grid = np.full((len(minutes), len(FEATURES)), np.nan)
    for i, minute in enumerate(minutes):
        for j, name in enumerate(FEATURES):
            grid[i, j] = table[minute].get(name, np.nan)
    for j, name in enumerate(FEATURES):
        limit = config.carry.get(name)
        if limit is not None:
            _carry_forward(grid[:, j], minutes, limit)
    if columns is None:
        coverage = (~np.isnan(grid)).mean(axis=0)
        columns = tuple(name for j, name in enumerate(FEATURES) if coverage[j] >= config.min_coverage)
    picked = [FEATURES.index(name) for name in columns]
    values = grid[:, picked]
    complete = ~np.isnan(values).any(axis=1)
    kept = tuple(m for m, ok in zip(minutes, complete.tolist(), strict=True) if ok)
    return Frame(kept, tuple(columns), values[complete])


def _carry_forward(column: FloatArray, minutes: Sequence[dt.datetime], limit: dt.timedelta) -> None:
    last_value, last_time = np.nan, None
    for i, minute in enumerate(minutes):
        if not np.isnan(column[i]):
            last_value, last_time = column[i], minute
        elif last_time is not None and minute - last_time <= limit:
            column[i] = last_value


@dataclass(frozen=True)
class Baseline:
    """A patient's fitted model: which features, the decision threshold, and their usual ranges."""

    columns: tuple[str, ...]
    model: IsolationForest
    threshold: float
    low: FloatArray  # 5th percentile per column
    high: FloatArray  # 95th percentile per column
    fitted_at: dt.datetime
    minutes: int

    @classmethod
    def fit(cls, frame: Frame, *, config: AnomalyConfig, at: dt.datetime) -> Baseline:
        """Fit on a frame of baseline minutes; AnomalyError when there are too few or no features."""
        if not frame.columns:
            raise AnomalyError("no feature is measured often enough for a baseline")
        if len(frame.minutes) < config.min_minutes:
            raise AnomalyError(f"{len(frame.minutes)} complete minutes, need {config.min_minutes}")
        model = IsolationForest(n_estimators=config.n_estimators, contamination=config.contamination,
                                random_state=config.seed)
        model.fit(frame.values)
        # decision_function < 0 marks the `contamination` share of the baseline as outliers (sklearn's offset_).
        return cls(frame.columns, model, 0.0, np.percentile(frame.values, 5, axis=0),
                   np.percentile(frame.values, 95, axis=0), at, len(frame.minutes))

    def scores(self, values: FloatArray) -> FloatArray:
        """Decision values per minute: below `threshold` is anomalous (lower is more unusual)."""
        if values.shape[0] == 0:
            return np.empty(0)
        result: FloatArray = self.model.decision_function(values)
        return result

    def unusual(self, vector: FloatArray) -> str:
        """Which features lie outside their usual range, in words."""
        parts = []
        for j, name in enumerate(self.columns):
            value, low, high = float(vector[j]), float(self.low[j]), float(self.high[j])
            if not low <= value <= high:
                parts.append(f"{name} {value:.0f} {_UNITS[name]} (usual {low:.0f}-{high:.0f})")
        return ", ".join(parts) or "an unusual combination of " + ", ".join(self.columns)


@dataclass
class _Episode:
    """A patient's advisory state: consecutive anomalous/normal minutes and the open advisory, if any."""

    anomalous_run: int = 0
    normal_run: int = 0
    run_start: dt.datetime | None = None
    open_id_start_us: int | None = None
    last_minute: dt.datetime | None = None


class AnomalyDetector:
    """Baselines and advisory episodes for many patients."""

    def __init__(self, config: AnomalyConfig | None = None) -> None:
        self.config = config or AnomalyConfig()
        self._baselines: dict[str, Baseline] = {}
        self._episodes: dict[str, _Episode] = {}

    def baseline(self, patient_id: str) -> Baseline | None:
        return self._baselines.get(patient_id)

    def due_for_fit(self, patient_id: str, now: dt.datetime) -> bool:
        found = self._baselines.get(patient_id)
        return found is None or now - found.fitted_at >= self.config.refit_every

    def baseline_window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """The minutes a baseline fitted at `now` learns from: [now - baseline, now - exclude_recent)."""
        return now - self.config.baseline, now - self.config.exclude_recent

    def fit(self, patient_id: str, rows: Iterable[MinuteMean], now: dt.datetime) -> Baseline:
        """Fit (or refit) a patient's baseline from its window's minutes; AnomalyError if it cannot be."""
        start, end = self.baseline_window(now)
        frame = feature_frame((r for r in rows if start <= r.bucket < end), config=self.config)
        baseline = Baseline.fit(frame, config=self.config, at=now)
        self._baselines[patient_id] = baseline
        return baseline

    def forget(self, patient_id: str) -> None:
        self._baselines.pop(patient_id, None)
        self._episodes.pop(patient_id, None)

    def evaluate(self, patient_id: str, rows: Iterable[MinuteMean]) -> list[Alert]:
        """Score the minutes newer than those already scored; advisory messages opened or closed by them.

        Pass the recent minutes (carried features need their last hour); only minutes after the last one
        evaluated count, so calling again with overlapping rows is safe. The newest minute may still be
        filling up, so it waits for the next call.
        """
        baseline = self._baselines.get(patient_id)
        if baseline is None:
            return []
        episode = self._episodes.setdefault(patient_id, _Episode())
        frame = feature_frame(rows, config=self.config, columns=baseline.columns)
        if len(frame.minutes) < 2:
            return []
        done = episode.last_minute
        index = [i for i, m in enumerate(frame.minutes[:-1]) if done is None or m > done]
        if not index:
            return []
        values = frame.values[index]
        flags = (baseline.scores(values) < baseline.threshold).tolist()
        alerts: list[Alert] = []
        for k, (i, anomalous) in enumerate(zip(index, flags, strict=True)):
            minute = frame.minutes[i]
            if done is not None and minute - done > MINUTE * 2:  # a gap: runs start afresh
                episode.anomalous_run = episode.normal_run = 0
            done = minute
            if anomalous:
                if episode.anomalous_run == 0:
                    episode.run_start = minute
                episode.anomalous_run += 1
                episode.normal_run = 0
            else:
                episode.normal_run += 1
                episode.anomalous_run = 0
            end_of_minute = minute + MINUTE
            if episode.open_id_start_us is None and episode.anomalous_run >= self.config.confirm_minutes:
                episode.open_id_start_us = to_micros(end_of_minute)
                alerts.append(self._alert(patient_id, episode.open_id_start_us, "active", end_of_minute,
                                          f"unusual for this patient (personal baseline): "
                                          f"{baseline.unusual(values[k])}"))
            elif episode.open_id_start_us is not None and episode.normal_run >= self.config.clear_minutes:
                alerts.append(self._alert(patient_id, episode.open_id_start_us, "cleared", end_of_minute,
                                          "back within this patient's usual range"))
                episode.open_id_start_us = None
        episode.last_minute = done
        return alerts

    @staticmethod
    def _alert(patient_id: str, start_us: int, state: str, at: dt.datetime, message: str) -> Alert:
        return Alert(alert_id=alert_id_for(patient_id, RULE, start_us), patient_id=patient_id, rule=RULE,
                     priority="low", category="advisory", state="active" if state == "active" else "cleared",
                     raised_at=at, message=message[:500])
