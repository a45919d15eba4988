"""Scenario registry, declarative course validation, time scaling and the ward mix."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from devices.sim import (
    HOUR,
    MINUTE,
    SCENARIOS,
    Course,
    Scenario,
    ScenarioError,
    UnknownScenarioError,
    mix,
    scenario,
)
from devices.sim.dynamics import Baseline
from devices.sim.scenarios import shape_weight

EXPECTED = {"stable", "sepsis", "acute_hypoxia", "hypertensive_crisis", "af_rvr", "bradycardia", "fever"}


def test_registry_holds_the_named_scenarios() -> None:
    assert set(SCENARIOS) == EXPECTED
    for name in EXPECTED:
        assert scenario(name).name == name
        assert scenario(name).description


def test_unknown_scenario_is_a_typed_error_naming_the_choices() -> None:
    with pytest.raises(UnknownScenarioError, match="sepsis"):
        scenario("septic_shock")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vital": "pulse", "onset_s": 0, "delta": 1.0}, "unknown vital"),
        ({"vital": "heart_rate", "onset_s": 0}, "exactly one"),
        ({"vital": "heart_rate", "onset_s": 0, "delta": 1.0, "target": 80.0}, "exactly one"),
        ({"vital": "heart_rate", "onset_s": 0, "delta": 1.0, "shape": "cubic"}, "shape"),
        ({"vital": "heart_rate", "onset_s": -1, "delta": 1.0}, "negative"),
        ({"vital": "heart_rate", "onset_s": 100, "ramp_s": 50, "until_s": 120, "delta": 1.0}, "until_s"),
    ],
)
def test_invalid_courses_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        Course(**kwargs)  # type: ignore[arg-type]


def test_invalid_scenarios_are_rejected() -> None:
    with pytest.raises(ScenarioError, match="ACVPU"):
        Scenario("x", "x", course_s=HOUR, consciousness=((0.0, "Z"),))
    with pytest.raises(ScenarioError, match="rhythm"):
        Scenario("x", "x", course_s=HOUR, rhythm=((0.0, "flutter"),))  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="unknown vitals"):
        Scenario("x", "x", course_s=HOUR, baseline={"pulse": Baseline(70.0, 5.0, 60.0, 80.0)})
    with pytest.raises(ScenarioError, match="positive"):
        Scenario("x", "x", course_s=0.0)


@pytest.mark.parametrize("shape", ["linear", "sigmoid", "exponential"])
def test_shapes_start_at_zero_end_at_one_and_never_go_back(shape: str) -> None:
    u = np.linspace(0.0, 1.0, 101)
    w = shape_weight(shape, u)  # type: ignore[arg-type]
    assert w[0] == pytest.approx(0.0, abs=1e-12)
    assert w[-1] == pytest.approx(1.0)
    assert np.all(np.diff(w) >= 0)


def test_sigmoid_is_slow_at_first_and_exponential_fast() -> None:
    u = np.array([0.2])
    assert shape_weight("sigmoid", u)[0] < 0.2 < shape_weight("exponential", u)[0]


def test_time_scaling_compresses_every_time_of_a_scenario() -> None:
    sepsis = scenario("sepsis")
    fast = sepsis.time_scaled(1 / 12)
    assert fast.course_s == pytest.approx(HOUR)
    assert fast.consciousness[0][0] == pytest.approx(sepsis.consciousness[0][0] / 12)
    assert fast.oxygen[0][0] == pytest.approx(sepsis.oxygen[0][0] / 12)
    for slow_course, fast_course in zip(sepsis.courses, fast.courses, strict=True):
        assert fast_course.onset_s == pytest.approx(slow_course.onset_s / 12)
        assert fast_course.ramp_s == pytest.approx(slow_course.ramp_s / 12)
        assert fast_course.delta == slow_course.delta
    with pytest.raises(ScenarioError):
        sepsis.time_scaled(0.0)


def test_delaying_shifts_every_event() -> None:
    af = scenario("af_rvr")
    later = af.delayed(2 * HOUR)
    assert later.rhythm[0][0] == af.rhythm[0][0] + 2 * HOUR
    assert [c.onset_s for c in later.courses] == [c.onset_s + 2 * HOUR for c in af.courses]
    assert later.course_s == af.course_s + 2 * HOUR
    with pytest.raises(ScenarioError):
        af.delayed(-MINUTE)


def test_mix_is_deterministic_and_mostly_stable_with_one_sepsis() -> None:
    ward = mix(100, seed=3)
    assert ward == mix(100, seed=3)
    assert ward != mix(100, seed=4)
    counts = Counter(s.name for s in ward)
    assert len(ward) == 100
    assert len(set(ward)) == 7  # scenarios are hashable values
    assert counts["sepsis"] == 1
    assert counts["stable"] == 79
    assert sum(counts[name] for name in ("acute_hypoxia", "hypertensive_crisis", "af_rvr", "bradycardia",
                                         "fever")) == 20
    assert all(counts[name] == 4 for name in ("acute_hypoxia", "hypertensive_crisis", "af_rvr", "bradycardia",
                                              "fever"))


def test_mix_edge_cases() -> None:
    assert mix(0) == ()
    assert [s.name for s in mix(1)] == ["sepsis"]
    assert Counter(s.name for s in mix(10, deteriorating=0, acute_share=0.0)) == {"stable": 10}
    assert Counter(s.name for s in mix(4, deteriorating=2, acute=("fever",), acute_share=0.5)) == {
        "sepsis": 2, "fever": 1, "stable": 1,
    }
    with pytest.raises(ScenarioError):
        mix(-1)
    with pytest.raises(ScenarioError):
        mix(5, acute_share=1.5)
    with pytest.raises(UnknownScenarioError):
        mix(5, acute=("nope",))
