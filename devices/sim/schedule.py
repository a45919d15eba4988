"""When a simulated device takes a measurement: every N seconds, or at fixed local times of day.

Times are seconds of simulated time since the cohort's start; `day_offset_s` is the start's local
time of day, so a glucose meter used "at 06:30" fires at 06:30 on the ward's clock. Each device gets
a stable phase from its patient and type, so 100 blood-pressure cuffs do not all inflate in the same second.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DAY_S = 86400.0


Event = tuple[float, float]  # (phase_s, period_s): times phase_s + k * period_s for every integer k


@dataclass(frozen=True, slots=True)
class Every:
    """A measurement every `period_s` seconds (1.0 = a continuous 1 Hz stream)."""

    period_s: float

    def __post_init__(self) -> None:
        if not self.period_s > 0:
            raise ValueError(f"period must be positive, got {self.period_s!r}")

    def events(self, phase_s: float = 0.0, day_offset_s: float = 0.0) -> tuple[Event, ...]:
        """The schedule as periodic events in simulation seconds."""
        return ((phase_s, self.period_s),)

    @property
    def cycle_s(self) -> float:
        """The length over which device phases are spread."""
        return self.period_s

    def due_times(self, t0_s: float, t1_s: float, *, phase_s: float = 0.0,
                  day_offset_s: float = 0.0) -> tuple[float, ...]:
        """Due times in (t0_s, t1_s], in simulation seconds."""
        return _due_times(self.events(phase_s, day_offset_s), t0_s, t1_s)

    def count_due(self, t0_s: float, t1_s: float, *, phase_s: float = 0.0, day_offset_s: float = 0.0) -> int:
        """How many measurements fall in (t0_s, t1_s]."""
        return _count_due(self.events(phase_s, day_offset_s), t0_s, t1_s)


@dataclass(frozen=True, slots=True)
class DailyAt:
    """Measurements at fixed local times of day (hours, e.g. 6.5 = 06:30), e.g. a glucose profile."""

    hours: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.hours or any(not 0.0 <= h < 24.0 for h in self.hours):
            raise ValueError(f"times of day must be in [0, 24) hours, got {self.hours!r}")

    def events(self, phase_s: float = 0.0, day_offset_s: float = 0.0) -> tuple[Event, ...]:
        """One daily event per time of day; `phase_s` delays each (a nurse's round is not to the second)."""
        return tuple((hour * 3600.0 + phase_s - day_offset_s, DAY_S) for hour in self.hours)

    @property
    def cycle_s(self) -> float:
        """Phases spread over ten minutes: rounds are roughly, not exactly, on time."""
        return 600.0

    def due_times(self, t0_s: float, t1_s: float, *, phase_s: float = 0.0,
                  day_offset_s: float = 0.0) -> tuple[float, ...]:
        """Due times in (t0_s, t1_s], in simulation seconds."""
        return _due_times(self.events(phase_s, day_offset_s), t0_s, t1_s)

    def count_due(self, t0_s: float, t1_s: float, *, phase_s: float = 0.0, day_offset_s: float = 0.0) -> int:
        """How many measurements fall in (t0_s, t1_s]."""
        return _count_due(self.events(phase_s, day_offset_s), t0_s, t1_s)


Schedule = Every | DailyAt


def count_periodic(t0_s: float, t1_s: float, phases_s: FloatArray, periods_s: FloatArray | float) -> FloatArray:
    """How many times phase + k * period fall in (t0_s, t1_s], for many events at once."""
    counts: FloatArray = np.floor((t1_s - phases_s) / periods_s) - np.floor((t0_s - phases_s) / periods_s)
    return np.maximum(counts, 0.0)


def _count_due(events: tuple[Event, ...], t0_s: float, t1_s: float) -> int:
    return sum(max(0, math.floor((t1_s - ph) / p) - math.floor((t0_s - ph) / p)) for ph, p in events)


def _due_times(events: tuple[Event, ...], t0_s: float, t1_s: float) -> tuple[float, ...]:
    times = [ph + k * p for ph, p in events
             for k in range(math.floor((t0_s - ph) / p) + 1, math.floor((t1_s - ph) / p) + 1)]
    return tuple(sorted(times))


def device_phase(patient_id: str, device: str, schedule: Schedule) -> float:
    """A stable phase in [0, cycle) for one patient's device (same on every run and every machine)."""
    if isinstance(schedule, Every) and schedule.period_s <= 1.0:
        return 0.0  # continuous streams tick on the second
    digest = zlib.crc32(f"{patient_id}\x00{device}".encode())
    return float(digest % int(schedule.cycle_s))
