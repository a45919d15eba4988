"""Threshold alarms: persistence delays, hysteresis on clearing, escalation, per-patient overrides, staleness."""

from __future__ import annotations

import pytest

from proto.alerting import AlarmEngine, default_config, scale2_overrides
from proto.alerting.incident import alert_id_for
from proto.vitals import to_micros
from tests.unit.proto.test_alerting_helpers import at, brief, hold, only


def spo2_only(engine: AlarmEngine, patient: str, value: float, start: float, seconds: float) -> list[str]:
    return [c.change for c in hold(engine, patient, "spo2", value, start, seconds) if c.alert.rule == "spo2_low"]


def test_spo2_88_for_10_s_raises_nothing() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "spo2", 88, 0, 10) + hold(engine, "pt-1", "spo2", 97, 10, 30)
    assert changes == []


def test_spo2_88_for_16_s_raises_a_high_alert_at_15_s() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "spo2", 88, 0, 16)
    assert brief(changes) == [("raised", "spo2_low", "high", 15.0)]
    alert = changes[0].alert
    assert (alert.category, alert.state, alert.kind, alert.value, alert.device_id) == (
        "clinical", "active", "spo2", 88.0, "dev-1")
    assert alert.alert_id == alert_id_for("pt-1", "spo2_low", to_micros(at(15)))
    assert "88 %" in alert.message and "< 90 %" in alert.message
    alert.validate()


def test_a_tick_matures_the_timer_when_samples_stop() -> None:
    engine = AlarmEngine()
    assert hold(engine, "pt-1", "spo2", 88, 0, 10) == []  # last sample at 9 s vouches until 19 s
    assert brief(engine.tick(at(14))) == []
    assert brief(engine.tick(at(30))) == [("raised", "spo2_low", "high", 15.0)]


def test_a_gap_longer_than_the_hold_breaks_persistence() -> None:
    engine = AlarmEngine()
    hold(engine, "pt-1", "spo2", 88, 0, 3)  # 0..2 s, vouches until 12 s
    assert hold(engine, "pt-1", "spo2", 88, 13, 14) == []  # restarts at 13 s: due at 28 s
    assert brief(hold(engine, "pt-1", "spo2", 88, 27, 2)) == [("raised", "spo2_low", "high", 28.0)]


def test_recovery_to_91_keeps_the_alert_then_93_improves_it_and_95_clears_it() -> None:
    engine = AlarmEngine()
    assert spo2_only(engine, "pt-1", 88, 0, 16) == ["raised"]
    assert spo2_only(engine, "pt-1", 91, 16, 60) == []  # inside the 90..92 hysteresis band: still high
    # 93 is >= 92 (the high level clears after 30 s) but still below the medium limit of 94.
    changes = hold(engine, "pt-1", "spo2", 93, 76, 40)
    assert brief(changes) == [("improved", "spo2_low", "medium", 106.0)]
    assert brief(hold(engine, "pt-1", "spo2", 95, 116, 31)) == [("cleared", "spo2_low", "medium", 146.0)]


def test_with_only_the_high_level_93_for_30_s_clears() -> None:
    config = default_config().overridden({"thresholds": {"spo2_low": {"levels": [
        {"priority": "high", "threshold": 90, "delay_s": 15, "clear_at": 92, "clear_delay_s": 30}]}}})
    engine = AlarmEngine()
    engine.configure_patient("pt-1", config, at=at(0))
    assert spo2_only(engine, "pt-1", 88, 0, 16) == ["raised"]
    assert spo2_only(engine, "pt-1", 91, 16, 20) == []
    assert spo2_only(engine, "pt-1", 93, 36, 29) == []
    changes = hold(engine, "pt-1", "spo2", 93, 65, 2)
    assert brief(changes) == [("cleared", "spo2_low", "high", 66.0)]
    assert changes[0].alert.state == "cleared"


def test_the_alert_id_is_stable_across_escalation_improvement_and_clearing() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "heart_rate", 115, 0, 20)  # medium after 10 s
    changes += hold(engine, "pt-1", "heart_rate", 140, 20, 20)  # high after 10 s more
    changes += hold(engine, "pt-1", "heart_rate", 120, 40, 40)  # below 125 for 30 s: back to medium
    changes += hold(engine, "pt-1", "heart_rate", 80, 80, 40)  # below 105 for 30 s: cleared
    hr = [c for c in changes if c.alert.rule == "hr_high"]
    assert brief(hr) == [("raised", "hr_high", "medium", 10.0), ("escalated", "hr_high", "high", 30.0),
                         ("improved", "hr_high", "medium", 70.0), ("cleared", "hr_high", "medium", 110.0)]
    assert len({c.alert.alert_id for c in hr}) == 1
    assert [c.previous_priority for c in hr] == [None, "medium", "high", "medium"]
    # A new episode is a new incident with a new id.
    again = [c for c in hold(engine, "pt-1", "heart_rate", 140, 200, 12) if c.alert.rule == "hr_high"]
    assert brief(again) == [("raised", "hr_high", "high", 210.0)]
    assert again[0].alert.alert_id != hr[0].alert.alert_id


