"""Named clinical scenarios: declarative trajectories of the vitals over simulated time.

A scenario is data: the courses its vitals follow away from the patient's baseline (onset, ramp, shape,
an absolute target or a relative change), step changes of consciousness, oxygen and heart rhythm, and
noise and motion modifiers. The physiology model (devices.sim.physiology) turns it into numbers; the
couplings that every patient shares (fever raises the heart rate, hypoxia the breathing) live there,
so scenarios state only the primary disturbance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from devices.sim.dynamics import VITAL_INDEX, Baseline
from devices.sim.errors import ScenarioError, UnknownScenarioError
from proto.vocabulary import CONSCIOUSNESS_CODES

MINUTE = 60.0
HOUR = 3600.0

Shape = Literal["linear", "sigmoid", "exponential"]
SHAPES: tuple[Shape, ...] = ("linear", "sigmoid", "exponential")
Rhythm = Literal["sinus", "af"]
RHYTHMS: tuple[Rhythm, ...] = ("sinus", "af")


@dataclass(frozen=True, slots=True)
class Course:
    """One vital's scripted change, starting at `onset_s` and complete `ramp_s` later (0 = a step).

    Exactly one of `delta` (a change from the patient's baseline, scaled by the patient's severity) and
    `target` (an absolute level reached whatever the baseline) is given. With `until_s` the change
    reverses from then on over the same ramp; courses on the same vital add up.
    """

    vital: str
    onset_s: float
    ramp_s: float = 0.0
    delta: float | None = None
    target: float | None = None
    shape: Shape = "sigmoid"
    until_s: float | None = None

    def __post_init__(self) -> None:
        if self.vital not in VITAL_INDEX:
            raise ScenarioError(f"unknown vital {self.vital!r} (one of {', '.join(VITAL_INDEX)})")
        if (self.delta is None) == (self.target is None):
            raise ScenarioError(f"course on {self.vital}: give exactly one of delta and target")
        if self.shape not in SHAPES:
            raise ScenarioError(f"course on {self.vital}: unknown shape {self.shape!r}")
        if self.ramp_s < 0 or self.onset_s < 0:
            raise ScenarioError(f"course on {self.vital}: onset and ramp must not be negative")
        if self.until_s is not None and self.until_s < self.onset_s + self.ramp_s:
            raise ScenarioError(f"course on {self.vital}: until_s precedes the end of the ramp")

    def scaled(self, factor: float) -> Course:
        """The same course with every time multiplied by `factor`."""
        return dataclasses.replace(
            self, onset_s=self.onset_s * factor, ramp_s=self.ramp_s * factor,
            until_s=None if self.until_s is None else self.until_s * factor,
        )


def shape_weight(shape: Shape, progress: np.ndarray) -> np.ndarray:
    """How far a course has gone (0..1) at ramp progress 0..1, for one shape."""
    if shape == "linear":
        return progress
    if shape == "sigmoid":
        return _sigmoid(progress)
    return _exponential(progress)


def _sigmoid(u: np.ndarray) -> np.ndarray:
    # A logistic rescaled to pass exactly through (0, 0) and (1, 1): slow start, fast middle, plateau.
    low, high = 1.0 / (1.0 + math.exp(5.0)), 1.0 / (1.0 + math.exp(-5.0))
    weight: np.ndarray = (1.0 / (1.0 + np.exp(-10.0 * (u - 0.5))) - low) / (high - low)
    return weight


def _exponential(u: np.ndarray) -> np.ndarray:
    # A first-order approach (three time constants across the ramp), rescaled to end at 1.
    weight: np.ndarray = (1.0 - np.exp(-3.0 * u)) / (1.0 - math.exp(-3.0))
    return weight


Steps = tuple[tuple[float, str], ...]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, declarative clinical course. Times are seconds of simulated time from the start.

    `course_s` is how long the scenario takes to show its full picture; `onset_jitter_s` shifts every
    time of a patient's course by up to +/- that much, and `severity_jitter` scales its `delta` courses
    by a factor ~ N(1, severity_jitter), so patients sharing a scenario do not move in lockstep.
    """

    name: str
    description: str
    course_s: float
    courses: tuple[Course, ...] = ()
    baseline: Mapping[str, Baseline] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    consciousness: Steps = ()
    oxygen: tuple[tuple[float, bool], ...] = ()
    rhythm: tuple[tuple[float, Rhythm], ...] = ()
    motion_factor: float = 1.0
    onset_jitter_s: float = 0.0
    severity_jitter: float = 0.08

    def __post_init__(self) -> None:
        unknown = set(self.baseline) - set(VITAL_INDEX)
        if unknown:
            raise ScenarioError(f"scenario {self.name}: unknown vitals {sorted(unknown)}")
        object.__setattr__(self, "baseline", MappingProxyType(dict(self.baseline)))
        for _, level in self.consciousness:
            if level not in CONSCIOUSNESS_CODES:
                raise ScenarioError(f"scenario {self.name}: consciousness {level!r} is not ACVPU")
        for _, rhythm in self.rhythm:
            if rhythm not in RHYTHMS:
                raise ScenarioError(f"scenario {self.name}: unknown rhythm {rhythm!r}")
        times = [t for t, _ in self.consciousness] + [t for t, _ in self.oxygen] + [t for t, _ in self.rhythm]
        if any(t < 0 for t in times) or self.course_s <= 0:
            raise ScenarioError(f"scenario {self.name}: times must not be negative, course_s must be positive")

    def time_scaled(self, factor: float) -> Scenario:
        """The same scenario running `factor` times as long (e.g. 1/12 to show a 12 h sepsis in an hour)."""
        if not factor > 0:
            raise ScenarioError(f"time scale factor must be positive, got {factor!r}")
        return dataclasses.replace(
            self,
            course_s=self.course_s * factor,
            courses=tuple(c.scaled(factor) for c in self.courses),
            consciousness=tuple((t * factor, v) for t, v in self.consciousness),
            oxygen=tuple((t * factor, v) for t, v in self.oxygen),
            rhythm=tuple((t * factor, v) for t, v in self.rhythm),
            onset_jitter_s=self.onset_jitter_s * factor,
        )

    def delayed(self, by_s: float) -> Scenario:
        """The same scenario with every event `by_s` seconds later (a patient who deteriorates later)."""
        if by_s < 0:
            raise ScenarioError(f"a scenario can only be delayed, got {by_s!r}")
        return dataclasses.replace(
            self,
            course_s=self.course_s + by_s,
            courses=tuple(
                dataclasses.replace(c, onset_s=c.onset_s + by_s,
                                    until_s=None if c.until_s is None else c.until_s + by_s)
                for c in self.courses
            ),
            consciousness=tuple((t + by_s, v) for t, v in self.consciousness),
            oxygen=tuple((t + by_s, v) for t, v in self.oxygen),
            rhythm=tuple((t + by_s, v) for t, v in self.rhythm),
        )


