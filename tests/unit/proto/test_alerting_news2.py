"""NEWS2 risk alarms (RCP 2017 chart 3) from the latest observations within their recency windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import news2
from proto.alerting import AlarmEngine, default_config
from proto.alerting.news2_bands import NEWS2_INPUTS, cell_of, cells_of, score_latest
from proto.quality import Quality
from proto.vocabulary import consciousness_code, kind
from tests.unit.proto.test_alerting_helpers import at, brief, only

MANUAL = Quality.MANUAL_ENTRY


def chart(engine: AlarmEngine, patient: str, when: float, **observations: Any) -> list[Any]:
    """Enter one set of observations by hand, as a nurse would from the NEWS2 chart."""
    changes = []
    for name, value in observations.items():
        if name == "consciousness":
            value = consciousness_code(value)
        elif name == "on_oxygen":
            value = 1.0 if value else 0.0
        changes += engine.observe(patient, name, value, at(when), MANUAL)
    return changes


FULL_SET_5 = dict(respiratory_rate=22, spo2=95, on_oxygen=False, body_temperature=37.0, systolic_bp=105,
                  heart_rate=95, consciousness="A")  # 2 + 1 + 0 + 0 + 1 + 1 + 0 = 5
FULL_SET_7 = dict(FULL_SET_5, on_oxygen=True)  # + 2 for supplemental oxygen
SINGLE_3 = dict(respiratory_rate=16, spo2=97, on_oxygen=False, body_temperature=37.0, systolic_bp=125,
                heart_rate=72, consciousness="V")  # new voice-responsiveness alone scores 3


def test_a_full_set_scoring_5_raises_a_medium_alert_after_the_confirmation_delay() -> None:
    engine = AlarmEngine()
    assert chart(engine, "pt-1", 0, **FULL_SET_5) == []
    assert engine.tick(at(59)) == []
    changes = engine.tick(at(60))
    assert brief(changes) == [("raised", "news2", "medium", 60.0)]
    change = changes[0]
    assert change.news2 is not None and change.news2.total == 5 and change.news2.complete
    assert change.alert.news2_total == 5 and change.alert.value is None and change.alert.kind is None
    assert "NEWS2 5" in change.alert.message and "incomplete" not in change.alert.message
    change.alert.validate()


def test_a_full_set_scoring_7_raises_a_high_alert() -> None:
    engine = AlarmEngine()
    chart(engine, "pt-1", 0, **FULL_SET_7)
    changes = engine.tick(at(120))
    assert brief(changes) == [("raised", "news2", "high", 60.0)]
    assert changes[0].news2 is not None and changes[0].news2.risk == "high"


def test_a_single_parameter_scoring_3_raises_a_medium_alert() -> None:
    engine = AlarmEngine()
    chart(engine, "pt-1", 0, **SINGLE_3)
    changes = engine.tick(at(60))
    assert brief(changes) == [("raised", "news2", "medium", 60.0)]
    assert changes[0].news2 is not None and changes[0].news2.total == 3
    assert changes[0].news2.risk == "low-medium"
    assert "single parameter scored 3" in changes[0].alert.message


def test_an_aggregate_of_4_without_a_3_raises_nothing() -> None:
    engine = AlarmEngine()
    chart(engine, "pt-1", 0, **dict(FULL_SET_5, heart_rate=80))
    assert engine.tick(at(3000)) == []


def test_a_partial_score_is_marked_incomplete() -> None:
    engine = AlarmEngine()
    changes = []
    for s in range(70):
        changes += engine.observe("pt-1", "heart_rate", 135, at(s), device_id="hr-1")  # 3 points
        changes += engine.observe("pt-1", "spo2", 96, at(s), device_id="ox-1")
    changes = only(changes, "news2")
    assert brief(changes) == [("raised", "news2", "medium", 60.0)]
    score = changes[0].news2
    assert score is not None and not score.complete
    assert set(score.missing) == {"respiratory_rate", "air_or_oxygen", "systolic_bp", "consciousness", "temperature"}
    assert "incomplete, missing" in changes[0].alert.message and "temperature" in changes[0].alert.message


def test_the_score_worsening_escalates_and_improving_needs_the_clear_delay() -> None:
    hourly = {"recency_s": 3600}  # charted by hand here, so they count for an hour
    engine = AlarmEngine(default_config().overridden({"timing": {
        "heart_rate": hourly, "respiratory_rate": hourly, "spo2": hourly}}))
    chart(engine, "pt-1", 0, **FULL_SET_5)
    assert brief(engine.tick(at(60))) == [("raised", "news2", "medium", 60.0)]
    chart(engine, "pt-1", 100, on_oxygen=True)  # 7 from 100 s on
    assert brief(engine.tick(at(160))) == [("escalated", "news2", "high", 160.0)]
    chart(engine, "pt-1", 200, on_oxygen=False)  # back to 5: high clears after 300 s
    assert engine.tick(at(499)) == []
    assert brief(engine.tick(at(500))) == [("improved", "news2", "medium", 500.0)]
    chart(engine, "pt-1", 600, respiratory_rate=16, heart_rate=80)  # 1: medium clears after 300 s
    assert brief(engine.tick(at(900))) == [("cleared", "news2", "medium", 900.0)]


def test_expiring_inputs_lower_the_score() -> None:
    engine = AlarmEngine()
    chart(engine, "pt-1", 0, **FULL_SET_5)
    # Respiratory rate (2 points), SpO2 and heart rate (1 each) count for 5 minutes only: from 300 s on
    # the partial score is 1 (blood pressure), and the alarm clears 300 s later.
    assert brief(engine.tick(at(60))) == [("raised", "news2", "medium", 60.0)]
    changes = engine.tick(at(2000))
    assert [(c.change, c.alert.rule, c.alert.priority) for c in changes] == [("cleared", "news2", "medium")]
    assert changes[0].alert.raised_at == at(600) + dt.timedelta(microseconds=1)
    assert changes[0].news2 is not None and changes[0].news2.total == 1
    assert changes[0].news2.missing == ("respiratory_rate", "spo2", "heart_rate")


def test_news2_can_be_disabled_per_site() -> None:
    engine = AlarmEngine(default_config().overridden({"news2": {"enabled": False}}))
    chart(engine, "pt-1", 0, **FULL_SET_7)
    assert engine.tick(at(600)) == []


# --- cells: the batched path's shortcut must agree with proto.news2 itself --------------------------

_VALUES = {
    "respiratory_rate": st.floats(2, 80), "spo2": st.floats(50, 100), "body_temperature": st.floats(25, 45),
    "systolic_bp": st.floats(40, 300), "heart_rate": st.floats(20, 300),
}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_VALUES)), st.data())
def test_values_in_one_cell_score_the_same_points_on_every_scale(kind_name: str, data: st.DataObject) -> None:
    a = data.draw(_VALUES[kind_name])
    b = data.draw(_VALUES[kind_name])
    wire_id = kind(kind_name).wire_id
    param = NEWS2_INPUTS[kind_name]
    for scale in (1, 2):
        assert cell_of(scale, wire_id, a) == int(cells_of(scale, wire_id, np.array([a]))[0])
        if cell_of(scale, wire_id, a) != cell_of(scale, wire_id, b):
            continue
        for oxygen in (False, True):
            blank: dict[str, Any] = {p: None for p in NEWS2_INPUTS.values()}
            blank.update(on_oxygen=oxygen, spo2_scale=scale)
            assert news2.score(**{**blank, param: a}).total == news2.score(**{**blank, param: b}).total


def test_cell_edges_sit_where_the_chart_changes_band() -> None:
    hr = kind("heart_rate").wire_id
    assert cell_of(1, hr, 90.49) == cell_of(1, hr, 51.0) != cell_of(1, hr, 90.5)
    temp = kind("body_temperature").wire_id
    assert cell_of(1, temp, 38.04) != cell_of(1, temp, 38.05)
    spo2 = kind("spo2").wire_id
    assert cell_of(1, spo2, 96) == cell_of(1, spo2, 99)  # one cell on scale 1 ...
    assert cell_of(2, spo2, 96) != cell_of(2, spo2, 97)  # ... but not on scale 2, where oxygen matters


def test_cached_scores_equal_direct_scores() -> None:
    wire = {name: kind(name).wire_id for name in NEWS2_INPUTS}
    values = {wire["heart_rate"]: 131.2, wire["spo2"]: 93.0, wire["on_oxygen"]: 1.0,
              wire["consciousness"]: 0.0}
    direct = news2.score(respiratory_rate=None, spo2=93.0, on_oxygen=True, temperature=None, systolic_bp=None,
                         heart_rate=131.2, consciousness="A", spo2_scale=2)
    assert score_latest(values, 2) == direct
    assert score_latest(values, 2) == direct  # from the cache
