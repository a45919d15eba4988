"""Device readings: accuracy, artefacts (flagged, bounded, never touching the truth), batteries, schedules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from devices.sim import (
    BLOOD_PRESSURE_MONITOR,
    CHEST_PATCH,
    DEFAULT_DEVICES,
    GLUCOSE_METER,
    HEART_RATE_MONITOR,
    HOUR,
    MINUTE,
    PULSE_OXIMETER,
    THERMOMETER,
    ArtefactProfile,
    Cohort,
    DailyAt,
    EpisodeRate,
    Every,
    PatientSimulator,
    PatientSpec,
    UnknownDeviceError,
)
from devices.sim.schedule import count_periodic, device_phase
from proto.quality import Quality

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
ALL_DEVICES = (*DEFAULT_DEVICES, CHEST_PATCH)


def _ward(n: int, *, seed: int, profile: ArtefactProfile | None = None, name: str = "stable") -> Cohort:
    return Cohort([PatientSpec(f"p{i}", name, ALL_DEVICES) for i in range(n)], seed=seed, start=START,
                  artefacts=profile)


# ---- artefacts distort measurements, never the truth --------------------------------------------


def test_artefacts_change_readings_but_not_the_true_physiology() -> None:
    noisy, clean = _ward(20, seed=4), _ward(20, seed=4, profile=ArtefactProfile.clean())
    distorted = 0
    for _ in range(600):
        noisy.advance(1.0)
        clean.advance(1.0)
        truth, clean_truth = noisy.true_values(), clean.true_values()
        for vital in truth:
            np.testing.assert_array_equal(truth[vital], clean_truth[vital])
        ox_noisy, ox_clean = noisy.batch(PULSE_OXIMETER), clean.batch(PULSE_OXIMETER)
        hit = ox_noisy.artefacts["motion"] | ox_noisy.artefacts["low_perfusion"]
        distorted += int(np.count_nonzero(hit))
        # Without artefacts a reading is the truth within device accuracy (ISO 80601-2-61: a few %).
        assert np.all(np.abs(ox_clean.values[:, 0] - truth["spo2"]) <= 3.5)
        assert not np.isnan(ox_clean.values).any()
    assert distorted > 0


def test_every_artefact_is_visible_in_the_readings() -> None:
    ward = _ward(30, seed=5)
    seen: set[str] = set()
    for _ in range(1200):
        ward.advance(3.0)
        for device in ALL_DEVICES:
            batch = ward.batch(device)
            for name, mask in batch.artefacts.items():
                if not mask.any():
                    continue
                seen.add(name)
                rows = batch.values[mask]
                quality = batch.quality[mask]
                if name == "motion":
                    assert np.all(quality & Quality.MOTION)
                elif name == "low_perfusion":
                    assert device == PULSE_OXIMETER
                    assert np.all(quality & Quality.LOW_PERFUSION)
                elif name == "sensor_off":
                    assert np.all(quality & Quality.SENSOR_CONTACT_LOST)
                    assert np.isnan(rows).all()
                elif name in ("dropout", "battery_depleted"):
                    assert np.isnan(rows).all()
                    assert not batch.delivered[mask].any()
    assert {"motion", "low_perfusion", "sensor_off", "dropout"} <= seen


def test_motion_produces_spurious_heart_rates_and_low_saturations() -> None:
    ward = Cohort([PatientSpec(f"p{i}", "stable", (PULSE_OXIMETER,)) for i in range(60)], seed=6,
                  start=START.replace(hour=15))
    hr_error, spo2_error = [], []
    for _ in range(1200):
        ward.advance(1.0)
        truth = ward.true_values()
        ox = ward.batch(PULSE_OXIMETER)
        moving = ox.artefacts["motion"] & ~ox.artefacts["low_perfusion"] & ox.delivered & ~ox.artefacts["sensor_off"]
        hr_error += list(ox.values[moving, 1] - truth["heart_rate"][moving])
        spo2_error += list(ox.values[moving, 0] - truth["spo2"][moving])
    assert len(hr_error) > 100
    assert np.std(hr_error) > 15.0  # wild pulse rates
    assert np.mean(spo2_error) < -3.0  # falsely low saturation


def test_artefact_time_is_bounded_and_follows_activity() -> None:
    # Episode transitions are exact for any step, so 60 s steps sample the same fractions as 1 s steps.
    ward = Cohort([PatientSpec(f"p{i}", "stable", (PULSE_OXIMETER,)) for i in range(50)], seed=7, start=START)
    day = {"motion": 0, "low_perfusion": 0, "sensor_off": 0, "dropout": 0}
    night_motion = 0
    steps = int(12 * HOUR / 60.0)
    for _ in range(steps):  # 08:00 -> 20:00
        ward.advance(60.0)
        for name, mask in ward.batch(PULSE_OXIMETER).artefacts.items():
            if name in day:
                day[name] += int(np.count_nonzero(mask))
    for _ in range(steps):  # 20:00 -> 08:00
        ward.advance(60.0)
        night_motion += int(np.count_nonzero(ward.batch(PULSE_OXIMETER).artefacts["motion"]))
    fraction = {name: count / (steps * 50) for name, count in day.items()}
    assert 0.003 < fraction["motion"] < 0.03
    assert 0.0005 < fraction["low_perfusion"] < 0.03
    assert 0.001 < fraction["sensor_off"] < 0.03
    assert 0.0001 < fraction["dropout"] < 0.01
    assert night_motion < 0.7 * day["motion"]  # patients move less at night


def test_motion_comes_in_short_episodes_a_few_times_an_hour() -> None:
    ward = Cohort([PatientSpec(f"p{i}", "stable", (PULSE_OXIMETER,)) for i in range(60)], seed=8,
                  start=START.replace(hour=15))
    moving = np.zeros(60, dtype=bool)
    starts = moving_samples = 0
    for _ in range(1800):
        ward.advance(1.0)
        now = ward.batch(PULSE_OXIMETER).artefacts["motion"]
        starts += int(np.count_nonzero(now & ~moving))
        moving_samples += int(np.count_nonzero(now))
        moving = now
    per_patient_hour = starts / 60 / 0.5
    assert 0.5 < per_patient_hour < 8.0
    assert 5.0 < moving_samples / max(starts, 1) < 40.0  # mean episode length in seconds (15 s nominal)


def test_clean_profile_has_no_artefacts_and_full_batteries() -> None:
    ward = _ward(5, seed=8, profile=ArtefactProfile.clean())
    for _ in range(120):
        ward.advance(30.0)
        for state in ward.states():
            assert not state.artefacts
            assert all(r.quality == Quality.NONE for r in state.readings.values())
            assert set(state.battery.values()) == {100.0}


def test_episode_rates_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        EpisodeRate(-1.0, 10.0)
    with pytest.raises(ValueError):
        EpisodeRate(1.0, 0.0)
    assert EpisodeRate(3.0, 15.0).active_fraction == pytest.approx(0.0123, rel=0.01)


# ---- readings ------------------------------------------------------------------------------------


def test_readings_carry_device_resolution_and_sources() -> None:
    sim = PatientSimulator("bed-1", "stable", seed=3, start=START, devices=ALL_DEVICES,
                           artefacts=ArtefactProfile.clean())
    state = sim.advance(60.0)
    assert set(state.readings) == set(ALL_DEVICES)
    hr = state.readings[HEART_RATE_MONITOR]
    assert hr.values["heart_rate"] == round(hr.values["heart_rate"])
    assert hr.rr_intervals_s and all(0.25 <= rr <= 3.0 for rr in hr.rr_intervals_s)
    assert state.readings[PULSE_OXIMETER].rr_intervals_s == ()
    bp = state.readings[BLOOD_PRESSURE_MONITOR].values
    assert bp["mean_bp"] == round(bp["diastolic_bp"] + (bp["systolic_bp"] - bp["diastolic_bp"]) / 3)
    temperature = state.readings[THERMOMETER].values["body_temperature"]
    assert temperature == round(temperature, 1)
    assert abs(temperature - state.temperature) < 0.5
    assert state.measured("glucose") == state.readings[GLUCOSE_METER].values["glucose"]
    assert state.measured("respiratory_rate") == state.readings[CHEST_PATCH].values["respiratory_rate"]
    assert state.measured("heart_rate") == hr.values["heart_rate"]  # the chest strap is preferred


def test_without_a_device_news2_uses_the_charted_value() -> None:
    sim = PatientSimulator("bed-1", "stable", seed=3, start=START, devices=(PULSE_OXIMETER,),
                           artefacts=ArtefactProfile.clean())
    state = sim.advance(60.0)
    assert state.measured("systolic_bp") is None
    assert state.measured("heart_rate") == state.readings[PULSE_OXIMETER].values["heart_rate"]
    measured, charted = state.news2(measured=True), state.news2()
    assert measured.complete
    for parameter in ("systolic_bp", "temperature", "respiratory_rate", "consciousness"):
        assert measured.subscores[parameter] == charted.subscores[parameter]


def test_a_silent_device_hands_over_to_the_next_source_or_leaves_the_parameter_missing() -> None:
    probes_off = ArtefactProfile(sensor_off=EpisodeRate(1e6, 1e9), dropout=EpisodeRate(0.0, 1.0))
    sim = PatientSimulator("bed-1", "stable", seed=3, start=START, artefacts=probes_off)
    state = sim.advance(60.0)
    assert not state.readings[HEART_RATE_MONITOR].contact and not state.readings[PULSE_OXIMETER].contact
    # The chest strap and the oximeter are off: the cuff's pulse rate stands in.
    assert state.measured("heart_rate") == state.readings[BLOOD_PRESSURE_MONITOR].values["heart_rate"]
    assert state.measured("spo2") is None
    assert state.measured_quality("spo2") & Quality.SENSOR_CONTACT_LOST
    assert "spo2" in state.news2(measured=True).missing


def test_blood_pressure_cuff_flags_an_irregular_pulse_in_af() -> None:
    sim = PatientSimulator("bed-4", "af_rvr", seed=2, start=START, artefacts=ArtefactProfile.clean())
    before = sim.advance(10 * MINUTE).readings[BLOOD_PRESSURE_MONITOR].quality
    after = sim.advance(20 * MINUTE).readings[BLOOD_PRESSURE_MONITOR].quality
    assert not before & Quality.IRREGULAR_PULSE
    assert after & Quality.IRREGULAR_PULSE


def test_unknown_devices_are_typed_errors() -> None:
    with pytest.raises(UnknownDeviceError):
        Cohort([PatientSpec("a", "stable", ("ecg_holter",))], seed=1, start=START)
    cohort = Cohort([PatientSpec("a", "stable", (PULSE_OXIMETER,))], seed=1, start=START)
    with pytest.raises(UnknownDeviceError):
        cohort.batch(THERMOMETER)
    with pytest.raises(UnknownDeviceError):
        cohort.replace_battery("a", THERMOMETER)


# ---- batteries -----------------------------------------------------------------------------------


def test_batteries_drain_by_device_type_and_can_be_replaced() -> None:
    profile = ArtefactProfile(battery_start=(60.0, 60.0), battery_swap_s=None)
    sim = PatientSimulator("bed-1", "stable", seed=1, start=START, artefacts=profile)
    start = dict(sim.state.battery)
    later = sim.advance(12 * HOUR)
    used = {device: start[device] - later.battery[device] for device in start}
    assert all(amount > 0 for amount in used.values())
    # A continuous oximeter (~1.5 days a battery) empties far faster than a chest strap (~2.5 weeks).
    assert used[PULSE_OXIMETER] > 5 * used[HEART_RATE_MONITOR]
    flat = sim.advance(12 * HOUR)
    assert flat.battery[PULSE_OXIMETER] == 0.0
    assert "battery_depleted" in flat.readings[PULSE_OXIMETER].artefacts
    assert not flat.readings[PULSE_OXIMETER].delivered
    assert flat.measured("spo2") is None
    sim.cohort.replace_battery("bed-1", PULSE_OXIMETER)
    assert sim.state.battery[PULSE_OXIMETER] == 100.0
    assert sim.advance(1.0).measured("spo2") is not None


def test_a_nurse_swaps_a_flat_battery_after_the_configured_delay() -> None:
    profile = ArtefactProfile(battery_start=(1.0, 1.0), battery_swap_s=20 * MINUTE)
    sim = PatientSimulator("bed-1", "stable", seed=1, start=START, artefacts=profile)
    levels = [sim.advance(MINUTE).battery[PULSE_OXIMETER] for _ in range(120)]
    first_flat = levels.index(0.0)
    refilled = next(i for i, level in enumerate(levels) if i > first_flat and level > 90.0)
    assert refilled - first_flat == pytest.approx(20, abs=1)


# ---- schedules -----------------------------------------------------------------------------------


def test_periodic_schedule_due_times() -> None:
    every = Every(30 * MINUTE)
    assert every.due_times(0.0, 2 * HOUR, phase_s=600.0) == (600.0, 2400.0, 4200.0, 6000.0)
    assert every.count_due(0.0, 2 * HOUR, phase_s=600.0) == 4
    assert every.due_times(600.0, 2400.0, phase_s=600.0) == (2400.0,)  # (t0, t1]
    assert Every(1.0).count_due(10.0, 15.0) == 5
    with pytest.raises(ValueError):
        Every(0.0)


def test_daily_schedule_follows_the_local_clock() -> None:
    glucose = DailyAt((6.5, 9.0, 14.0, 20.0))
    # Starting at 08:00 local: next 09:00 (1 h), 14:00 (6 h), 20:00 (12 h), 06:30 next day (22.5 h).
    due = glucose.due_times(0.0, 24 * HOUR, day_offset_s=8 * HOUR)
    assert due == (1 * HOUR, 6 * HOUR, 12 * HOUR, 22.5 * HOUR)
    assert glucose.due_times(0.0, 24 * HOUR, phase_s=120.0, day_offset_s=8 * HOUR)[0] == HOUR + 120.0
    events = glucose.events(0.0, 8 * HOUR)
    counts = count_periodic(0.0, 24 * HOUR, np.array([e[0] for e in events]), np.array([e[1] for e in events]))
    assert counts.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert glucose.count_due(0.0, 3 * 24 * HOUR, day_offset_s=8 * HOUR) == 12
    with pytest.raises(ValueError):
        DailyAt((25.0,))


def test_device_phases_are_stable_and_spread() -> None:
    cuff = Every(30 * MINUTE)
    phases = {device_phase(f"p{i}", BLOOD_PRESSURE_MONITOR, cuff) for i in range(100)}
    assert all(0 <= p < 30 * MINUTE for p in phases)
    assert len(phases) > 90
    assert device_phase("p1", BLOOD_PRESSURE_MONITOR, cuff) == device_phase("p1", BLOOD_PRESSURE_MONITOR, cuff)
    assert device_phase("p1", PULSE_OXIMETER, Every(1.0)) == 0.0


def test_cohort_reports_which_measurements_are_due() -> None:
    cohort = Cohort([PatientSpec(f"p{i}", "stable") for i in range(4)], seed=1, start=START, max_step_s=600.0)
    cuff_due = 0
    for _ in range(360):
        cohort.advance(10.0)
        batch = cohort.batch(BLOOD_PRESSURE_MONITOR)
        cuff_due += int(batch.due.sum())
        assert cohort.batch(PULSE_OXIMETER).due.all()
        assert len(cohort.due_times("p0", PULSE_OXIMETER)) == 10  # 1 Hz
        for i in range(4):
            times = cohort.due_times(f"p{i}", BLOOD_PRESSURE_MONITOR)
            assert len(times) == int(batch.due[i])
            assert all(cohort.time - timedelta(seconds=10) < t <= cohort.time for t in times)
            assert cohort.state(f"p{i}").readings[BLOOD_PRESSURE_MONITOR].due == bool(batch.due[i])
    assert cuff_due == 4 * 2  # every 30 min
    cohort.advance(24 * HOUR)
    assert len(cohort.due_times("p0", GLUCOSE_METER)) == 4
