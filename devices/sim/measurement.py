"""What the worn devices report: true physiology seen through device accuracy, artefacts and batteries.

A DeviceArray holds every worn device of a cohort, one row each (rows of one type are contiguous),
and turns the true values of a step into readings with a fixed number of numpy operations whatever
the mix of device types: per-type parameters (sensors.SENSORS) are laid out as padded per-row tables.
Random numbers are drawn for every device on every step whether or not it is disturbed, so the
stream never depends on artefact state.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

import numpy as np
import numpy.typing as npt

from devices.sim.artefacts import ArtefactProfile, Episodes, probe_modulation
from devices.sim.dynamics import KIND_TO_VITAL, VITAL_INDEX
from devices.sim.schedule import count_periodic, device_phase
from devices.sim.sensors import (
    ARTEFACT_NAMES,
    ARTEFACT_QUALITY,
    BATTERY_DEPLETED,
    DROPOUT,
    LOW_PERFUSION,
    MOTION,
    SENSOR_OFF,
    SENSORS,
    SILENCING,
)
from devices.sim.state import DeviceReading
from proto.quality import Quality

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class DeviceBatch:
    """One device type's readings after a step, one row per worn device (what emitters read at 1 Hz).

    `patients` are cohort rows (Cohort.patient_ids[p]; R-R intervals via Cohort.rr_intervals(p)).
    `values[:, j]` is kind `kinds[j]` in canonical units, NaN where the device reports nothing
    (sensor off, dropout, flat battery). `quality` holds proto.quality.Quality bits; `artefacts` maps
    each artefact this device type is prone to onto a row mask; `due` marks devices whose schedule
    had a measurement in the step.
    """

    device: str
    patients: IntArray
    kinds: tuple[str, ...]
    values: FloatArray
    quality: IntArray
    artefacts: Mapping[str, BoolArray]
    battery: FloatArray
    due: BoolArray

    @property
    def delivered(self) -> BoolArray:
        """Rows whose device sends anything at all (not in a radio dropout, battery not flat)."""
        silent = np.zeros(self.patients.shape[0], dtype=bool)
        for name in (DROPOUT, BATTERY_DEPLETED):
            if name in self.artefacts:
                silent |= self.artefacts[name]
        return ~silent


def _device_rng(seed: int, patient_id: str, device: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(patient_id.encode()), zlib.crc32(device.encode()), 0xDE])


_ART = {name: i for i, name in enumerate(ARTEFACT_NAMES)}
_ART_BITS = np.array([int(ARTEFACT_QUALITY.get(name, Quality.NONE)) for name in ARTEFACT_NAMES], dtype=np.int64)
_SILENCING = np.array([name in SILENCING for name in ARTEFACT_NAMES])
_MAX_ACC = max(len(s.accuracy) for s in SENSORS.values())
_MAX_KINDS = max(len(s.kinds) for s in SENSORS.values())
_MAX_DIST = max(len(s.distortions) for s in SENSORS.values())


class DeviceArray:
    """Every worn device of a cohort: static per-row tables plus the state that evolves (episodes, batteries)."""

    def __init__(
        self, devices: Sequence[Sequence[str]], patient_ids: Sequence[str], *, seed: int, profile: ArtefactProfile,
        day_offset_s: float,
    ) -> None:
        self.profile = profile
        rows: list[tuple[str, int]] = [
            (name, p) for name in SENSORS for p, worn in enumerate(devices) if name in worn
        ]
        c = len(rows)
        self.size = c
        self.patient = np.array([p for _, p in rows], dtype=np.int64)
        self.slices: dict[str, slice] = {}
        self.row_of: dict[tuple[str, int], int] = {}
        for r, (name, p) in enumerate(rows):
            first = self.slices[name].start if name in self.slices else r
            self.slices[name] = slice(first, r + 1)
            self.row_of[(name, p)] = r - first

        # Accuracy columns (padded to _MAX_ACC) and where each lands among the type's kinds; padding
        # columns land in a scratch column _MAX_KINDS that is dropped.
        self._src = np.zeros((c, _MAX_ACC), dtype=np.int64)
        self._bias = np.zeros((c, _MAX_ACC))
        self._noise = np.zeros((c, _MAX_ACC))
        self._relative = np.zeros((c, _MAX_ACC), dtype=bool)
        self._low = np.full((c, _MAX_ACC), -np.inf)
        self._high = np.full((c, _MAX_ACC), np.inf)
        self._resolution = np.ones((c, _MAX_ACC))
        self._from_beats = np.zeros((c, _MAX_ACC), dtype=bool)
        self._out = np.full((c, _MAX_ACC), _MAX_KINDS, dtype=np.int64)
        self._dist_art = np.zeros((c, _MAX_DIST), dtype=np.int64)
        self._dist_valid = np.zeros((c, _MAX_DIST), dtype=bool)
        self._dist_shift = np.zeros((c, _MAX_DIST))
        self._dist_spread = np.zeros((c, _MAX_DIST))
        self._dist_one_sided = np.zeros((c, _MAX_DIST), dtype=bool)
        self._dist_col = np.zeros((c, _MAX_DIST), dtype=np.int64)
        self._prone = np.zeros((c, len(ARTEFACT_NAMES)), dtype=bool)
        self._irregular = np.zeros(c, dtype=bool)
        self.battery: FloatArray = np.empty(c)
        self._drain_per_s = np.empty(c)
        self._flat_for: FloatArray = np.zeros(c)
        self.phases: FloatArray = np.empty(c)
        for r, (name, p) in enumerate(rows):
            spec = SENSORS[name]
            rng = _device_rng(seed, patient_ids[p], name)
            kind_col = {k: j for j, k in enumerate(spec.kinds)}
            acc_col = {a.kind: j for j, a in enumerate(spec.accuracy)}
            for j, acc in enumerate(spec.accuracy):
                self._src[r, j] = VITAL_INDEX[KIND_TO_VITAL[acc.kind]]
                self._bias[r, j] = rng.normal(0.0, acc.bias_sd)
                self._noise[r, j] = acc.noise_sd
                self._relative[r, j] = acc.relative
                self._low[r, j], self._high[r, j] = acc.low, acc.high
                self._resolution[r, j] = acc.resolution
                self._from_beats[r, j] = spec.rate_from_beats and acc.kind == "heart_rate"
                self._out[r, j] = kind_col[acc.kind]
            for k, d in enumerate(spec.distortions):
                self._dist_art[r, k] = _ART[d.artefact]
                self._dist_valid[r, k] = True
                self._dist_shift[r, k], self._dist_spread[r, k] = d.shift, d.spread
                self._dist_one_sided[r, k] = d.one_sided
                self._dist_col[r, k] = acc_col[d.kind]
            for artefact in spec.artefacts:
                self._prone[r, _ART[artefact]] = True
            self._irregular[r] = spec.flags_irregular_pulse
            self.battery[r] = rng.uniform(*profile.battery_start)
            # Linear drain to empty in battery_hours; cells and firmware differ by +/-15 %.
            self._drain_per_s[r] = 100.0 / (spec.battery_hours * 3600.0) * rng.uniform(0.85, 1.15)
            self.phases[r] = device_phase(patient_ids[p], name, spec.schedule)
        self._mean_bp = [
            (self.slices[name], s.kinds.index("mean_bp"), s.kinds.index("systolic_bp"), s.kinds.index("diastolic_bp"))
            for name, s in SENSORS.items() if name in self.slices and "mean_bp" in s.kinds
        ]
        # Every device's schedule as periodic events (a daily schedule is one daily event per time of day).
        events = [(r, phase, period) for r, (name, _) in enumerate(rows)
                  for phase, period in SENSORS[name].schedule.events(float(self.phases[r]), day_offset_s)]
        self._event_row = np.array([e[0] for e in events], dtype=np.int64)
        self._event_phase = np.array([e[1] for e in events], dtype=np.float64)
        self._event_period = np.array([e[2] for e in events], dtype=np.float64)
        self._sensor_off = Episodes(c, profile.sensor_off)
        self._dropout = Episodes(c, profile.dropout)
        self._rows = np.arange(c)

        self.values: FloatArray = np.full((c, _MAX_KINDS), np.nan)
        self.quality: IntArray = np.zeros(c, dtype=np.int64)
        self.active: npt.NDArray[np.bool_] = np.zeros((c, len(ARTEFACT_NAMES)), dtype=bool)
        self.due: BoolArray = np.zeros(c, dtype=bool)
        self._batches: dict[str, DeviceBatch] = {}
        self._readings: dict[str, list[DeviceReading]] = {}

    # ---- evolution -------------------------------------------------------------------------------

    def step(
        self, dt: float, true: FloatArray, beat_rate: FloatArray, motion: BoolArray, low_perfusion: BoolArray,
        af: BoolArray, activity: float, rng: np.random.Generator,
    ) -> None:
        """Readings at the end of a step of `dt` seconds from the cohort's true matrix (patients x vitals)."""
        self._invalidate()
        if self.profile.battery_drain:
            self._drain(dt)
        patient = self.patient
        self._sensor_off.step(dt, rng, self._prone[:, _ART[SENSOR_OFF]] * probe_modulation(activity))
        self._dropout.step(dt, rng, self._prone[:, _ART[DROPOUT]] * 1.0)
        active = np.empty_like(self.active)
        active[:, _ART[MOTION]] = motion[patient]
        active[:, _ART[LOW_PERFUSION]] = low_perfusion[patient]
        active[:, _ART[SENSOR_OFF]] = self._sensor_off.active
        active[:, _ART[DROPOUT]] = self._dropout.active
        active[:, _ART[BATTERY_DEPLETED]] = self.battery <= 0.0
        active &= self._prone

        source = np.where(self._from_beats, beat_rate[patient][:, None], true[patient[:, None], self._src])
        error = self._bias + self._noise * rng.standard_normal(source.shape)
        measured = source + error * np.where(self._relative, source, 1.0)
        z = rng.standard_normal(self._dist_art.shape)
        z = np.where(self._dist_one_sided, np.abs(z), z)
        hit = active[self._rows[:, None], self._dist_art] & self._dist_valid
        shift = np.where(hit, self._dist_shift + self._dist_spread * z, 0.0)
        for k in range(shift.shape[1]):
            measured[self._rows, self._dist_col[:, k]] += shift[:, k]
        measured = _quantise(np.clip(measured, self._low, self._high), self._resolution)
        values = np.full((self.size, _MAX_KINDS + 1), np.nan)
        values[self._rows[:, None], self._out] = measured
        values = values[:, :_MAX_KINDS]
        for rows, mean, systolic, diastolic in self._mean_bp:
            # The cuff's MAP from its own SBP/DBP (the one-third pulse-pressure rule), in whole mm[Hg].
            sbp, dbp = values[rows, systolic], values[rows, diastolic]
            values[rows, mean] = np.round(dbp + (sbp - dbp) / 3.0)

        quality = np.bitwise_or.reduce(np.where(active, _ART_BITS, 0), axis=1)
        quality |= np.where(self._irregular & af[patient], int(Quality.IRREGULAR_PULSE), 0)
        values[(active & _SILENCING).any(axis=1)] = np.nan
        self.values, self.quality, self.active = values, quality, active

    def _drain(self, dt: float) -> None:
        np.maximum(self.battery - dt * self._drain_per_s, 0.0, out=self.battery)
        flat = self.battery <= 0.0
        self._flat_for = np.where(flat, self._flat_for + dt, 0.0)
        swap_after = self.profile.battery_swap_s
        if swap_after is not None:
            swapped = self._flat_for >= swap_after
            self.battery[swapped] = 100.0
            self._flat_for[swapped] = 0.0

    def mark_due(self, t0_s: float, t1_s: float) -> None:
        """Record which devices had a scheduled measurement in (t0_s, t1_s]."""
        counts = count_periodic(t0_s, t1_s, self._event_phase, self._event_period)
        self.due = np.bincount(self._event_row, weights=counts, minlength=self.size) > 0
        self._invalidate()

    def replace_battery(self, device: str, patient: int) -> None:
        """A fresh battery in one device."""
        r = self.slices[device].start + self.row_of[(device, patient)]
        self.battery[r] = 100.0
        self._flat_for[r] = 0.0
        self._invalidate()

    def _invalidate(self) -> None:
        self._batches.clear()
        self._readings.clear()

    # ---- views -----------------------------------------------------------------------------------

    def batch(self, device: str) -> DeviceBatch:
        """One device type's readings after the last step, as arrays (copies: callers may keep them)."""
        cached = self._batches.get(device)
        if cached is None:
            rows, spec = self.slices[device], SENSORS[device]
            cached = self._batches[device] = DeviceBatch(
                device=device, patients=self.patient[rows], kinds=spec.kinds,
                values=self.values[rows, : len(spec.kinds)].copy(), quality=self.quality[rows].copy(),
                artefacts=MappingProxyType({
                    name: self.active[rows, _ART[name]].copy() for name in ARTEFACT_NAMES if name in spec.artefacts
                }),
                battery=self.battery[rows].copy(), due=self.due[rows].copy(),
            )
        return cached

    def reading(self, device: str, patient: int) -> DeviceReading:
        """One device's reading; a type's rows are converted to Python values at once, once per step."""
        rows = self._readings.get(device)
        if rows is None:
            rows = self._readings[device] = self._convert(device)
        return rows[self.row_of[(device, patient)]]

    def _convert(self, device: str) -> list[DeviceReading]:
        b = self.batch(device)
        values = b.values.tolist()
        quality = [_quality(q) for q in b.quality.tolist()]
        battery, due = b.battery.tolist(), b.due.tolist()
        names = list(b.artefacts)
        masks = [cast(list[bool], b.artefacts[name].tolist()) for name in names]
        flagged = cast(list[bool], self.active[self.slices[device]].any(axis=1).tolist())
        return [
            DeviceReading(
                device=device,
                values=MappingProxyType({k: v for k, v in zip(b.kinds, values[r], strict=True) if v == v}),
                quality=quality[r],
                artefacts=(frozenset(n for n, mask in zip(names, masks, strict=True) if mask[r])
                           if flagged[r] else _NO_ARTEFACTS),
                battery=battery[r], due=due[r],
            )
            for r in range(len(values))
        ]


_NO_ARTEFACTS: frozenset[str] = frozenset()
_QUALITIES: dict[int, Quality] = {}


def _quality(bits: int) -> Quality:
    # Building an IntFlag from an int is slow; a ward sees only a handful of distinct combinations.
    cached = _QUALITIES.get(bits)
    if cached is None:
        cached = _QUALITIES[bits] = Quality(bits)
    return cached


def _quantise(values: FloatArray, resolution: FloatArray) -> FloatArray:
    # Round to the display resolution, then to 6 places so 0.1 steps print as 36.9, not 36.900000000000006.
    return np.round(np.round(values / resolution) * resolution, 6)
