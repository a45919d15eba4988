"""Physiological parameters of the simulator, as data: baselines, noise, circadian rhythm, couplings, meals.

Each vital is an Ornstein-Uhlenbeck process in two time scales (a fast beat-to-beat/breath-to-breath
fluctuation and a slow drift over hours) around a drive = patient baseline + scenario courses + circadian
term. The numbers are typical adult ward values from the clinical literature cited next to them; they are
chosen so that a stable adult scores NEWS2 0-4 (RCP 2017) and the scenarios produce their textbook signs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Order of the true-physiology matrix columns. mean_bp is derived (MAP = DBP + (SBP - DBP) / 3).
VITALS: tuple[str, ...] = (
    "heart_rate", "spo2", "respiratory_rate", "systolic_bp", "diastolic_bp", "temperature", "glucose",
)
VITAL_INDEX: MappingProxyType[str, int] = MappingProxyType({name: i for i, name in enumerate(VITALS)})
HR, SPO2, RR, SBP, DBP, TEMP, GLU = range(len(VITALS))

# Vocabulary kind (proto/vocabulary.py) -> column of the true matrix; mean_bp is computed, not a column.
KIND_TO_VITAL: MappingProxyType[str, str] = MappingProxyType({
    "heart_rate": "heart_rate",
    "spo2": "spo2",
    "respiratory_rate": "respiratory_rate",
    "systolic_bp": "systolic_bp",
    "diastolic_bp": "diastolic_bp",
    "body_temperature": "temperature",
    "glucose": "glucose",
})


@dataclass(frozen=True, slots=True)
class Baseline:
    """A patient's resting value: drawn once per patient from a normal distribution, clipped to [low, high]."""

    mean: float
    sd: float
    low: float
    high: float

    def draw(self, rng: np.random.Generator) -> float:
        """One patient's baseline."""
        return float(np.clip(rng.normal(self.mean, self.sd), self.low, self.high))


@dataclass(frozen=True, slots=True)
class VitalDynamics:
    """How one vital fluctuates around its drive.

    The fast and slow OU parts are bounded softly by `excursion` (excursion * tanh(x / excursion)):
    homeostasis keeps a stable patient's vitals from wandering arbitrarily far, however long the run.
    `relative`: the fluctuation scales with (drive / nominal)^2 below the nominal, up to 1 (heart rate:
    at a constant R-R-interval variability dHR = HR^2 / 60 * dRR, so a bradycardia varies less in
    beats/min; above the nominal HRV in ms falls, so it does not grow). `low`/`high` clip the true
    value to what a living patient can show.
    """

    name: str
    baseline: Baseline
    fast_tau_s: float
    fast_sd: float
    slow_tau_s: float
    slow_sd: float
    excursion: float
    circadian_amplitude: float
    circadian_peak_h: float
    low: float
    high: float
    relative: bool = False


DYNAMICS: tuple[VitalDynamics, ...] = (
    # Resting adult HR 60-90/min; day-night swing of ~5-10/min peaking in the afternoon.
    VitalDynamics(
        "heart_rate", Baseline(72.0, 6.0, 60.0, 84.0), fast_tau_s=20.0, fast_sd=2.5, slow_tau_s=3600.0,
        slow_sd=3.0, excursion=18.0, circadian_amplitude=4.0, circadian_peak_h=16.0, low=25.0, high=240.0,
        relative=True,
    ),
    # Healthy SpO2 96-99 % on air (NEWS2 scale 1 scores 0 at >= 96); slight nocturnal dip.
    VitalDynamics(
        "spo2", Baseline(97.6, 0.6, 96.6, 99.0), fast_tau_s=30.0, fast_sd=0.5, slow_tau_s=7200.0,
        slow_sd=0.4, excursion=2.0, circadian_amplitude=0.3, circadian_peak_h=14.0, low=50.0, high=100.0,
    ),
    # Resting adult respiratory rate 12-20/min.
    VitalDynamics(
        "respiratory_rate", Baseline(15.0, 1.0, 13.5, 16.5), fast_tau_s=60.0, fast_sd=0.8, slow_tau_s=3600.0,
        slow_sd=0.6, excursion=3.5, circadian_amplitude=0.5, circadian_peak_h=15.0, low=4.0, high=60.0,
    ),
    # Blood pressure dips ~10 % at night ("dipping") and is highest in the late morning.
    VitalDynamics(
        "systolic_bp", Baseline(126.0, 8.0, 118.0, 145.0), fast_tau_s=120.0, fast_sd=4.0, slow_tau_s=7200.0,
        slow_sd=3.5, excursion=14.0, circadian_amplitude=6.0, circadian_peak_h=11.0, low=50.0, high=260.0,
    ),
    VitalDynamics(
        "diastolic_bp", Baseline(77.0, 5.0, 68.0, 88.0), fast_tau_s=120.0, fast_sd=3.0, slow_tau_s=7200.0,
        slow_sd=2.5, excursion=11.0, circadian_amplitude=4.0, circadian_peak_h=11.0, low=25.0, high=160.0,
    ),
    # Core temperature ~36.8 Cel, circadian amplitude ~0.25 Cel with the peak in the late afternoon.
    VitalDynamics(
        "temperature", Baseline(36.8, 0.15, 36.5, 37.1), fast_tau_s=600.0, fast_sd=0.04, slow_tau_s=10800.0,
        slow_sd=0.08, excursion=0.4, circadian_amplitude=0.25, circadian_peak_h=17.0, low=33.0, high=42.5,
    ),
    # Fasting glucose 4-6 mmol/L; meals add excursions (MEALS below).
    VitalDynamics(
        "glucose", Baseline(5.2, 0.4, 4.4, 6.0), fast_tau_s=900.0, fast_sd=0.12, slow_tau_s=14400.0,
        slow_sd=0.25, excursion=1.2, circadian_amplitude=0.0, circadian_peak_h=0.0, low=1.5, high=35.0,
    ),
)
DYNAMICS_BY_NAME: MappingProxyType[str, VitalDynamics] = MappingProxyType({d.name: d for d in DYNAMICS})
assert tuple(d.name for d in DYNAMICS) == VITALS

