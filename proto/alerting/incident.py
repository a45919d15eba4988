"""Incidents: one open alarm per (patient, rule[, device]) and the AlarmChanges it emits over its life.

Alert ids are deterministic so that the edge (evaluating offline) and the cloud (evaluating on ingest)
name the same incident the same way and their messages merge (docs/alerting-rules.md, "Merge rule"):

    alert_id = uuid5(ALERT_ID_NAMESPACE, "{patient_id}/{rule}/{start_us}")              clinical rules
    alert_id = uuid5(ALERT_ID_NAMESPACE, "{patient_id}/{rule}@{device_id}/{start_us}")  technical rules

where start_us is the event time (microseconds since the Unix epoch) at which the incident was raised.
Every message of the incident (raised, escalated, improved, cleared) carries that id; `raised_at` is the
event time of the change itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from proto.alerting.config import PRIORITY_RANK
from proto.alerting.tracker import Cause, LevelTiming, LevelTracker, Transition
from proto.messages import Alert, AlertCategory, Priority
from proto.news2 import News2Score
from proto.vitals import from_micros
from proto.vocabulary import BY_WIRE_ID

# uuid5(NAMESPACE_URL, "urn:telemed:alerting:alert-id"), fixed forever: changing it splits every incident.
ALERT_ID_NAMESPACE = uuid.UUID("c2e86b7b-1c97-5c5f-931a-171d6cddcd5d")

ChangeType = Literal["raised", "escalated", "improved", "cleared"]


def alert_id_for(patient_id: str, rule: str, start_us: int, device_id: str | None = None) -> uuid.UUID:
    """The id of the incident of `rule` for a patient (and device, for technical rules) raised at start_us."""
    subject = rule if device_id is None else f"{rule}@{device_id}"
    return uuid.uuid5(ALERT_ID_NAMESPACE, f"{patient_id}/{subject}/{start_us}")


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """An incident was raised, escalated (priority up), improved (priority down) or cleared.

    `alert` is the ready wire message. `news2` is the score behind a NEWS2 alarm (its `missing` lists the
    parameters absent from a partial score).
    """

    change: ChangeType
    alert: Alert
    previous_priority: Priority | None = None
    news2: News2Score | None = None


class Context(NamedTuple):
    """What the latest evidence of an incident showed: the facts its messages are written from.

    A NamedTuple, not a frozen dataclass: one is made per evaluated sample, and this is ten times cheaper.
    """

    value: float | None = None
    kind_id: int | None = None
    device: str = ""
    news2: News2Score | None = None
    flags: int = 0
    delta: float | None = None

    def to_dict(self) -> dict[str, Any]:
        score = self.news2
        return {
            "value": self.value, "kind_id": self.kind_id, "device": self.device, "flags": self.flags,
            "delta": self.delta,
            "news2": None if score is None else {"total": score.total, "subscores": score.subscores,
                                                  "risk": score.risk, "missing": list(score.missing)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Context:
        raw = data.get("news2")
        score = None if raw is None else News2Score(
            total=int(raw["total"]), subscores={str(k): int(v) for k, v in raw["subscores"].items()},
            risk=raw["risk"], missing=tuple(raw["missing"]))
        kind_id = data.get("kind_id")
        if kind_id is not None and kind_id not in BY_WIRE_ID:
            raise ValueError(f"unknown kind id {kind_id}")
        return cls(value=data.get("value"), kind_id=kind_id, device=str(data.get("device", "")), news2=score,
                   flags=int(data.get("flags", 0)), delta=data.get("delta"))


class RuleSpec(Protocol):
    """What an incident needs from its compiled rule."""

    @property
    def name(self) -> str: ...
    @property
    def category(self) -> AlertCategory: ...
    @property
    def per_device(self) -> bool: ...
    @property
    def timings(self) -> Sequence[LevelTiming]: ...
    @property
    def priorities(self) -> Sequence[Priority]: ...
    @property
    def stale_us(self) -> int | None: ...

    def message(self, change: ChangeType, priority: Priority, context: Context, cause: Cause) -> str: ...


class Incident:
    """The tracker of one rule instance plus the identity and facts of its open alarm."""

    __slots__ = ("context", "priority", "start_us", "tracker")

    def __init__(self, levels: int) -> None:
        self.tracker = LevelTracker(levels)
        self.start_us: int | None = None
        self.priority: Priority | None = None
        self.context = Context()

    @property
    def idle(self) -> bool:
        return self.tracker.idle

    def advance(self, until: int, rule: RuleSpec, patient_id: str) -> list[AlarmChange]:
        return self._emit(self.tracker.advance(until, rule.timings, rule.stale_us), rule, patient_id)

    def evidence(self, at: int, beyond: Sequence[bool], clear_ok: Sequence[bool], hold_us: int | None,
                 context: Context, rule: RuleSpec, patient_id: str) -> list[AlarmChange]:
        """Apply evidence at `at` (or at the tracker's time if that is later): older evidence held until now."""
        at = max(at, self.tracker.time)
        changes = self.advance(at, rule, patient_id)
        self.context = context
        self.tracker.apply(at, beyond, clear_ok, hold_us)
        changes += self.advance(at, rule, patient_id)
        return changes

    def close(self, at: int, rule: RuleSpec, patient_id: str) -> list[AlarmChange]:
        transition = self.tracker.close(at)
        return self._emit([transition], rule, patient_id) if transition else []

    def _emit(self, transitions: list[Transition], rule: RuleSpec, patient_id: str) -> list[AlarmChange]:
        changes: list[AlarmChange] = []
        for transition in transitions:
            previous = self.priority
            if transition.top is None:
                if previous is None:
                    continue
                change: ChangeType = "cleared"
                priority = previous
            else:
                priority = rule.priorities[transition.top]
                if previous is None:
                    change = "raised"
                    self.start_us = transition.at_us
                elif PRIORITY_RANK[priority] < PRIORITY_RANK[previous]:
                    change = "escalated"
                else:
                    change = "improved"
            assert self.start_us is not None
            ctx = self.context
            device = ctx.device or None
            alert = Alert(
                alert_id=alert_id_for(patient_id, rule.name, self.start_us, device if rule.per_device else None),
                patient_id=patient_id, rule=rule.name, priority=priority, category=rule.category,
                state="cleared" if change == "cleared" else "active", raised_at=from_micros(transition.at_us),
                message=rule.message(change, priority, ctx, transition.cause)[:500],
                kind=None if ctx.kind_id is None else BY_WIRE_ID[ctx.kind_id].name,
                value=ctx.value, news2_total=None if ctx.news2 is None else ctx.news2.total, device_id=device,
            )
            changes.append(AlarmChange(change, alert, previous, ctx.news2))
            if change == "cleared":
                self.priority, self.start_us = None, None
            else:
                self.priority = priority
        return changes

    def to_dict(self) -> dict[str, Any]:
        return {"tracker": self.tracker.to_dict(), "start_us": self.start_us, "priority": self.priority,
                "context": self.context.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], levels: int) -> Incident:
        incident = cls(levels)
        incident.tracker = LevelTracker.from_dict(data["tracker"], levels)
        start = data["start_us"]
        incident.start_us = None if start is None else int(start)
        priority = data["priority"]
        if priority is not None and priority not in PRIORITY_RANK:
            raise ValueError(f"unknown priority {priority!r}")
        incident.priority = priority
        incident.context = Context.from_dict(data["context"])
        return incident
