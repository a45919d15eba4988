"""The cloud's own alarm evaluation (pure): one proto.alerting AlarmEngine per edge, ticked with that edge's
event time.

proto.alerting is evaluated in event time: `tick(now)` promises that no older sample is still to come. Each
edge's samples arrive in order but edges lag differently (an edge replaying its backlog after an outage is
hours behind the others), so the cloud keeps one engine per edge and ticks it with that edge's own
watermark, the newest sample time it has sent, never with the cloud's clock. The backlog is then
evaluated exactly as the edge evaluated it live, and both name the incidents with the same alert ids.

State round-trips per edge through `save`/`restore` (zlib-compressed JSON of AlarmEngine.to_dict).
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from proto.alerting import AlarmChange, AlarmEngine, RuleConfig, StateFormatError
from proto.vitals import VitalsBatch, from_micros, to_micros


@dataclass(frozen=True, slots=True)
class SavedEngine:
    """One edge's engine as stored."""

    edge_id: str
    site_id: str
    watermark: dt.datetime
    state: bytes


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One edge's engine state before encoding."""

    edge_id: str
    site_id: str
    watermark: dt.datetime
    state: dict[str, Any]


def encode(snapshot: Snapshot) -> SavedEngine:
    """The stored form of a snapshot: compact JSON, zlib-compressed (about a tenth of the JSON)."""
    raw = json.dumps(snapshot.state, separators=(",", ":")).encode()
    return SavedEngine(snapshot.edge_id, snapshot.site_id, snapshot.watermark, zlib.compress(raw, 3))


class EdgeEngines:
    """Alarm engines by edge, with each edge's watermark and whether it changed since the last save."""

    def __init__(self, config: RuleConfig | None = None) -> None:
        self._config = config
        self._engines: dict[str, AlarmEngine] = {}
        self._sites: dict[str, str] = {}
        self._watermarks: dict[str, int] = {}
        self._dirty: set[str] = set()

    @property
    def edges(self) -> tuple[str, ...]:
        return tuple(self._engines)

    def engine(self, edge_id: str) -> AlarmEngine:
        engine = self._engines.get(edge_id)
        if engine is None:
            engine = AlarmEngine(self._config)
            self._engines[edge_id] = engine
        return engine

    def watermark(self, edge_id: str) -> dt.datetime | None:
        micros = self._watermarks.get(edge_id)
        return None if micros is None else from_micros(micros)

    def patients(self) -> dict[str, tuple[str, str]]:
        """Every patient evaluated: patient id -> (site, edge)."""
        out: dict[str, tuple[str, str]] = {}
        for edge_id, engine in self._engines.items():
            for patient_id in engine.patients:
                out[patient_id] = (self._sites.get(edge_id, ""), edge_id)
        return out

    def observe(self, edge_id: str, site_id: str, batch: VitalsBatch) -> list[AlarmChange]:
        """Evaluate a batch from `edge_id`, then let that edge's time pass to its newest sample."""
        engine = self.engine(edge_id)
        self._sites[edge_id] = site_id
        changes = engine.observe_batch(batch)
        if len(batch):
            newest = int(batch.time_us.max())
            mark = max(newest, self._watermarks.get(edge_id, newest))
            self._watermarks[edge_id] = mark
            changes += engine.tick(from_micros(mark))
        self._dirty.add(edge_id)
        return changes

    def tick(self, edge_id: str, now: dt.datetime) -> list[AlarmChange]:
        """Advance one edge's watermark without samples (the edge promised nothing older is coming)."""
        engine = self._engines.get(edge_id)
        if engine is None:
            return []
        micros = max(to_micros(now), self._watermarks.get(edge_id, to_micros(now)))
        self._watermarks[edge_id] = micros
        self._dirty.add(edge_id)
        return engine.tick(from_micros(micros))

    def dirty(self) -> list[str]:
        """The edges whose engine changed since it was last snapshotted."""
        return sorted(e for e in self._dirty if e in self._watermarks)

    def snapshot(self, edge_id: str) -> Snapshot:
        """One engine's state as plain data (fresh objects: encoding it may happen in another thread)."""
        self._dirty.discard(edge_id)
        return Snapshot(edge_id, self._sites.get(edge_id, ""), from_micros(self._watermarks[edge_id]),
                        self._engines[edge_id].to_dict())

    def save(self, *, only_dirty: bool = True) -> list[SavedEngine]:
        """The engines to store (those that changed since the last save, by default), encoded."""
        edges = self.dirty() if only_dirty else sorted(e for e in self._engines if e in self._watermarks)
        return [encode(self.snapshot(edge_id)) for edge_id in edges]

    def restore(self, saved: Iterable[SavedEngine]) -> list[str]:
        """Load stored engines; the edges whose state could not be read (they start afresh) are returned."""
        unreadable = []
        for entry in saved:
            try:
                engine = AlarmEngine.from_dict(json.loads(zlib.decompress(entry.state)))
            except (zlib.error, ValueError, StateFormatError):
                unreadable.append(entry.edge_id)
                continue
            self._engines[entry.edge_id] = engine
            self._sites[entry.edge_id] = entry.site_id
            self._watermarks[entry.edge_id] = to_micros(entry.watermark)
        return unreadable
