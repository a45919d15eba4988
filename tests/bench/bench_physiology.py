"""Physiology model speed: simulated seconds per wall second for a ward stepped at 1 Hz.

The ward of issue 3: 100 patients x 5 devices (HR strap, oximeter, BP cuff, thermometer, glucose meter),
stepped at 1 Hz by the vectorised Cohort. Figures: the model with its readings as arrays (what device
emitters read through Cohort.batch), and the same with every patient's PhysiologicalState built.
Baseline in the same run: the same patients as 100 separate PatientSimulators stepped one by one.
Target: the 500-device simulator must run >= 50x real time including GATT encoding, so the model's
share should stay an order of magnitude above that.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from devices.sim import DEFAULT_DEVICES, Cohort, PatientSimulator, PatientSpec, mix
from tests.bench.harness import BenchContext, median

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
SEED = 7


def _ward(n: int) -> list[PatientSpec]:
    return [PatientSpec(f"bed-{i:03d}", s, DEFAULT_DEVICES) for i, s in enumerate(mix(n, seed=SEED))]


def _cohort_rate(n: int, seconds: int, *, with_states: bool) -> float:
    cohort = Cohort(_ward(n), seed=SEED, start=START)
    cohort.advance(1.0)  # warm-up: first-step caches
    began = time.perf_counter()
    for _ in range(seconds):
        cohort.advance(1.0)
        if with_states:
            cohort.states()
    return seconds / (time.perf_counter() - began)


def _one_by_one_rate(n: int, seconds: int) -> float:
    patients = [PatientSimulator(p.patient_id, p.scenario, SEED, START) for p in _ward(n)]
    began = time.perf_counter()
    for _ in range(seconds):
        for patient in patients:
            patient.cohort.advance(1.0)
    return seconds / (time.perf_counter() - began)


def run(ctx: BenchContext) -> None:
    n = ctx.scale(100, 5)
    seconds = ctx.scale(600, 20)
    rounds = ctx.scale(3, 1)
    arrays = median([_cohort_rate(n, seconds, with_states=False) for _ in range(rounds)])
    states = median([_cohort_rate(n, seconds // 2, with_states=True) for _ in range(rounds)])
    one_by_one = median([_one_by_one_rate(n, ctx.scale(30, 5)) for _ in range(rounds)])
    devices = n * len(DEFAULT_DEVICES)
    ctx.record(
        f"model, {n} patients x {len(DEFAULT_DEVICES)} devices @ 1 Hz, readings as arrays", arrays,
        "sim s / wall s", baseline=one_by_one, baseline_name=f"{n} PatientSimulators one by one",
        target=500.0, notes=f"{devices} devices",
    )
    ctx.record(
        f"model + {n} PhysiologicalStates per step", states, "sim s / wall s",
        baseline=one_by_one, baseline_name=f"{n} PatientSimulators one by one", target=100.0,
    )
