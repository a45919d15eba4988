"""Artefact episodes: when a patient moves, a probe falls off, perfusion is too weak, or the radio drops out.

Every artefact source is a two-state (quiet/active) continuous-time Markov chain per patient or per
device: episodes start at a rate per hour (modulated by activity and physiology) and last an
exponentially distributed time. The transition probabilities are exact for any step length, so the
fraction of time spent in artefact does not depend on how finely time is stepped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class EpisodeRate:
    """Episodes start `per_hour` times an hour on average (before modulation) and last `mean_duration_s`."""

    per_hour: float
    mean_duration_s: float

    def __post_init__(self) -> None:
        if self.per_hour < 0 or not self.mean_duration_s > 0:
            raise ValueError(f"episode rate needs per_hour >= 0 and mean_duration_s > 0, got {self!r}")

    @property
    def active_fraction(self) -> float:
        """The long-run fraction of time in an episode at modulation 1."""
        alpha = self.per_hour / 3600.0
        return alpha / (alpha + 1.0 / self.mean_duration_s)


@dataclass(frozen=True, slots=True)
class ArtefactProfile:
    """How imperfect the measurements are; the default is a typical ward, `clean()` a perfect one.

    Motion and low perfusion are patient-wide (they disturb every worn device they apply to); sensor-off
    and dropout episodes are per device. Batteries start uniformly in `battery_start` percent; a flat
    battery is replaced `battery_swap_s` after it ran out (a nurse noticing the technical alarm), or never
    when that is None.
    """

    motion: EpisodeRate = EpisodeRate(3.0, 15.0)
    low_perfusion: EpisodeRate = EpisodeRate(0.2, 180.0)
    sensor_off: EpisodeRate = EpisodeRate(0.25, 90.0)
    dropout: EpisodeRate = EpisodeRate(1.0, 8.0)
    battery_start: tuple[float, float] = (50.0, 100.0)
    battery_drain: bool = True
    battery_swap_s: float | None = 30 * 60.0

    @classmethod
    def clean(cls) -> ArtefactProfile:
        """No artefacts, full batteries that do not drain: measurements are truth plus device accuracy."""
        never = EpisodeRate(0.0, 1.0)
        return cls(motion=never, low_perfusion=never, sensor_off=never, dropout=never,
                   battery_start=(100.0, 100.0), battery_drain=False)


class Episodes:
    """A vector of independent quiet/active Markov chains, stepped together."""

    def __init__(self, size: int, rate: EpisodeRate) -> None:
        self.rate = rate
        self.active: BoolArray = np.zeros(size, dtype=bool)

    def step(self, dt: float, rng: np.random.Generator, modulation: FloatArray | float = 1.0) -> None:
        """Advance every chain by `dt` seconds; `modulation` multiplies the start rate (per chain or for all).

        Always draws exactly one uniform per chain, so the random stream does not depend on the state.
        """
        u = rng.random(self.active.shape[0])
        alpha = np.asarray(modulation, dtype=np.float64) * (self.rate.per_hour / 3600.0)
        beta = 1.0 / self.rate.mean_duration_s
        total = alpha + beta
        settle = np.exp(-total * dt)
        # Exact two-state CTMC: P(active at t | quiet at 0) and P(active at t | active at 0).
        p_start = alpha / total * (1.0 - settle)
        p_stay = (alpha + beta * settle) / total
        self.active = np.where(self.active, u < p_stay, u < p_start)


def motion_modulation(activity: float, motion_factor: FloatArray, confused: BoolArray) -> FloatArray:
    """Movement follows the day's activity, the scenario (rigors, breathlessness) and agitation (ACVPU not A)."""
    return activity * motion_factor * np.where(confused, 2.0, 1.0)


def perfusion_modulation(mean_bp: FloatArray, temperature: FloatArray) -> FloatArray:
    """Weak peripheral pulses: more likely as the mean pressure falls below 75 mm[Hg] and in the cold-shivering."""
    return 1.0 + np.maximum(0.0, 75.0 - mean_bp) / 5.0 + np.maximum(0.0, 36.0 - temperature) * 2.0


def probe_modulation(activity: float) -> float:
    """Probes come off more when patients move about than when they sleep."""
    return 0.5 + 0.5 * activity
