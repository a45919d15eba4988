"""Personal anomaly baselines: an advisory when a patient's vitals stop looking like their own day."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from cloud.alerting.anomaly import (
    RULE,
    AnomalyConfig,
    AnomalyDetector,
    MinuteMean,
    feature_frame,
)
from cloud.alerting.errors import AnomalyError

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)


def minutes(start: int, count: int, *, hr: float = 72.0, spo2: float = 97.0, rr: float = 15.0,
            sbp: float | None = 120.0, seed: int = 0, bp_every: int = 30) -> list[MinuteMean]:
    """Minute means from `start` (minutes after T0): a patient's usual physiology with noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(start, start + count):
        t = T0 + i * MIN
        rows += [MinuteMean(t, "heart_rate", hr + rng.normal(0, 3)),
                 MinuteMean(t, "spo2", spo2 + rng.normal(0, 0.7)),
                 MinuteMean(t, "respiratory_rate", rr + rng.normal(0, 1.2))]
        if sbp is not None and i % bp_every == 0:
            rows.append(MinuteMean(t, "systolic_bp", sbp + rng.normal(0, 6)))
    return rows


def fitted(config: AnomalyConfig | None = None) -> AnomalyDetector:
    detector = AnomalyDetector(config or AnomalyConfig(n_estimators=50))
    history = minutes(0, 24 * 60)
    detector.fit("pt-1", history, T0 + 25 * 60 * MIN)  # learns from hours 1..24, the last hour left out
    return detector


def test_intermittent_pressures_are_carried_forward_and_incomplete_minutes_dropped() -> None:
    rows = minutes(0, 120)
    rows = [r for r in rows if not (r.kind == "spo2" and r.bucket == T0 + 5 * MIN)]
    frame = feature_frame(rows, config=AnomalyConfig())
    assert frame.columns == ("heart_rate", "spo2", "respiratory_rate", "systolic_bp")
    assert len(frame.minutes) == 119 and T0 + 5 * MIN not in frame.minutes
    sbp = dict(zip(frame.minutes, frame.values[:, 3].tolist(), strict=True))
    assert sbp[T0] == sbp[T0 + 29 * MIN] != sbp[T0 + 30 * MIN]  # the 08:00 cuff reading stands until 08:30


def test_a_feature_measured_too_rarely_is_left_out_of_the_baseline() -> None:
    frame = feature_frame(minutes(0, 600, bp_every=200), config=AnomalyConfig())  # a cuff every 200 min
    assert frame.columns == ("heart_rate", "spo2", "respiratory_rate")


def test_too_little_history_gives_no_baseline() -> None:
    detector = AnomalyDetector(AnomalyConfig(n_estimators=20))
    with pytest.raises(AnomalyError):
        detector.fit("pt-1", minutes(0, 200), T0 + 261 * MIN)
    assert detector.baseline("pt-1") is None and detector.evaluate("pt-1", minutes(300, 30)) == []


def test_the_usual_physiology_raises_nothing() -> None:
    detector = fitted()
    alerts = detector.evaluate("pt-1", minutes(24 * 60, 90, seed=9))
    assert alerts == []


def test_a_change_within_every_threshold_but_new_for_this_patient_raises_an_advisory_then_clears() -> None:
    detector = fitted()
    usual = minutes(24 * 60, 30, seed=3)
    # HR 100 and RR 21 page nobody by threshold (hr_high is > 110, rr_high > 24), but this patient lives at 72/15.
    changed = minutes(24 * 60 + 30, 20, hr=100.0, rr=21.0, seed=4)
    back = minutes(24 * 60 + 50, 40, seed=5)
    raised = detector.evaluate("pt-1", usual + changed)
    assert len(raised) == 1
    advisory = raised[0]
    assert (advisory.rule, advisory.category, advisory.priority, advisory.state) == (
        RULE, "advisory", "low", "active")
    onset = T0 + (24 * 60 + 30) * MIN
    assert onset + 5 * MIN <= advisory.raised_at <= onset + 8 * MIN  # five anomalous minutes in a row
    assert "heart_rate 10" in advisory.message and "usual" in advisory.message
    cleared = detector.evaluate("pt-1", usual + changed + back)  # overlapping rows: only new minutes count
    assert [(a.state, a.alert_id) for a in cleared] == [("cleared", advisory.alert_id)]
    assert cleared[0].raised_at >= T0 + (24 * 60 + 50 + 15) * MIN


def test_baselines_are_refitted_on_schedule() -> None:
    detector = fitted(AnomalyConfig(n_estimators=20, refit_every=dt.timedelta(hours=1)))
    fitted_at = T0 + 25 * 60 * MIN
    assert not detector.due_for_fit("pt-1", fitted_at + 59 * MIN)
    assert detector.due_for_fit("pt-1", fitted_at + 60 * MIN)
    assert detector.due_for_fit("pt-2", fitted_at)
