"""The physiological patient model: a cohort of simulated patients advanced together in simulated time.

Per patient and vital, value = drive + (fast OU + slow OU + circadian) [+ couplings], where drive =
baseline + the scenario's courses (+ meals for glucose). Couplings (dynamics.COUPLINGS) make fever raise
the heart and breathing rates and hypoxaemia drive both, so scenarios only script the primary change.
Beats, artefact episodes and device readings follow from the true values of each step.

Time only moves through `advance(dt_s)` / `advance_to(when)`; nothing reads the wall clock, so a day can
be simulated in seconds. The same patients, seed and sequence of advances give identical results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from devices.sim import dynamics as dyn
from devices.sim.artefacts import ArtefactProfile, Episodes, motion_modulation, perfusion_modulation
from devices.sim.errors import CohortError, SimulationTimeError, UnknownDeviceError, UnknownPatientError
from devices.sim.measurement import DeviceArray, DeviceBatch
from devices.sim.rhythm import BeatClock
from devices.sim.scenarios import RHYTHMS, Scenario, scenario
from devices.sim.sensors import DEFAULT_DEVICES, PULSE_OXIMETER, SENSORS
from devices.sim.state import DeviceReading, PhysiologicalState
from devices.sim.trajectory import (
    CourseTable,
    consciousness_table,
    oxygen_table,
    patient_rng,
    realise,
    rhythm_table,
)
from proto.vocabulary import CONSCIOUSNESS_CODES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# The AF ventricular rate is labile: its minute-to-minute fluctuation is about twice that of sinus rhythm.
AF_RATE_NOISE = 2.0
AF_CODE = RHYTHMS.index("af")


@dataclass(frozen=True, slots=True)
class PatientSpec:
    """One simulated patient: an id (never a name), a scenario, and the device types they wear."""

    patient_id: str
    scenario: Scenario | str
    devices: tuple[str, ...] = DEFAULT_DEVICES


class Cohort:
    """Many patients stepped together with numpy; PatientSimulator and the ward read views of it.

    Circadian rhythms and meal times follow the wall clock of `start` as given (pass it in the ward's
    local zone, e.g. Asia/Shanghai). Steps longer than `max_step_s` are split into equal sub-steps.
    """

    def __init__(
        self, patients: Sequence[PatientSpec], *, seed: int, start: datetime,
        artefacts: ArtefactProfile | None = None, max_step_s: float = 60.0,
    ) -> None:
        if not max_step_s > 0:
            raise CohortError(f"max_step_s must be positive, got {max_step_s!r}")
        ids = [p.patient_id for p in patients]
        if len(set(ids)) != len(ids):
            raise CohortError("patient ids must be unique within a cohort")
        for spec in patients:
            for device in spec.devices:
                if device not in SENSORS:
                    raise UnknownDeviceError(f"unknown device type {device!r} (one of {', '.join(SENSORS)})")
        self.start = start
        self.seed = seed
        self.max_step_s = max_step_s
        self.profile = artefacts if artefacts is not None else ArtefactProfile()
        self.patient_ids: tuple[str, ...] = tuple(ids)
        self.scenarios: tuple[Scenario, ...] = tuple(
            p.scenario if isinstance(p.scenario, Scenario) else scenario(p.scenario) for p in patients
        )
        self.devices: tuple[tuple[str, ...], ...] = tuple(tuple(dict.fromkeys(p.devices)) for p in patients)
        self._index = {pid: i for i, pid in enumerate(ids)}
        n = len(ids)
        self.size = n
        self.elapsed_s = 0.0
        self._window_start_s = 0.0
        self._day_offset_s = float(start.hour * 3600 + start.minute * 60 + start.second
                                   + start.microsecond / 1e6)

        plans = [realise(s, patient_rng(seed, pid)) for s, pid in zip(self.scenarios, ids, strict=True)]
        self._baseline = np.array([p.baseline for p in plans]).reshape(n, len(dyn.VITALS))
        self._meal_amplitude = np.array([p.meal_amplitude for p in plans])
        self._fast = np.array([p.initial_fast for p in plans]).reshape(n, len(dyn.VITALS))
        self._slow = np.array([p.initial_slow for p in plans]).reshape(n, len(dyn.VITALS))
        self._courses = CourseTable(n, self.scenarios, plans)
        self._consciousness_steps = consciousness_table(n, self.scenarios, plans)
        self._oxygen_steps = oxygen_table(n, self.scenarios, plans)
        self._rhythm_steps = rhythm_table(n, self.scenarios, plans)
        self._motion_factor = np.array([s.motion_factor for s in self.scenarios])
        self._rng = np.random.default_rng([seed, 0xC0A7])

        self._devices = DeviceArray(self.devices, ids, seed=seed, profile=self.profile,
                                    day_offset_s=self._day_offset_s)
        self._has_oximeter = np.array([PULSE_OXIMETER in ds for ds in self.devices], dtype=bool)
        self._motion = Episodes(n, self.profile.motion)
        self._perfusion = Episodes(n, self.profile.low_perfusion)
        self._ou_cache: dict[float, tuple[FloatArray, FloatArray, FloatArray, FloatArray]] = {}
        self._states: dict[int, PhysiologicalState] = {}
        self._now_cache: tuple[float, datetime] | None = None

        self._compute_state(0.0)
        self._beats = BeatClock(self._values[:, dyn.HR], np.array([p.rsa_amplitude for p in plans]),
                                np.random.default_rng([seed, 0xBEA7]))
        self._intervals: list[tuple[FloatArray, IntArray]] = []
        self._beat_rate = self._values[:, dyn.HR].copy()
        self._update_devices(0.0)
        self._devices.mark_due(-1e-9, 0.0)

    # ---- time ------------------------------------------------------------------------------------

    @property
    def time(self) -> datetime:
        """The current simulated time."""
        return self.start + timedelta(seconds=self.elapsed_s)

    def _now(self) -> datetime:
        if self._now_cache is None or self._now_cache[0] != self.elapsed_s:
            self._now_cache = (self.elapsed_s, self.time)
        return self._now_cache[1]

    def advance(self, dt_s: float) -> None:
        """Move simulated time forward by `dt_s` seconds (0 is a no-op)."""
        if not math.isfinite(dt_s) or dt_s < 0:
            raise SimulationTimeError(f"can only advance by a finite, non-negative time, got {dt_s!r}")
        if dt_s == 0:
            return
        steps = max(1, math.ceil(dt_s / self.max_step_s - 1e-9))
        sub = dt_s / steps
        self._window_start_s = self.elapsed_s
        self._intervals = []
        self._states.clear()
        for i in range(steps):
            t0 = self.elapsed_s
            t1 = self._window_start_s + dt_s if i == steps - 1 else t0 + sub
            self._step(t0, t1)
            self.elapsed_s = t1
        self._devices.mark_due(self._window_start_s, self.elapsed_s)

    def advance_to(self, when: datetime) -> None:
        """Move simulated time forward to `when` (not before the current time)."""
        target = (when - self.start).total_seconds()
        if target < self.elapsed_s - 1e-9:
            raise SimulationTimeError(f"cannot go back in time from {self.time.isoformat()} to {when.isoformat()}")
        self.advance(max(0.0, target - self.elapsed_s))

    # ---- model -----------------------------------------------------------------------------------

    def _ou(self, dt: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        cached = self._ou_cache.get(dt)
        if cached is None:
            fast = dyn.ou_coefficients(dt, dyn.FAST_TAU, dyn.FAST_SD)
            slow = dyn.ou_coefficients(dt, dyn.SLOW_TAU, dyn.SLOW_SD)
            cached = (*fast, *slow)
            if len(self._ou_cache) < 16:
                self._ou_cache[dt] = cached
        return cached

    def _step(self, t0: float, t1: float) -> None:
        dt = t1 - t0
        rng = self._rng
        fast_decay, fast_innov, slow_decay, slow_innov = self._ou(dt)
        af = self._rhythm == AF_CODE
        z = rng.standard_normal((self.size, len(dyn.VITALS))) @ dyn.FAST_CHOLESKY.T
        z[:, dyn.HR] *= np.where(af, AF_RATE_NOISE, 1.0)
        self._fast = self._fast * fast_decay + fast_innov * z
        self._slow = self._slow * slow_decay + slow_innov * rng.standard_normal((self.size, len(dyn.VITALS)))
        self._compute_state(t1)

        intervals, counts = self._beats.advance(t0, t1, self._values[:, dyn.HR], self._rhythm == AF_CODE,
                                                self._values[:, dyn.RR], rng)
        self._intervals.append((intervals, counts))
        self._beat_rate = self._beats.rate()
        self._update_devices(dt)

    def _compute_state(self, t: float) -> None:
        seconds_of_day = (self._day_offset_s + t) % 86400.0
        drive = self._baseline + self._courses.at(t)
        drive[:, dyn.GLU] += dyn.MEALS.excursion(seconds_of_day, self._meal_amplitude)
        scale = np.where(dyn.RELATIVE, np.clip((drive / dyn.NOMINAL) ** 2, 0.2, 1.0), 1.0)
        fluctuation = dyn.EXCURSION * np.tanh((self._fast + self._slow) / dyn.EXCURSION)
        values = drive + (fluctuation + dyn.circadian(seconds_of_day)) * scale
        for c in _COUPLINGS:
            excess = values[:, c[0]] - c[2] if c[4] else c[2] - values[:, c[0]]
            values[:, c[1]] += c[3] * np.maximum(excess, 0.0)
        np.clip(values, dyn.LOW, dyn.HIGH, out=values)
        np.minimum(values[:, dyn.DBP], values[:, dyn.SBP] - dyn.MIN_PULSE_PRESSURE, out=values[:, dyn.DBP])
        self._values = values
        self._mean_bp = values[:, dyn.DBP] + (values[:, dyn.SBP] - values[:, dyn.DBP]) / 3.0
        self._consciousness = self._consciousness_steps.at(t)
        self._oxygen = self._oxygen_steps.at(t)
        self._rhythm = self._rhythm_steps.at(t)
        self._activity = dyn.activity(seconds_of_day)

    def _update_devices(self, dt: float) -> None:
        rng = self._rng
        if dt > 0:
            self._motion.step(dt, rng, motion_modulation(self._activity, self._motion_factor,
                                                         self._consciousness > 0))
            self._perfusion.step(dt, rng, perfusion_modulation(self._mean_bp, self._values[:, dyn.TEMP]))
        self._devices.step(dt, self._values, self._beat_rate, self._motion.active,
                           self._perfusion.active & self._has_oximeter, self._rhythm == AF_CODE, self._activity, rng)

    # ---- views -----------------------------------------------------------------------------------

    def index_of(self, patient: str | int) -> int:
        """The row of a patient id (or a checked row number)."""
        if isinstance(patient, int):
            if not 0 <= patient < self.size:
                raise UnknownPatientError(f"no patient at index {patient}")
            return patient
        try:
            return self._index[patient]
        except KeyError:
            raise UnknownPatientError(f"unknown patient {patient!r}") from None

    def true_values(self) -> Mapping[str, FloatArray]:
        """The true vitals of every patient now, by state field name (copies)."""
        out = {name: self._values[:, i].copy() for i, name in enumerate(dyn.VITALS)}
        out["mean_bp"] = self._mean_bp.copy()
        return MappingProxyType(out)

    def batch(self, device: str) -> DeviceBatch:
        """Every worn device of one type: its readings after the last advance, as arrays."""
        if device not in self._devices.slices:
            raise UnknownDeviceError(f"no patient wears a {device!r}")
        return self._devices.batch(device)

    def rr_intervals(self, patient: str | int) -> tuple[float, ...]:
        """The patient's beat-to-beat intervals (s) that ended during the last advance."""
        i = self.index_of(patient)
        if len(self._intervals) == 1:
            intervals, counts = self._intervals[0]
            return tuple(intervals[i, : counts[i]].tolist())
        return tuple(x for intervals, counts in self._intervals for x in intervals[i, : counts[i]].tolist())

    def due_times(self, patient: str | int, device: str) -> tuple[datetime, ...]:
        """When the patient's device had measurements scheduled during the last advance."""
        i = self._wearer(patient, device)
        row = self._devices.slices[device].start + self._devices.row_of[(device, i)]
        times = SENSORS[device].schedule.due_times(self._window_start_s, self.elapsed_s,
                                                   phase_s=float(self._devices.phases[row]),
                                                   day_offset_s=self._day_offset_s)
        return tuple(self.start + timedelta(seconds=t) for t in times)

    def replace_battery(self, patient: str | int, device: str) -> None:
        """A nurse puts a fresh battery in the patient's device."""
        i = self._wearer(patient, device)
        self._devices.replace_battery(device, i)
        self._states.clear()

    def _wearer(self, patient: str | int, device: str) -> int:
        i = self.index_of(patient)
        if device not in self.devices[i]:
            raise UnknownDeviceError(f"patient {self.patient_ids[i]!r} wears no {device!r}")
        return i

    def state(self, patient: str | int) -> PhysiologicalState:
        """One patient's state after the last advance (true vitals plus device readings)."""
        i = self.index_of(patient)
        cached = self._states.get(i)
        if cached is not None:
            return cached
        rr = self.rr_intervals(i)
        readings: dict[str, DeviceReading] = {}
        for device in self.devices[i]:
            r = self._devices.reading(device, i)
            if SENSORS[device].reports_rr_intervals and r.values:
                r = DeviceReading(device=device, values=r.values, quality=r.quality, artefacts=r.artefacts,
                                  battery=r.battery, due=r.due, rr_intervals_s=rr)
            readings[device] = r
        v = self._values[i].tolist()
        state = PhysiologicalState(
            patient_id=self.patient_ids[i], scenario=self.scenarios[i].name, time=self._now(),
            heart_rate=v[dyn.HR], spo2=v[dyn.SPO2], respiratory_rate=v[dyn.RR],
            systolic_bp=v[dyn.SBP], diastolic_bp=v[dyn.DBP], mean_bp=float(self._mean_bp[i]),
            temperature=v[dyn.TEMP], glucose=v[dyn.GLU],
            consciousness=CONSCIOUSNESS_CODES[int(self._consciousness[i])], on_oxygen=bool(self._oxygen[i]),
            rhythm=RHYTHMS[int(self._rhythm[i])], rr_intervals_s=rr,
            artefacts=_NO_ARTEFACTS.union(*(r.artefacts for r in readings.values())),
            battery=MappingProxyType({d: r.battery for d, r in readings.items()}),
            readings=MappingProxyType(readings),
        )
        self._states[i] = state
        return state

    def states(self) -> tuple[PhysiologicalState, ...]:
        """Every patient's state after the last advance."""
        return tuple(self.state(i) for i in range(self.size))


