"""Rule configuration: defaults as data, validation, overrides per site and patient, serialisation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proto.alerting import (
    AlarmEngine,
    InvalidSampleError,
    RuleConfig,
    RuleConfigError,
    StateFormatError,
    default_config,
    scale2_overrides,
)
from proto.alerting.engine import STATE_FORMAT
from proto.quality import Quality
from tests.unit.proto.test_alerting_helpers import T0, at


def test_the_defaults_carry_the_documented_limits() -> None:
    config = default_config()
    limits = {r.name: [(lv.priority, r.op, lv.threshold) for lv in r.levels] for r in config.thresholds}
    assert limits["spo2_low"] == [("high", "<", 90), ("medium", "<", 94)]
    assert limits["hr_high"] == [("high", ">", 130), ("medium", ">", 110)]
    assert limits["hr_low"] == [("high", "<", 40), ("medium", "<", 50)]
    assert limits["rr_high"] == [("medium", ">", 24)] and limits["rr_low"] == [("high", "<", 8)]
    assert limits["sbp_low"] == [("high", "<", 90)]
    assert limits["sbp_high"] == [("high", ">", 200), ("medium", ">", 180)]
    assert limits["temp_high"] == [("medium", ">=", 39.1)] and limits["temp_low"] == [("high", "<=", 35.0)]
    assert limits["glucose_low"] == [("high", "<", 3.0), ("medium", "<", 3.9)]
    assert limits["glucose_high"] == [("medium", ">", 20)]
    spo2 = next(r for r in config.thresholds if r.name == "spo2_low").levels[0]
    assert (spo2.delay_s, spo2.clear_at, spo2.clear_delay_s) == (15, 92, 30)
    news2 = config.news2
    assert (news2.medium_total, news2.high_total, news2.single_parameter_medium) == (5, 7, True)
    assert config.timing["heart_rate"].recency_s == 300 and config.timing["systolic_bp"].recency_s == 3600
    assert config.timing["consciousness"].recency_s == 12 * 3600


def test_a_configuration_round_trips_through_json() -> None:
    config = default_config().overridden(scale2_overrides())
    assert RuleConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_overrides_merge_field_by_field_and_remove_rules_given_as_none() -> None:
    config = default_config().overridden({
        "thresholds": {"rr_low": None, "temp_high": {"label": "Pyrexia"}},
        "rates": {"hr_rise": {"delta": 25.0}},
        "news2": {"delay_s": 30},
        "technical": {"monitored_within_s": 120, "rules": {"implausible_value": {"delay_s": 0}}},
        "timing": {"heart_rate": {"recency_s": 600}},
    })
    names = [r.name for r in config.thresholds]
    assert "rr_low" not in names
    temp_high = next(r for r in config.thresholds if r.name == "temp_high")
    assert temp_high.label == "Pyrexia" and temp_high.levels == next(
        r for r in default_config().thresholds if r.name == "temp_high").levels
    assert next(r for r in config.rates if r.name == "hr_rise").delta == 25.0
    assert config.news2.delay_s == 30 and config.news2.high_total == 7
    assert config.technical.monitored_within_s == 120
    assert next(r for r in config.technical.rules if r.name == "implausible_value").delay_s == 0
    assert config.timing["heart_rate"].recency_s == 600 and config.timing["heart_rate"].hold_s == 10


def test_a_new_rule_can_be_added_by_override() -> None:
    config = default_config().overridden({"thresholds": {"dbp_high": {
        "kind": "diastolic_bp", "op": ">", "label": "Diastolic high",
        "levels": [{"priority": "medium", "threshold": 110, "clear_at": 100}]}}})
    engine = AlarmEngine(config)
    changes = engine.observe("pt-1", "diastolic_bp", 115, at(0))
    assert [(c.alert.rule, c.alert.priority) for c in changes] == [("dbp_high", "medium")]


BAD_OVERRIDES: list[tuple[dict[str, Any], str]] = [
    ({"thresholds": {"x": {"kind": "heart_rate", "op": ">", "levels": []}}}, "at least one level"),
    ({"thresholds": {"hr_high": {"op": "=>"}}}, "op must be"),
    ({"thresholds": {"hr_high": {"kind": "pulse"}}}, "unknown vital-sign kind"),
    ({"thresholds": {"Bad Name": {"kind": "heart_rate", "op": ">", "levels": [
        {"priority": "high", "threshold": 1}]}}}, "invalid rule name"),
    ({"thresholds": {"spo2_low": {"levels": [{"priority": "medium", "threshold": 94},
                                             {"priority": "high", "threshold": 90}]}}}, "most severe first"),
    ({"thresholds": {"spo2_low": {"levels": [{"priority": "high", "threshold": 94},
                                             {"priority": "medium", "threshold": 90}]}}}, "less extreme"),
    ({"thresholds": {"spo2_low": {"levels": [{"priority": "high", "threshold": 90, "clear_at": 88}]}}},
     "safe side"),
    ({"thresholds": {"spo2_low": {"levels": [{"priority": "urgent", "threshold": 90}]}}}, "priority"),
    ({"thresholds": {"spo2_low": {"levels": [{"priority": "high", "threshold": 90, "delay_s": -1}]}}},
     "seconds"),
    ({"thresholds": {"spo2_low": {"levels": [{"priority": "high", "threshold": 90, "typo": 1}]}}},
     "unknown fields"),
    ({"rates": {"hr_rise": {"clear_delta": 50}}}, "clear_delta"),
    ({"rates": {"rr_rise": {"kind": "respiratory_rate", "direction": "rise", "delta": 8, "window_s": 600}}},
     "no history_bucket_s"),
    ({"news2": {"spo2_scale": 3}}, "spo2_scale"),
    ({"news2": {"medium_total": 8}}, "medium_total"),
    ({"technical": {"rules": {"sensor_off": {"flags": ["manual_entry"]}}}}, "flags"),
    ({"technical": {"rules": {"sensor_off": {"flags": ["bogus"]}}}}, "unknown quality flag"),
    ({"timing": {"heart_rate": {"recency_s": 0}}}, "recency_s"),
    ({"rates": {"news2": {"kind": "heart_rate", "direction": "rise", "delta": 8, "window_s": 600}}},
     "duplicate"),
    ({"alarms": {}}, "unknown sections"),
]


@pytest.mark.parametrize(("overrides", "problem"), BAD_OVERRIDES)
def test_bad_configuration_is_refused_with_the_reason(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(RuleConfigError, match=problem):
        default_config().overridden(overrides)


def test_malformed_configuration_data_is_a_config_error() -> None:
    with pytest.raises(RuleConfigError):
        RuleConfig.from_dict({"thresholds": []})


@pytest.mark.parametrize(("call", "problem"), [
    (lambda e: e.observe("pt-1", "pulse", 70, at(0)), "unknown vital-sign kind"),
    (lambda e: e.observe("pt-1", "heart_rate", float("nan"), at(0)), "finite"),
    (lambda e: e.observe("pt-1", "heart_rate", 70, at(0).replace(tzinfo=None)), "timezone-aware"),
    (lambda e: e.observe("Zhang San", "heart_rate", 70, at(0)), "pseudonymous"),
    (lambda e: e.tick(at(0).replace(tzinfo=None)), "timezone-aware"),
])
def test_bad_samples_are_refused_with_our_own_error(call: Any, problem: str) -> None:
    with pytest.raises(InvalidSampleError, match=problem):
        call(AlarmEngine())


def test_state_survives_a_restart_with_open_incidents_and_patient_configs() -> None:
    engine = AlarmEngine()
    engine.configure_patient("pt-copd", default_config().overridden(scale2_overrides()), at=T0)
    for s in range(20):
        engine.observe("pt-1", "spo2", 85, at(s), device_id="ox-1")
        engine.observe("pt-1", "heart_rate", 72 + s % 3, at(s), device_id="ox-1")
        engine.observe("pt-copd", "spo2", 80, at(s), Quality.MOTION, device_id="ox-2")
    saved = json.dumps(engine.to_dict())
    restored = AlarmEngine.from_dict(json.loads(saved))
    assert restored.patient_config("pt-copd") == engine.patient_config("pt-copd")
    assert restored.patient_config("pt-1") == default_config()
    later = [(c.change, c.alert.patient_id, c.alert.rule, c.alert.alert_id) for c in engine.tick(at(4000))]
    again = [(c.change, c.alert.patient_id, c.alert.rule, c.alert.alert_id) for c in restored.tick(at(4000))]
    assert later == again and ("cleared", "pt-1", "spo2_low") in [x[:3] for x in later]


@pytest.mark.parametrize("data", [
    {}, {"format": "telemed.alerting.state/0"},
    {"format": STATE_FORMAT, "config": {}, "patients": [], "stats": {}},
    {"format": STATE_FORMAT, "config": default_config().to_dict(), "patients": [{"id": "pt-1"}], "stats": {}},
])
def test_unreadable_state_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(StateFormatError):
        AlarmEngine.from_dict(data)