def test_no_flapping_around_the_threshold() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "heart_rate", 135, 0, 11)
    for i in range(120):  # 129 / 131 alternate: inside the hysteresis band, never clear
        changes += engine.observe("pt-1", "heart_rate", 131 if i % 2 else 129, at(11 + i), device_id="dev-1")
    assert [c.change for c in changes if c.alert.rule == "hr_high"] == ["raised"]


@pytest.mark.parametrize(("kind", "value", "rule", "priority"), [
    ("systolic_bp", 85, "sbp_low", "high"),
    ("systolic_bp", 185, "sbp_high", "medium"),
    ("systolic_bp", 205, "sbp_high", "high"),
    ("body_temperature", 39.1, "temp_high", "medium"),
    ("body_temperature", 35.0, "temp_low", "high"),
    ("glucose", 2.8, "glucose_low", "high"),
    ("glucose", 3.5, "glucose_low", "medium"),
    ("glucose", 22.0, "glucose_high", "medium"),
])
def test_a_single_intermittent_reading_beyond_a_limit_raises_at_once(kind: str, value: float, rule: str,
                                                                      priority: str) -> None:
    changes = AlarmEngine().observe("pt-1", kind, value, at(0), device_id="cuff-1")
    assert brief(changes) == [("raised", rule, priority, 0.0)]


@pytest.mark.parametrize(("kind", "value"), [
    ("systolic_bp", 90), ("systolic_bp", 180), ("body_temperature", 39.0), ("body_temperature", 35.1),
    ("glucose", 3.9), ("glucose", 20.0),
])
def test_values_at_the_limit_on_the_safe_side_raise_nothing(kind: str, value: float) -> None:
    assert AlarmEngine().observe("pt-1", kind, value, at(0)) == []


def test_an_intermittent_alarm_clears_on_the_next_reading_back_past_the_margin() -> None:
    engine = AlarmEngine()
    engine.observe("pt-1", "systolic_bp", 85, at(0))
    assert only(engine.observe("pt-1", "systolic_bp", 93, at(900)), "sbp_low") == []  # 90..95: hysteresis band
    cleared = only(engine.observe("pt-1", "systolic_bp", 96, at(1800)), "sbp_low")
    assert brief(cleared) == [("cleared", "sbp_low", "high", 1800.0)]


def test_an_alarm_without_fresh_data_clears_as_stale_after_the_recency_window() -> None:
    engine = AlarmEngine()
    engine.observe("pt-1", "glucose", 2.5, at(0))
    assert engine.tick(at(3599)) == []
    changes = engine.tick(at(3600))
    assert brief(changes) == [("cleared", "glucose_low", "high", 3600.0)]  # glucose is no NEWS2 input
    assert "no trusted" in changes[0].alert.message


def test_thresholds_overridden_for_one_patient_only() -> None:
    engine = AlarmEngine()
    engine.configure_patient("pt-copd", default_config().overridden(scale2_overrides()), at=at(0))
    copd = hold(engine, "pt-copd", "spo2", 88, 0, 120)
    other = hold(engine, "pt-other", "spo2", 88, 0, 120)
    assert [c.alert.rule for c in copd] == []  # 88 % is on target on scale 2
    assert ("raised", "spo2_low", "high", 15.0) in brief(other)
    assert brief(hold(engine, "pt-copd", "spo2", 84, 120, 16)) == [("raised", "spo2_low", "high", 135.0)]


def test_site_overrides_disable_a_rule_and_move_a_limit() -> None:
    site = default_config().overridden({"thresholds": {"hr_low": None, "hr_high": {"levels": [
        {"priority": "high", "threshold": 150, "delay_s": 5, "clear_at": 140, "clear_delay_s": 10}]}}})
    engine = AlarmEngine(site)
    assert only(hold(engine, "pt-1", "heart_rate", 35, 0, 30), "hr_low") == []
    assert only(hold(engine, "pt-1", "heart_rate", 145, 30, 30), "hr_high") == []
    raised = only(hold(engine, "pt-1", "heart_rate", 155, 60, 6), "hr_high")
    assert brief(raised) == [("raised", "hr_high", "high", 65.0)]


def test_reconfiguring_a_patient_clears_incidents_of_changed_rules_only() -> None:
    engine = AlarmEngine()
    hold(engine, "pt-1", "heart_rate", 140, 0, 15)
    engine.observe("pt-1", "glucose", 2.5, at(14))
    config = default_config().overridden({"thresholds": {"hr_high": None}})
    changes = engine.configure_patient("pt-1", config, at=at(20))
    assert brief(changes) == [("cleared", "hr_high", "high", 20.0)]
    assert hold(engine, "pt-1", "heart_rate", 140, 20, 30) == []
    assert brief(engine.observe("pt-1", "glucose", 5.0, at(60))) == [("cleared", "glucose_low", "high", 60.0)]


def test_removing_a_patient_clears_their_open_alerts() -> None:
    engine = AlarmEngine()
    engine.observe("pt-1", "systolic_bp", 80, at(0))
    assert brief(engine.remove_patient("pt-1", at=at(5))) == [("cleared", "sbp_low", "high", 5.0)]
    assert engine.patients == ()
    assert brief(engine.observe("pt-1", "systolic_bp", 80, at(10))) == [("raised", "sbp_low", "high", 10.0)]
