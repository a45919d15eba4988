"""Rate-of-change alarms on bounded, bucketed per-patient history."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from proto.alerting import AlarmChange, AlarmEngine
from tests.unit.proto.test_alerting_helpers import at, brief, only


def test_a_systolic_drop_of_more_than_40_within_30_min_raises_at_the_reading() -> None:
    engine = AlarmEngine()
    changes = []
    for minute, sbp in ((0, 150), (15, 140), (30, 108)):  # 150 -> 108 is a 42 mmHg fall within 30 min
        changes += engine.observe("pt-1", "systolic_bp", sbp, at(minute * 60), device_id="cuff-1")
    drop = only(changes, "sbp_drop")
    assert brief(drop) == [("raised", "sbp_drop", "medium", 1800.0)]
    assert "fell 42 mmHg" in drop[0].alert.message
    assert drop[0].alert.value == 108


def test_a_slow_fall_spread_over_more_than_30_min_raises_nothing() -> None:
    engine = AlarmEngine()
    changes = []
    for minute, sbp in ((0, 150), (20, 135), (40, 120), (60, 105)):  # 45 mmHg, but at most 30 per 30 min
        changes += engine.observe("pt-1", "systolic_bp", sbp, at(minute * 60), device_id="cuff-1")
    assert only(changes, "sbp_drop") == []


def test_the_drop_alarm_clears_when_the_pressure_recovers() -> None:
    engine = AlarmEngine()
    raised = only(engine.observe("pt-1", "systolic_bp", 150, at(0)) +
                  engine.observe("pt-1", "systolic_bp", 105, at(20 * 60)), "sbp_drop")
    assert brief(raised) == [("raised", "sbp_drop", "medium", 1200.0)]
    # 150 - 115 = 35: no longer beyond 40, but not yet within the clear margin of 30.
    assert only(engine.observe("pt-1", "systolic_bp", 115, at(25 * 60)), "sbp_drop") == []
    cleared = only(engine.observe("pt-1", "systolic_bp", 125, at(30 * 60)), "sbp_drop")  # 150 - 125 = 25
    assert brief(cleared) == [("cleared", "sbp_drop", "medium", 1800.0)]
    assert cleared[0].alert.alert_id == raised[0].alert.alert_id


def _hr_minutes(engine: AlarmEngine, means: Sequence[float], rng: np.random.Generator) -> list[AlarmChange]:
    """One-minute stretches of 1 Hz heart rate around each mean (noise SD 3 /min)."""
    changes: list[AlarmChange] = []
    for minute, mean in enumerate(means):
        for s, v in enumerate(mean + rng.normal(0, 3, 60)):
            changes += engine.observe("pt-1", "heart_rate", float(v), at(minute * 60 + s), device_id="hr-1")
    return changes


def test_a_sustained_heart_rate_rise_of_more_than_30_within_10_min_raises() -> None:
    rng = np.random.default_rng(3)
    engine = AlarmEngine()
    changes = _hr_minutes(engine, [70] * 5 + [85, 95, 104, 104, 104, 104, 104, 104], rng)
    rise = only(changes, "hr_rise")
    # 1-minute means: 104 - 70 = 34 from the end of minute 7 (480 s); sustained 120 s -> raised at 600 s.
    assert brief(rise) == [("raised", "hr_rise", "medium", 600.0)]
    assert rise[0].alert.value is not None and 100 < rise[0].alert.value < 108


def test_a_brief_heart_rate_spike_does_not_raise_the_rate_alarm() -> None:
    rng = np.random.default_rng(4)
    engine = AlarmEngine()
    changes = _hr_minutes(engine, [70] * 5 + [105, 72, 70, 70, 70], rng)  # one minute up, then back
    assert only(changes, "hr_rise") == []


def test_noisy_samples_around_a_steady_mean_never_look_like_a_rise() -> None:
    rng = np.random.default_rng(5)
    engine = AlarmEngine()
    changes = _hr_minutes(engine, [75] * 30, rng)
    assert only(changes, "hr_rise") == []


def test_history_stays_bounded() -> None:
    engine = AlarmEngine()
    for s in range(0, 6 * 3600, 5):
        engine.observe("pt-1", "heart_rate", 70 + (s // 60) % 3, at(s))
    state = engine.to_dict()["patients"][0]
    assert len(state["history"]["heart_rate"]) <= 11  # 10-minute window of 1-minute buckets, plus one
