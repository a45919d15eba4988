"""Helpers shared by the alarm engine tests (no tests here): a fixed clock and compact views of changes."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from proto.alerting import AlarmChange, AlarmEngine
from proto.quality import Quality
from proto.vitals import VitalsBatch, to_micros
from proto.vocabulary import kind

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    """Event time `seconds` after T0."""
    return T0 + dt.timedelta(seconds=seconds)


def secs(when: dt.datetime) -> float:
    return (when - T0).total_seconds()


def hold(engine: AlarmEngine, patient: str, kind: str, value: float, start: float, seconds: float, *,
         step: float = 1.0, quality: int = Quality.NONE, device: str = "dev-1") -> list[AlarmChange]:
    """Feed `value` at 1/step Hz from `start` for `seconds` (samples at start, start+step, ... < start+seconds)."""
    changes: list[AlarmChange] = []
    count = round(seconds / step)
    for i in range(count):
        changes += engine.observe(patient, kind, value, at(start + i * step), quality, device)
    return changes


def brief(changes: Iterable[AlarmChange]) -> list[tuple[str, str, str, float]]:
    """(change, rule, priority, seconds after T0) for each change."""
    return [(c.change, c.alert.rule, c.alert.priority, secs(c.alert.raised_at)) for c in changes]


def clinical(changes: Iterable[AlarmChange]) -> list[AlarmChange]:
    return [c for c in changes if c.alert.category == "clinical"]


def only(changes: Iterable[AlarmChange], rule: str) -> list[AlarmChange]:
    return [c for c in changes if c.alert.rule == rule]


# --- a simulated ward, as columnar batches ----------------------------------------------------------------


@dataclass(frozen=True)
class WardPlan:
    """Who is on the ward and what happens to them."""

    patients: int
    seconds: int
    seed: int = 1
    deteriorating: tuple[int, ...] = ()  # patient numbers that slide into sepsis-like physiology
    artefact_rate: float = 0.002  # chance per second that a motion episode starts on a patient's oximeter


def _ar1(rng: np.random.Generator, n: int, sd: float, tau_s: float) -> npt.NDArray[np.float64]:
    """Slowly wandering physiology: an AR(1) process with stationary SD `sd` and time constant `tau_s`."""
    phi = np.exp(-1.0 / tau_s)
    shocks = rng.normal(0.0, sd * np.sqrt(1 - phi * phi), n)
    out = np.empty(n)
    level = rng.normal(0.0, sd)
    for i in range(n):  # n is at most a day of seconds: fine for test data
        level = phi * level + shocks[i]
        out[i] = level
    return out


def ward_columns(plan: WardPlan) -> dict[str, Any]:
    """All samples of the ward, time-sorted, as VitalsBatch columns (1 Hz HR/SpO2/RR, cuff BP every 15 min,
    temperature hourly, ACVPU and air/oxygen charted every 4 h)."""
    rng = np.random.default_rng(plan.seed)
    base_us = to_micros(T0)
    cols: dict[str, list[npt.NDArray[Any]]] = {k: [] for k in ("t", "p", "d", "k", "v", "q")}
    devices = ["", *(f"{dev_kind}-{p:03d}" for p in range(plan.patients)
                        for dev_kind in ("ox", "patch", "cuff", "thermo"))]

    def emit(p: int, dev: str, kind_name: str, t: npt.NDArray[np.int64], v: npt.NDArray[np.float64],
             q: npt.NDArray[np.uint16] | None = None) -> None:
        n = t.shape[0]
        cols["t"].append(base_us + t * 1_000_000)
        cols["p"].append(np.full(n, p, dtype=np.uint16))
        cols["d"].append(np.full(n, devices.index(dev), dtype=np.uint16))
        cols["k"].append(np.full(n, kind(kind_name).wire_id, dtype=np.uint8))
        cols["v"].append(v.astype(np.float64))
        cols["q"].append(np.zeros(n, dtype=np.uint16) if q is None else q)

    secs = np.arange(plan.seconds, dtype=np.int64)
    for p in range(plan.patients):
        worse = np.zeros(plan.seconds)
        if p in plan.deteriorating:  # from a third of the way in, a steady slide over 20 minutes
            onset = plan.seconds // 3
            worse = np.clip((secs - onset) / 1200.0, 0.0, 1.0)
        hr = 75 + _ar1(rng, plan.seconds, 4.0, 600.0) + rng.normal(0, 2.5, plan.seconds) + 55 * worse
        spo2 = np.round(np.clip(97.3 + rng.normal(0, 0.8, plan.seconds) - 10 * worse, 50, 100)).astype(np.float64)
        rr = np.round(16 + _ar1(rng, plan.seconds, 1.0, 300.0) + rng.normal(0, 1.2, plan.seconds) + 12 * worse)
        q = np.zeros(plan.seconds, dtype=np.uint16)
        starts = np.flatnonzero(rng.random(plan.seconds) < plan.artefact_rate)
        for s in starts:  # motion: 10-40 s of flagged, meaningless readings on the oximeter
            end = min(plan.seconds, int(s) + int(rng.integers(10, 40)))
            q[s:end] = int(Quality.MOTION)
            spo2[s:end] = rng.integers(70, 90, end - s)
        emit(p, f"ox-{p:03d}", "spo2", secs, spo2, q)
        emit(p, f"ox-{p:03d}", "heart_rate", secs, np.round(hr), q.copy())
        emit(p, f"patch-{p:03d}", "respiratory_rate", secs, rr)
        cuff = secs[(secs % 900) == 450]
        sbp = np.round(125 + rng.normal(0, 6, cuff.shape[0]) - 45 * worse[cuff])
        emit(p, f"cuff-{p:03d}", "systolic_bp", cuff, sbp)
        thermo = secs[(secs % 3600) == 1800]
        temperature = np.round(36.8 + rng.normal(0, 0.2, thermo.shape[0]) + 2.6 * worse[thermo], 1)
        emit(p, f"thermo-{p:03d}", "body_temperature", thermo, temperature.astype(np.float64))
        chart = secs[(secs % 14_400) == 60]
        manual = np.full(chart.shape[0], int(Quality.MANUAL_ENTRY), dtype=np.uint16)
        emit(p, "", "consciousness", chart, np.zeros(chart.shape[0]), manual)
        emit(p, "", "on_oxygen", chart, np.zeros(chart.shape[0]), manual.copy())

    order = np.argsort(np.concatenate(cols["t"]), kind="stable")
    out: dict[str, Any] = {name: np.concatenate(parts)[order] for name, parts in cols.items()}
    out["patients"] = tuple(f"pt-{p:03d}" for p in range(plan.patients))
    out["devices"] = tuple(devices)
    return out


def ward_batches(plan: WardPlan, batch_seconds: int) -> Iterator[VitalsBatch]:
    """The ward's samples cut into batches of `batch_seconds` of event time."""
    cols = ward_columns(plan)
    t = cols["t"]
    edges = np.searchsorted(t, to_micros(T0) + np.arange(0, plan.seconds + batch_seconds, batch_seconds) * 1_000_000)
    for a, b in itertools.pairwise(edges.tolist()):
        if b > a:
            yield VitalsBatch(patients=cols["patients"], devices=cols["devices"], time_us=t[a:b].copy(),
                              patient_idx=cols["p"][a:b].copy(), device_idx=cols["d"][a:b].copy(),
                              kind_id=cols["k"][a:b].copy(), value=cols["v"][a:b].copy(),
                              quality=cols["q"][a:b].copy())