# Correlation of the fast fluctuations (same-beat coupling): HR with BP and breathing, SBP with DBP.
_FAST_PAIRS: tuple[tuple[int, int, float], ...] = (
    (HR, SBP, 0.3), (HR, DBP, 0.2), (HR, RR, 0.2), (SBP, DBP, 0.7), (SPO2, RR, -0.15),
)


def _correlation(pairs: tuple[tuple[int, int, float], ...]) -> FloatArray:
    matrix = np.eye(len(VITALS))
    for a, b, r in pairs:
        matrix[a, b] = matrix[b, a] = r
    return matrix


FAST_CORRELATION: FloatArray = _correlation(_FAST_PAIRS)
# Cholesky raises at import if the table is not a valid correlation matrix.
FAST_CHOLESKY: FloatArray = np.asarray(np.linalg.cholesky(FAST_CORRELATION), dtype=np.float64)

# A pulse pressure below this is not physiological for the model; DBP is capped at SBP minus it.
MIN_PULSE_PRESSURE = 15.0


@dataclass(frozen=True, slots=True)
class Coupling:
    """`target` rises by `gain` per unit that `source` lies beyond `threshold` (above or below it)."""

    source: str
    target: str
    threshold: float
    gain: float
    above: bool


COUPLINGS: tuple[Coupling, ...] = (
    # Liebermeister's rule: ~10 beats/min per Cel of fever above the normal range (up to ~37.2 Cel);
    # breathing quickens too.
    Coupling("temperature", "heart_rate", 37.2, 10.0, above=True),
    Coupling("temperature", "respiratory_rate", 37.2, 1.5, above=True),
    # Hypoxaemia drives the peripheral chemoreflex: faster breathing and a sympathetic tachycardia.
    Coupling("spo2", "heart_rate", 94.0, 1.0, above=False),
    Coupling("spo2", "respiratory_rate", 94.0, 0.6, above=False),
)
# Couplings are applied in one pass, so a coupled target must not itself drive another coupling.
assert not {c.target for c in COUPLINGS} & {c.source for c in COUPLINGS}


@dataclass(frozen=True, slots=True)
class MealModel:
    """Post-prandial glucose excursions: a gamma-shaped rise peaking `peak_s` after each meal."""

    times_of_day_h: tuple[float, ...]
    peak_s: float
    amplitude: Baseline

    def excursion(self, seconds_of_day: float, amplitude: FloatArray) -> FloatArray:
        """Glucose above baseline (mmol/L) at a local time of day, for per-patient amplitudes."""
        total = 0.0
        for meal_h in self.times_of_day_h:
            since = (seconds_of_day - meal_h * 3600.0) % 86400.0
            x = since / self.peak_s
            total += x * math.exp(1.0 - x)  # peaks at 1.0 when since == peak_s
        return amplitude * total


# Non-diabetic post-prandial peaks are 1.5-3 mmol/L above fasting, ~45-60 min after a meal.
MEALS = MealModel(times_of_day_h=(7.0, 12.0, 18.0), peak_s=50 * 60.0, amplitude=Baseline(2.2, 0.5, 1.2, 3.2))


def ou_coefficients(dt: float, tau: FloatArray, sd: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Exact OU discretisation over `dt`: x' = decay * x + innovation * N(0, 1), stationary sd `sd`."""
    decay = np.exp(-dt / tau)
    return decay, sd * np.sqrt(1.0 - decay * decay)


def circadian(seconds_of_day: float) -> FloatArray:
    """Each vital's circadian offset at a local time of day (a cosine peaking at its peak hour)."""
    hours = seconds_of_day / 3600.0
    return _CIRC_AMPLITUDE * np.cos(2.0 * np.pi * (hours - _CIRC_PEAK_H) / 24.0)


def activity(seconds_of_day: float) -> float:
    """Relative physical activity over the day: 1.0 in the afternoon, ~0.25 at 04:00 (patients asleep)."""
    hours = seconds_of_day / 3600.0
    return float(0.625 + 0.375 * np.cos(2.0 * np.pi * (hours - 16.0) / 24.0))


_CIRC_AMPLITUDE: FloatArray = np.array([d.circadian_amplitude for d in DYNAMICS])
_CIRC_PEAK_H: FloatArray = np.array([d.circadian_peak_h for d in DYNAMICS])
FAST_TAU: FloatArray = np.array([d.fast_tau_s for d in DYNAMICS])
FAST_SD: FloatArray = np.array([d.fast_sd for d in DYNAMICS])
SLOW_TAU: FloatArray = np.array([d.slow_tau_s for d in DYNAMICS])
SLOW_SD: FloatArray = np.array([d.slow_sd for d in DYNAMICS])
LOW: FloatArray = np.array([d.low for d in DYNAMICS])
HIGH: FloatArray = np.array([d.high for d in DYNAMICS])
EXCURSION: FloatArray = np.array([d.excursion for d in DYNAMICS])
RELATIVE: npt.NDArray[np.bool_] = np.array([d.relative for d in DYNAMICS])
NOMINAL: FloatArray = np.array([d.baseline.mean for d in DYNAMICS])