_NO_ARTEFACTS: frozenset[str] = frozenset()

# Couplings as (source column, target column, threshold, gain, above) for the inner loop.
_COUPLINGS: tuple[tuple[int, int, float, float, bool], ...] = tuple(
    (dyn.VITAL_INDEX[c.source], dyn.VITAL_INDEX[c.target], c.threshold, c.gain, c.above) for c in dyn.COUPLINGS
)


class PatientSimulator:
    """One simulated patient: a single-patient Cohort (the same patient id and seed give the same patient
    parameters in a cohort of any size)."""

    def __init__(
        self, patient_id: str, scenario: Scenario | str, seed: int, start: datetime, *,
        devices: tuple[str, ...] = DEFAULT_DEVICES, artefacts: ArtefactProfile | None = None,
        max_step_s: float = 60.0,
    ) -> None:
        self.cohort = Cohort([PatientSpec(patient_id, scenario, devices)], seed=seed, start=start,
                             artefacts=artefacts, max_step_s=max_step_s)
        self.patient_id = patient_id

    @property
    def state(self) -> PhysiologicalState:
        """The state after the last advance."""
        return self.cohort.state(0)

    def advance(self, dt_s: float) -> PhysiologicalState:
        """Move forward `dt_s` simulated seconds and return the new state."""
        self.cohort.advance(dt_s)
        return self.cohort.state(0)

    def state_at(self, when: datetime) -> PhysiologicalState:
        """Move forward to `when` and return the state there."""
        self.cohort.advance_to(when)
        return self.cohort.state(0)

    def series(self, duration_s: float, interval_s: float) -> list[PhysiologicalState]:
        """States every `interval_s` over the next `duration_s` seconds (for tests, plots and scoring)."""
        count = math.floor(duration_s / interval_s + 1e-9)
        return [self.advance(interval_s) for _ in range(count)]