STABLE = Scenario(
    name="stable",
    description="A recovering ward patient: normal vitals with noise, drift, circadian rhythm and meals.",
    course_s=24 * HOUR,
)

SEPSIS = Scenario(
    name="sepsis",
    description=(
        "Evolving sepsis over ~10 h: fever, rising heart and breathing rates, then falling blood pressure "
        "and saturation, oxygen started, late new confusion. NEWS2 goes low -> medium -> high."
    ),
    course_s=12 * HOUR,
    courses=(
        Course("temperature", onset_s=1 * HOUR, ramp_s=6 * HOUR, delta=2.4),
        Course("heart_rate", onset_s=1 * HOUR, ramp_s=9 * HOUR, delta=28.0, shape="linear"),
        Course("respiratory_rate", onset_s=1.5 * HOUR, ramp_s=8.5 * HOUR, delta=9.0, shape="linear"),
        Course("systolic_bp", onset_s=3 * HOUR, ramp_s=7 * HOUR, delta=-38.0),
        Course("diastolic_bp", onset_s=3 * HOUR, ramp_s=7 * HOUR, delta=-22.0),
        Course("spo2", onset_s=4 * HOUR, ramp_s=6 * HOUR, delta=-6.0, shape="linear"),
        # Oxygen started at 9.5 h lifts the saturation a little (scored as "on oxygen" from then on).
        Course("spo2", onset_s=9.5 * HOUR, ramp_s=20 * MINUTE, delta=2.5, shape="exponential"),
        # Stress hyperglycaemia.
        Course("glucose", onset_s=2 * HOUR, ramp_s=6 * HOUR, delta=3.0),
    ),
    oxygen=((9.5 * HOUR, True),),
    consciousness=((10.5 * HOUR, "C"),),
    onset_jitter_s=20 * MINUTE,
)

ACUTE_HYPOXIA = Scenario(
    name="acute_hypoxia",
    description=(
        "Sudden hypoxaemia (e.g. pulmonary embolism) at 30 min: SpO2 ~84 % on air with reflex tachypnoea "
        "and tachycardia and new confusion, partly corrected by oxygen from 100 min."
    ),
    course_s=3 * HOUR,
    courses=(
        Course("spo2", onset_s=30 * MINUTE, ramp_s=10 * MINUTE, target=84.0),
        Course("respiratory_rate", onset_s=30 * MINUTE, ramp_s=10 * MINUTE, delta=7.0),
        Course("heart_rate", onset_s=30 * MINUTE, ramp_s=10 * MINUTE, delta=8.0),
        Course("spo2", onset_s=100 * MINUTE, ramp_s=20 * MINUTE, delta=8.0, shape="exponential"),
        Course("respiratory_rate", onset_s=100 * MINUTE, ramp_s=30 * MINUTE, delta=-4.0, shape="exponential"),
    ),
    oxygen=((100 * MINUTE, True),),
    consciousness=((45 * MINUTE, "C"), (130 * MINUTE, "A")),
    motion_factor=1.5,
    onset_jitter_s=2 * MINUTE,
)

