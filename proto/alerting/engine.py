"""AlarmEngine: the one clinical alarm evaluator, run by the edge on live vitals and by the cloud on ingest.

Pure: no I/O, no wall clock, no threads. Time is the samples' event time; `tick(now)` is an event-time
watermark ("no sample older than `now` is still to come") that lets timers mature when data stops.

Guarantees (tests/unit/proto/test_alerting_equivalence.py):
- observe() sample by sample and observe_batch() over any split of the same samples produce the same
  AlarmChanges in the same order, and ticking at watermarks between batches does not change them;
- the state round-trips through to_dict()/from_dict() (JSON-compatible) without changing what follows.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from proto.alerting.config import RuleConfig
from proto.alerting.defaults import default_config
from proto.alerting.errors import InvalidSampleError, RuleConfigError, StateFormatError
from proto.alerting.incident import AlarmChange
from proto.alerting.patient import PatientState
from proto.alerting.prefilter import ConfigArrays, apply_quiet, route
from proto.alerting.rules import CompiledConfig
from proto.alerting.streams import NONE, StreamTable
from proto.alerting.tracker import INF_US
from proto.alerting.trust import untrusted_flags
from proto.messages import OPAQUE_ID
from proto.quality import Quality
from proto.vitals import VitalsBatch, to_micros
from proto.vocabulary import UnknownKindError, kind

STATE_FORMAT = "telemed.alerting.state/1"
# observe_batch takes long batches about this much event time at a time (and never fewer samples).
CHUNK_US = 5_000_000
CHUNK_MIN = 64


@dataclass(slots=True)
class EngineStats:
    """Counters for metrics: samples seen, walked one by one, untrusted, and dropped as late."""

    samples: int = 0
    walked: int = 0
    untrusted: int = 0
    late: int = 0


def _micros(when: dt.datetime, what: str) -> int:
    try:
        return to_micros(when)
    except (ValueError, AttributeError, TypeError):
        raise InvalidSampleError(f"{what} must be a timezone-aware datetime, got {when!r}") from None


def _canonical(config: RuleConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def _change_order(change: AlarmChange) -> tuple[dt.datetime, str, str, str]:
    alert = change.alert
    return alert.raised_at, alert.patient_id, alert.rule, alert.device_id or ""


class AlarmEngine:
    """Alarm rules over a stream of vital-sign samples for many patients."""

    def __init__(self, config: RuleConfig | None = None) -> None:
        self._site = (config or default_config()).validate()
        self._compiled: list[CompiledConfig] = []
        self._config_ids: dict[str, int] = {}
        self._arrays: ConfigArrays | None = None
        self._table = StreamTable()
        self._slots: dict[str, int] = {}
        self._patients: list[PatientState | None] = []
        self._free: list[int] = []
        self._patient_configs: dict[str, RuleConfig] = {}
        self.stats = EngineStats()
        self._config_index(self._site)

    @property
    def config(self) -> RuleConfig:
        """The site configuration every patient without their own is evaluated with."""
        return self._site

    def patient_config(self, patient_id: str) -> RuleConfig:
        return self._patient_configs.get(patient_id, self._site)

    @property
    def patients(self) -> tuple[str, ...]:
        return tuple(self._slots)

    # --- configuration -------------------------------------------------------------------------------

    def configure_patient(self, patient_id: str, config: RuleConfig | None, *, at: dt.datetime) -> list[AlarmChange]:
        """Evaluate a patient with their own rules (None: back to the site's) from event time `at` on.

        Open incidents of rules whose definition changed are cleared at `at`; the new definition takes
        over from the next sample. Both sides must apply the same configuration at the same `at`.
        """
        at_us = _micros(at, "at")
        new = config.validate() if config is not None else self._site
        index = self._config_index(new)
        slot = self._slot_for(patient_id)
        state = self._state(slot)
        old = state.compiled
        compiled = self._compiled[index]
        old_specs, new_specs = old.rule_specs(), compiled.rule_specs()
        changed = {name for name in old_specs if old_specs[name] != new_specs.get(name)}
        changes = state.close_all(at_us, changed)
        for kind_id in set(old.bucket_us) | set(compiled.bucket_us):
            history = state.histories.pop(kind_id, None)
            if old.bucket_us.get(kind_id) != compiled.bucket_us.get(kind_id):
                self._table.acc_bucket[slot, kind_id] = NONE  # another bucket width: start the history afresh
                self._table.acc_sum[slot, kind_id] = 0.0
                self._table.acc_n[slot, kind_id] = 0
            elif history is not None:
                state.histories[kind_id] = deque(history, maxlen=compiled.history_len[kind_id])
        state.compiled = compiled
        state.news2_expiry_bound = -INF_US  # recency windows may have changed
        self._table.config[slot] = index
        self._table.busy[slot] = state.busy
        if config is None:
            self._patient_configs.pop(patient_id, None)
        else:
            self._patient_configs[patient_id] = new
        return changes

    def remove_patient(self, patient_id: str, *, at: dt.datetime) -> list[AlarmChange]:
        """Forget a patient (discharged, monitoring ended): open incidents are cleared at `at`."""
        at_us = _micros(at, "at")
        slot = self._slots.pop(patient_id, None)
        self._patient_configs.pop(patient_id, None)
        if slot is None:
            return []
        changes = self._state(slot).close_all(at_us)
        self._patients[slot] = None
        self._table.reset(slot)
        self._free.append(slot)
        return changes

    # --- samples and time ----------------------------------------------------------------------------

    def observe(self, patient_id: str, kind_name: str, value: float, time: dt.datetime,
                quality: int = Quality.NONE, device_id: str | None = None) -> list[AlarmChange]:
        """Evaluate one sample (value in the kind's canonical unit) and return what changed."""
        try:
            kind_id = kind(kind_name).wire_id
        except UnknownKindError as exc:
            raise InvalidSampleError(str(exc)) from None
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidSampleError(f"{kind_name} value must be a finite number, got {value!r}")
        t = _micros(time, "sample time")
        slot = self._slot_for(patient_id)
        self.stats.samples += 1
        return self._walk(slot, kind_id, float(value), t, int(quality), device_id or "")

    def observe_batch(self, batch: VitalsBatch) -> list[AlarmChange]:
        """Evaluate a (validated) columnar batch: the same result as observe() on each sample in order.

        Long batches (an edge's backlog after an outage) are taken a few seconds of event time at a time,
        so that a patient whose stream needs the per-sample walk somewhere in the batch is walked only
        for that stretch.
        """
        n = len(batch)
        if n == 0:
            return []
        lookup = np.fromiter((self._slot_for(p) for p in batch.patients), dtype=np.int64,
                             count=len(batch.patients))
        slot = lookup[batch.patient_idx]
        kind_ids = batch.kind_id.astype(np.intp)
        time, value, quality, device = batch.time_us, batch.value, batch.quality, batch.device_idx
        span = int(time.max()) - int(time.min())
        step = n if span <= CHUNK_US else max(CHUNK_MIN, n * CHUNK_US // span)
        self.stats.samples += n
        changes: list[AlarmChange] = []
        for a in range(0, n, step):
            b = a + step
            changes += self._observe_columns(slot[a:b], kind_ids[a:b], time[a:b], value[a:b], quality[a:b],
                                             device[a:b], batch.devices)
        return changes

    def _observe_columns(self, slot: npt.NDArray[np.int64], kind_ids: npt.NDArray[np.intp],
                         time: npt.NDArray[np.int64], value: npt.NDArray[np.float64],
                         quality: npt.NDArray[np.uint16], device: npt.NDArray[np.uint16],
                         devices: tuple[str, ...]) -> list[AlarmChange]:
        if self._arrays is None:
            self._arrays = ConfigArrays.stack(self._compiled)
        r = route(self._table, self._arrays, slot, kind_ids, time, value, quality)
        apply_quiet(self._table, r)
        changes: list[AlarmChange] = []
        walked = np.flatnonzero(r.walk)
        if walked.size:
            for s, k, v, t, q, d in zip(slot[walked].tolist(), kind_ids[walked].tolist(), value[walked].tolist(),
                                        time[walked].tolist(), quality[walked].tolist(), device[walked].tolist(),
                                        strict=True):
                changes += self._walk(s, k, v, t, q, devices[d])
        return changes

    def tick(self, now: dt.datetime) -> list[AlarmChange]:
        """Let time pass to `now` (an event-time watermark): timers mature, inputs expire, buckets close.

        Changes come back ordered by time, patient, rule and device, so every evaluator lists them alike.
        """
        now_us = _micros(now, "now")
        table = self._table
        used = len(self._patients)
        candidates = set(np.flatnonzero(table.busy[:used]).tolist())
        if self._arrays is None:
            self._arrays = ConfigArrays.stack(self._compiled)
        width = self._arrays.bucket_us[table.config[:used]]
        open_bucket = table.acc_bucket[:used]
        is_open = (open_bucket != NONE) & (width > 0)
        due = is_open & ((np.where(is_open, open_bucket, 0) + 1) * width <= now_us)
        candidates.update(np.flatnonzero(due.any(axis=1)).tolist())
        changes: list[AlarmChange] = []
        for slot in sorted(candidates):
            state = self._state(slot)
            changes += state.advance(table, now_us)
            table.busy[slot] = state.busy
        changes.sort(key=_change_order)
        return changes

    # --- internals -----------------------------------------------------------------------------------

    def _walk(self, slot: int, kind_id: int, value: float, t: int, quality: int, device: str) -> list[AlarmChange]:
        state = self._state(slot)
        self.stats.walked += 1
        flags = untrusted_flags(kind_id, value, quality)
        if flags:
            self.stats.untrusted += 1
            changes = state.observe_untrusted(self._table, kind_id, t, flags, device)
        else:
            result = state.observe_trusted(self._table, kind_id, value, t, device)
            if result is None:
                self.stats.late += 1
                changes = []
            else:
                changes = result
        self._table.busy[slot] = state.busy
        return changes

    def _state(self, slot: int) -> PatientState:
        state = self._patients[slot]
        assert state is not None, "slot of a removed patient"
        return state

    def _slot_for(self, patient_id: str) -> int:
        slot = self._slots.get(patient_id)
        if slot is not None:
            return slot
        if not isinstance(patient_id, str) or not OPAQUE_ID.match(patient_id):
            raise InvalidSampleError(f"not a valid pseudonymous patient id: {patient_id!r}")
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._patients)
            self._patients.append(None)
            self._table.ensure(slot + 1)
        index = self._config_index(self.patient_config(patient_id))
        self._patients[slot] = PatientState(patient_id, slot, self._compiled[index])
        self._table.config[slot] = index
        self._slots[patient_id] = slot
        return slot

    def _config_index(self, config: RuleConfig) -> int:
        key = _canonical(config)
        index = self._config_ids.get(key)
        if index is None:
            index = len(self._compiled)
            self._compiled.append(CompiledConfig.compile(config))
            self._config_ids[key] = index
            self._arrays = None  # restacked on next use
        return index

    # --- persistence ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-compatible data (the edge persists it across restarts)."""
        patients = []
        for patient_id, slot in self._slots.items():
            custom = self._patient_configs.get(patient_id)
            patients.append({"id": patient_id, "config": None if custom is None else custom.to_dict(),
                             **self._state(slot).to_dict(self._table)})
        return {"format": STATE_FORMAT, "config": self._site.to_dict(), "patients": patients,
                "stats": asdict(self.stats)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlarmEngine:
        """Restore an engine written by to_dict; raises StateFormatError for anything else."""
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateFormatError(f"not alarm engine state of format {STATE_FORMAT!r}")
        try:
            engine = cls(RuleConfig.from_dict(data["config"]))
            for entry in data["patients"]:
                patient_id = entry["id"]
                if entry["config"] is not None:
                    engine._patient_configs[patient_id] = RuleConfig.from_dict(entry["config"])
                slot = engine._slot_for(patient_id)
                engine._state(slot).load(engine._table, entry)
                engine._table.busy[slot] = engine._state(slot).busy
            engine.stats = EngineStats(**data["stats"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            if isinstance(exc, StateFormatError):
                raise
            kind_of = "rule configuration" if isinstance(exc, RuleConfigError) else "state"
            raise StateFormatError(f"malformed alarm engine {kind_of}: {exc}") from None
        return engine
