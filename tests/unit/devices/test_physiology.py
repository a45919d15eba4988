"""The physiological model: scenario signatures, NEWS2 trajectories, couplings, determinism and speed."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from devices.sim import (
    HOUR,
    MINUTE,
    ArtefactProfile,
    Cohort,
    CohortError,
    PatientSimulator,
    PatientSpec,
    PhysiologicalState,
    SimulationTimeError,
    UnknownPatientError,
    scenario,
)
from proto.quality import ARTEFACT
from proto.vocabulary import kind

# 08:00 on a ward in China: circadian rhythms and meals follow this clock.
START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))


def _cohort(name: str, n: int, *, seed: int = 1, start: datetime = START, **kwargs: object) -> Cohort:
    return Cohort([PatientSpec(f"{name}-{i}", name) for i in range(n)], seed=seed, start=start,
                  **kwargs)  # type: ignore[arg-type]


def _true_series(cohort: Cohort, duration_s: float, step_s: float, field: str) -> np.ndarray:
    """times x patients of one true vital, sampled after each step."""
    rows = []
    for _ in range(round(duration_s / step_s)):
        cohort.advance(step_s)
        rows.append(cohort.true_values()[field])
    return np.array(rows)


# ---- sepsis: NEWS2 low -> medium -> high --------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sepsis_news2_rises_from_low_through_medium_to_high(seed: int) -> None:
    sim = PatientSimulator("bed-7", "sepsis", seed=seed, start=START, max_step_s=5 * MINUTE)
    first = sim.state.news2()
    scores = [first.total] + [s.news2().total for s in sim.series(12 * HOUR, 5 * MINUTE)]

    assert first.risk == "low" and first.total <= 4
    first_medium = next(i for i, total in enumerate(scores) if 5 <= total <= 6)
    first_high = next(i for i, total in enumerate(scores) if total >= 7)
    assert first_medium < first_high
    # By the end of its course the patient is and stays high risk.
    assert min(scores[-12:]) >= 7
    # Monotone-ish: two-hour averages never fall by more than a point.
    blocks = [float(np.mean(scores[i:i + 24])) for i in range(0, len(scores) - 1, 24)]
    assert all(later >= earlier - 1.0 for earlier, later in itertools.pairwise(blocks))
    assert blocks[-1] - blocks[0] >= 7


def test_sepsis_moves_every_vital_the_textbook_way() -> None:
    sim = PatientSimulator("bed-7", "sepsis", seed=4, start=START, artefacts=ArtefactProfile.clean())
    before = sim.state
    after = sim.advance(12 * HOUR)
    assert after.heart_rate > before.heart_rate + 30
    assert after.respiratory_rate > before.respiratory_rate + 8
    assert after.temperature > before.temperature + 1.8
    assert after.systolic_bp < before.systolic_bp - 25
    assert after.mean_bp < before.mean_bp - 15
    assert after.spo2 < before.spo2 - 1.5
    assert after.glucose > before.glucose
    assert (before.consciousness, before.on_oxygen) == ("A", False)
    assert (after.consciousness, after.on_oxygen) == ("C", True)
    assert after.news2(measured=True).risk == "high"


# ---- stable: 24 h of low scores -----------------------------------------------------------------


def test_stable_patients_stay_low_risk_for_24_hours() -> None:
    cohort = _cohort("stable", 6, seed=21)
    samples = 0
    for _ in range(24 * 60):
        cohort.advance(MINUTE)
        for state in cohort.states():
            samples += 1
            truth = state.news2()
            assert truth.total <= 4 and 3 not in truth.subscores.values(), state
            measured = state.news2(measured=True)
            if not state.artefacts:
                assert measured.total <= 4, state
            for parameter, points in measured.subscores.items():
                if points == 3:  # only a flagged artefact may score a single parameter 3
                    source = "body_temperature" if parameter == "temperature" else parameter
                    assert state.measured_quality(source) & ARTEFACT, (parameter, state)
    assert samples == 6 * 24 * 60


# ---- scenario signatures ------------------------------------------------------------------------


def test_acute_hypoxia_holds_spo2_below_90_until_oxygen() -> None:
    cohort = _cohort("acute_hypoxia", 6, seed=5)
    spo2 = _true_series(cohort, 3 * HOUR, MINUTE, "spo2")
    minutes = np.arange(1, spo2.shape[0] + 1)
    hypoxic = spo2[(minutes >= 45) & (minutes <= 100)]
    assert np.all(hypoxic < 90.0)
    assert np.all(spo2[minutes <= 25] > 94.0)
    # Oxygen brings it up again.
    assert np.all(spo2[minutes >= 150] > hypoxic.max())


def test_acute_hypoxia_drives_breathing_and_heart_rate() -> None:
    hypoxic = PatientSimulator("bed-2", "acute_hypoxia", seed=8, start=START)
    twin = PatientSimulator("bed-2", "stable", seed=8, start=START)
    a, b = hypoxic.advance(70 * MINUTE), twin.advance(70 * MINUTE)
    # Same patient and noise: the difference is the scenario plus the chemoreflex coupling.
    assert a.respiratory_rate - b.respiratory_rate > 10
    assert a.heart_rate - b.heart_rate > 12
    assert a.consciousness == "C" and b.consciousness == "A"


def test_hypertensive_crisis_keeps_systolic_above_180() -> None:
    cohort = _cohort("hypertensive_crisis", 6, seed=6)
    sbp = _true_series(cohort, 3 * HOUR, MINUTE, "systolic_bp")
    assert np.all(sbp[65:] > 180.0)
    assert np.all(sbp[:15] < 180.0)


def test_bradycardia_settles_below_50() -> None:
    cohort = _cohort("bradycardia", 6, seed=7)
    hr = _true_series(cohort, 3 * HOUR, MINUTE, "heart_rate")
    assert np.all(hr[65:] < 50.0)
    assert np.all(hr[:25] > 50.0)


def test_fever_climbs_above_38_5() -> None:
    cohort = _cohort("fever", 6, seed=8)
    temp = _true_series(cohort, 6 * HOUR, MINUTE, "temperature")
    assert np.all(temp[160:] > 38.5)
    assert np.all(temp[:25] < 37.8)


def test_fever_raises_heart_rate_about_10_per_degree() -> None:
    febrile = PatientSimulator("bed-3", "fever", seed=9, start=START)
    twin = PatientSimulator("bed-3", "stable", seed=9, start=START)
    excess, extra_rate = [], []
    for _ in range(36):
        a, b = febrile.advance(10 * MINUTE), twin.advance(10 * MINUTE)
        if a.temperature > 38.5:
            excess.append(a.temperature - b.temperature)
            extra_rate.append(a.heart_rate - b.heart_rate)
    # Same patient, same noise: the fever alone explains the difference.
    assert len(excess) > 20
    assert 7.5 <= np.mean(extra_rate) / np.mean(excess) <= 11.0
    assert np.mean(extra_rate) > 15.0


def test_af_rvr_is_fast_and_irregularly_irregular() -> None:
    af = PatientSimulator("bed-4", "af_rvr", seed=10, start=START)
    sinus = PatientSimulator("bed-4", "stable", seed=10, start=START)
    assert af.advance(25 * MINUTE).rhythm == "af"
    sinus.advance(25 * MINUTE)
    af_rr: list[float] = []
    sinus_rr: list[float] = []
    for _ in range(300):
        a, s = af.advance(1.0), sinus.advance(1.0)
        assert a.heart_rate > 110.0
        af_rr += a.rr_intervals_s
        sinus_rr += s.rr_intervals_s
    cv_af = np.std(af_rr) / np.mean(af_rr)
    cv_sinus = np.std(sinus_rr) / np.mean(sinus_rr)
    assert cv_af > 0.15
    assert cv_sinus < 0.08
    assert cv_af > 4 * cv_sinus
    # Beats account for the time that passed, at the simulated rate.
    assert sum(af_rr) == pytest.approx(300.0, abs=1.0)
    assert 60.0 / np.mean(af_rr) == pytest.approx(a.heart_rate, rel=0.15)


def test_circadian_rhythm_and_meals() -> None:
    cohort = _cohort("stable", 20, seed=11, start=START.replace(hour=0), max_step_s=300.0)
    by_hour = {}
    for hour in range(1, 25):
        cohort.advance(HOUR)
        by_hour[hour % 24] = {k: float(np.mean(v)) for k, v in cohort.true_values().items()}
    assert by_hour[17]["temperature"] - by_hour[5]["temperature"] > 0.3
    assert by_hour[16]["heart_rate"] > by_hour[4]["heart_rate"]
    assert by_hour[11]["systolic_bp"] - by_hour[3]["systolic_bp"] > 6
    # Glucose peaks within the hour after breakfast at 07:00 and is back near fasting by 11:00.
    assert by_hour[8]["glucose"] - by_hour[6]["glucose"] > 1.0
    assert by_hour[11]["glucose"] < by_hour[8]["glucose"] - 0.8


def test_true_values_stay_physiological_and_consistent() -> None:
    cohort = Cohort([PatientSpec(f"p{i}", name) for i, name in enumerate(
        ["sepsis", "acute_hypoxia", "hypertensive_crisis", "af_rvr", "bradycardia", "fever", "stable"])],
        seed=12, start=START)
    for _ in range(12 * 6):
        cohort.advance(10 * MINUTE)
        for state in cohort.states():
            for name in ("heart_rate", "spo2", "respiratory_rate", "systolic_bp", "diastolic_bp", "mean_bp",
                         "body_temperature", "glucose"):
                assert kind(name).is_plausible(state.true_value(name)), (name, state)
            assert state.diastolic_bp < state.mean_bp < state.systolic_bp


# ---- determinism and time -----------------------------------------------------------------------


def _fingerprint(states: list[PhysiologicalState]) -> list[tuple[object, ...]]:
    return [(s.time, s.heart_rate, s.spo2, s.systolic_bp, s.temperature, s.glucose, s.rr_intervals_s,
             s.artefacts, tuple(sorted((d, tuple(sorted(r.values.items()))) for d, r in s.readings.items())))
            for s in states]


def test_same_seed_gives_identical_series_and_different_seeds_differ() -> None:
    def run(seed: int) -> list[tuple[object, ...]]:
        return _fingerprint(PatientSimulator("bed-1", "sepsis", seed=seed, start=START).series(600.0, 1.0))

    first = run(42)
    assert first == run(42)
    other = run(43)
    assert other != first
    assert sum(a[1] != b[1] for a, b in zip(first, other, strict=True)) > 590


def test_a_patients_parameters_do_not_depend_on_the_ward_around_them() -> None:
    alone = PatientSimulator("bed-9", "fever", seed=5, start=START).state
    ward = Cohort([PatientSpec(f"bed-{i}", "stable") for i in range(9)] + [PatientSpec("bed-9", "fever")],
                  seed=5, start=START)
    together = ward.state("bed-9")
    assert (alone.heart_rate, alone.systolic_bp, alone.temperature) == (
        together.heart_rate, together.systolic_bp, together.temperature)


def test_long_steps_are_split_into_the_same_sub_steps() -> None:
    one = Cohort([PatientSpec("a", "sepsis")], seed=3, start=START, max_step_s=60.0)
    many = Cohort([PatientSpec("a", "sepsis")], seed=3, start=START, max_step_s=60.0)
    one.advance(600.0)
    for _ in range(10):
        many.advance(60.0)
    assert one.state("a").heart_rate == many.state("a").heart_rate
    assert one.state("a").glucose == many.state("a").glucose
    assert len(one.state("a").rr_intervals_s) > len(many.state("a").rr_intervals_s) * 5


def test_time_only_moves_forward_by_explicit_steps() -> None:
    sim = PatientSimulator("bed-1", "stable", seed=1, start=START)
    assert sim.state.time == START
    assert sim.advance(90.0).time == START + timedelta(seconds=90)
    assert sim.state_at(START + timedelta(minutes=5)).time == START + timedelta(minutes=5)
    before = sim.state
    assert sim.advance(0.0) is before
    with pytest.raises(SimulationTimeError):
        sim.advance(-1.0)
    with pytest.raises(SimulationTimeError):
        sim.advance(float("nan"))
    with pytest.raises(SimulationTimeError):
        sim.state_at(START)


def test_unknown_patients_are_typed_errors() -> None:
    cohort = _cohort("stable", 2)
    with pytest.raises(UnknownPatientError):
        cohort.state("nobody")
    with pytest.raises(UnknownPatientError):
        cohort.state(5)
    with pytest.raises(CohortError):
        Cohort([PatientSpec("a", "stable"), PatientSpec("a", "fever")], seed=1, start=START)
    with pytest.raises(CohortError):
        Cohort([PatientSpec("a", "stable")], seed=1, start=START, max_step_s=0.0)


def test_a_simulated_day_takes_seconds() -> None:
    cohort = Cohort([PatientSpec(f"p{i}", name) for i, name in enumerate(["stable", "sepsis", "fever"])],
                    seed=2, start=START, max_step_s=30.0)
    began = time.perf_counter()
    cohort.advance(24 * HOUR)
    assert cohort.time == START + timedelta(days=1)
    assert time.perf_counter() - began < 10.0


def test_scenarios_can_be_given_by_name_or_value() -> None:
    by_name = PatientSimulator("x", "af_rvr", seed=1, start=START)
    by_value = PatientSimulator("x", scenario("af_rvr"), seed=1, start=START)
    assert by_name.advance(HOUR).heart_rate == by_value.advance(HOUR).heart_rate
    assert by_name.state.scenario == "af_rvr"