HYPERTENSIVE_CRISIS = Scenario(
    name="hypertensive_crisis",
    description="A known hypertensive whose blood pressure climbs to ~210/124 mm[Hg] from 20 min on.",
    course_s=3 * HOUR,
    baseline={"systolic_bp": Baseline(150.0, 8.0, 138.0, 165.0), "diastolic_bp": Baseline(90.0, 5.0, 82.0, 98.0)},
    courses=(
        Course("systolic_bp", onset_s=20 * MINUTE, ramp_s=40 * MINUTE, target=212.0),
        Course("diastolic_bp", onset_s=20 * MINUTE, ramp_s=40 * MINUTE, target=124.0),
        Course("heart_rate", onset_s=20 * MINUTE, ramp_s=40 * MINUTE, delta=10.0),
    ),
    onset_jitter_s=2 * MINUTE,
)

AF_RVR = Scenario(
    name="af_rvr",
    description=(
        "Atrial fibrillation with rapid ventricular response from 15 min: an irregularly irregular pulse "
        "around 140/min with large beat-to-beat RR-interval variability, and a modest fall in pressure."
    ),
    course_s=2 * HOUR,
    courses=(
        Course("heart_rate", onset_s=15 * MINUTE, ramp_s=3 * MINUTE, target=142.0, shape="exponential"),
        Course("systolic_bp", onset_s=15 * MINUTE, ramp_s=10 * MINUTE, delta=-12.0),
        Course("diastolic_bp", onset_s=15 * MINUTE, ramp_s=10 * MINUTE, delta=-6.0),
        Course("respiratory_rate", onset_s=15 * MINUTE, ramp_s=10 * MINUTE, delta=3.0),
    ),
    rhythm=((15 * MINUTE, "af"),),
    motion_factor=1.3,
    onset_jitter_s=2 * MINUTE,
)

BRADYCARDIA = Scenario(
    name="bradycardia",
    description="Sinus bradycardia (e.g. beta-blocker excess) settling around 42/min from 30 min, with lower pressure.",
    course_s=3 * HOUR,
    courses=(
        Course("heart_rate", onset_s=30 * MINUTE, ramp_s=30 * MINUTE, target=42.0),
        Course("systolic_bp", onset_s=30 * MINUTE, ramp_s=30 * MINUTE, delta=-12.0),
        Course("diastolic_bp", onset_s=30 * MINUTE, ramp_s=30 * MINUTE, delta=-6.0),
    ),
    onset_jitter_s=2 * MINUTE,
)

FEVER = Scenario(
    name="fever",
    description="An isolated fever climbing to ~39.4 Cel over 2 h from 30 min, with the expected tachycardia.",
    course_s=6 * HOUR,
    courses=(
        Course("temperature", onset_s=30 * MINUTE, ramp_s=2 * HOUR, target=39.4),
        Course("systolic_bp", onset_s=30 * MINUTE, ramp_s=2 * HOUR, delta=-5.0),
        Course("glucose", onset_s=30 * MINUTE, ramp_s=2 * HOUR, delta=0.5),
    ),
    motion_factor=1.5,  # rigors
    onset_jitter_s=5 * MINUTE,
)

SCENARIOS: Mapping[str, Scenario] = MappingProxyType({
    s.name: s for s in (STABLE, SEPSIS, ACUTE_HYPOXIA, HYPERTENSIVE_CRISIS, AF_RVR, BRADYCARDIA, FEVER)
})
ACUTE_SCENARIOS: tuple[str, ...] = ("acute_hypoxia", "hypertensive_crisis", "af_rvr", "bradycardia", "fever")


def scenario(name: str) -> Scenario:
    """The registered scenario called `name`; raises UnknownScenarioError otherwise."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UnknownScenarioError(
            f"unknown scenario {name!r} (one of {', '.join(SCENARIOS)})"
        ) from None


def mix(
    n: int, *, seed: int = 0, deteriorating: int = 1, acute_share: float = 0.2,
    acute: Sequence[str] = ACUTE_SCENARIOS,
) -> tuple[Scenario, ...]:
    """Scenarios for a ward of `n` patients, the same for the same arguments.

    `deteriorating` patients get sepsis, about `acute_share` of the rest one of the `acute` scenarios
    (each in turn, in a seeded order), and everyone else is stable; the seat order is shuffled.
    """
    if n < 0 or deteriorating < 0 or not 0.0 <= acute_share <= 1.0:
        raise ScenarioError("mix needs n >= 0, deteriorating >= 0 and 0 <= acute_share <= 1")
    rng = np.random.default_rng([seed, n, 0x5CE7])
    n_sepsis = min(deteriorating, n)
    n_acute = min(round(acute_share * (n - n_sepsis)), n - n_sepsis) if acute else 0
    acute_order = [scenario(acute[i]) for i in rng.permutation(len(acute))] if acute else []
    chosen = [SEPSIS] * n_sepsis
    chosen += [acute_order[i % len(acute_order)] for i in range(n_acute)]
    chosen += [STABLE] * (n - n_sepsis - n_acute)
    return tuple(chosen[i] for i in rng.permutation(n))
