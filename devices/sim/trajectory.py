"""Scenarios realised for concrete patients, as flat arrays evaluated for a whole cohort at once.

Each patient draws its own baselines, severity and onset jitter from a generator seeded by (seed,
patient id), so a patient's course does not change when the ward around it grows or shrinks.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from devices.sim.dynamics import DYNAMICS, MEALS, VITAL_INDEX, VITALS
from devices.sim.scenarios import RHYTHMS, SHAPES, Scenario, shape_weight
from proto.vocabulary import CONSCIOUSNESS_CODES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# Respiratory sinus arrhythmia: a few percent of the R-R interval, less in older patients.
RSA_RANGE = (0.015, 0.045)
SEVERITY_BOUNDS = (0.75, 1.25)


@dataclass(frozen=True, slots=True)
class PatientPlan:
    """One patient's draw from their scenario: resting values and how their course deviates from the script."""

    baseline: tuple[float, ...]
    severity: float
    jitter_s: float
    meal_amplitude: float
    rsa_amplitude: float
    initial_fast: tuple[float, ...]
    initial_slow: tuple[float, ...]


def patient_rng(seed: int, patient_id: str) -> np.random.Generator:
    """The generator of a patient's fixed parameters, stable across processes and cohort sizes."""
    return np.random.default_rng([seed, zlib.crc32(patient_id.encode()), 0xBA5E])


def realise(scenario: Scenario, rng: np.random.Generator) -> PatientPlan:
    """Draw a patient's parameters for `scenario` (always the same number of draws, in the same order)."""
    baseline = tuple(scenario.baseline.get(d.name, d.baseline).draw(rng) for d in DYNAMICS)
    severity = float(np.clip(rng.normal(1.0, scenario.severity_jitter), *SEVERITY_BOUNDS))
    jitter = float(rng.uniform(-1.0, 1.0) * scenario.onset_jitter_s)
    meal = MEALS.amplitude.draw(rng)
    rsa = float(rng.uniform(*RSA_RANGE))
    fast = tuple(float(x) for x in rng.standard_normal(len(VITALS)) * [d.fast_sd for d in DYNAMICS])
    slow = tuple(float(x) for x in rng.standard_normal(len(VITALS)) * [d.slow_sd for d in DYNAMICS])
    return PatientPlan(baseline, severity, jitter, meal, rsa, fast, slow)


class CourseTable:
    """Every patient's scenario courses, flattened: the summed offsets from baseline at any time."""

    def __init__(self, n: int, scenarios: Sequence[Scenario], plans: Sequence[PatientPlan]) -> None:
        self._n = n
        rows: list[tuple[int, float, float, float, int, float]] = []
        for p, (scenario, plan) in enumerate(zip(scenarios, plans, strict=True)):
            for c in scenario.courses:
                v = VITAL_INDEX[c.vital]
                if c.delta is not None:
                    magnitude = c.delta * plan.severity
                else:
                    assert c.target is not None
                    magnitude = c.target - plan.baseline[v]
                until = np.inf if c.until_s is None else c.until_s + plan.jitter_s
                rows.append((p * len(VITALS) + v, c.onset_s + plan.jitter_s, c.ramp_s, until,
                             SHAPES.index(c.shape), magnitude))
        table = np.array(rows, dtype=np.float64).reshape(-1, 6)
        self._cell = table[:, 0].astype(np.int64)
        self._onset, self._ramp, self._until = table[:, 1], np.maximum(table[:, 2], 1e-9), table[:, 3]
        shape = table[:, 4].astype(np.int64)
        self._by_shape = [(SHAPES[k], shape == k) for k in range(len(SHAPES)) if np.any(shape == k)]
        self._magnitude = table[:, 5]

    def at(self, t: float) -> FloatArray:
        """Offsets from baseline (patients x vitals) at simulated time `t` seconds."""
        size = self._n * len(VITALS)
        if self._cell.shape[0] == 0:
            return np.zeros((self._n, len(VITALS)))
        on = np.clip((t - self._onset) / self._ramp, 0.0, 1.0)
        off = np.clip((t - self._until) / self._ramp, 0.0, 1.0)
        weight = np.empty_like(on)
        for shape, mask in self._by_shape:
            weight[mask] = shape_weight(shape, on[mask]) - shape_weight(shape, off[mask])
        offsets = np.asarray(np.bincount(self._cell, weights=weight * self._magnitude, minlength=size),
                             dtype=np.float64)
        return offsets.reshape(self._n, len(VITALS))


class StepTable:
    """A piecewise-constant coded state per patient (consciousness, oxygen, rhythm), looked up at any time."""

    def __init__(self, n: int, default: int, entries: Sequence[tuple[int, float, int]]) -> None:
        # Every patient starts with the default at -inf; entries are sorted by (patient, time) so a
        # patient's current code is the last of their entries whose time has come.
        rows = [(p, -np.inf, default) for p in range(n)] + list(entries)
        rows.sort(key=lambda r: (r[0], r[1]))
        self._patient = np.array([r[0] for r in rows], dtype=np.int64)
        self._time = np.array([r[1] for r in rows], dtype=np.float64)
        self._code = np.array([r[2] for r in rows], dtype=np.int64)
        self._first = np.searchsorted(self._patient, np.arange(n))
        self._n = n
        self._simple = len(entries) == 0

    def at(self, t: float) -> IntArray:
        """Each patient's code at simulated time `t` seconds."""
        if self._simple:
            return self._code
        started = np.bincount(self._patient[self._time <= t], minlength=self._n)
        codes: IntArray = self._code[self._first + started - 1]
        return codes


def consciousness_table(n: int, scenarios: Sequence[Scenario], plans: Sequence[PatientPlan]) -> StepTable:
    """ACVPU codes (index into proto.vocabulary.CONSCIOUSNESS_CODES) over time."""
    entries = [(p, t + plan.jitter_s, CONSCIOUSNESS_CODES.index(level))
               for p, (s, plan) in enumerate(zip(scenarios, plans, strict=True)) for t, level in s.consciousness]
    return StepTable(n, 0, entries)


def oxygen_table(n: int, scenarios: Sequence[Scenario], plans: Sequence[PatientPlan]) -> StepTable:
    """1 while on supplemental oxygen, else 0."""
    entries = [(p, t + plan.jitter_s, int(on))
               for p, (s, plan) in enumerate(zip(scenarios, plans, strict=True)) for t, on in s.oxygen]
    return StepTable(n, 0, entries)


def rhythm_table(n: int, scenarios: Sequence[Scenario], plans: Sequence[PatientPlan]) -> StepTable:
    """Rhythm codes (index into scenarios.RHYTHMS) over time."""
    entries = [(p, t + plan.jitter_s, RHYTHMS.index(rhythm))
               for p, (s, plan) in enumerate(zip(scenarios, plans, strict=True)) for t, rhythm in s.rhythm]
    return StepTable(n, 0, entries)
