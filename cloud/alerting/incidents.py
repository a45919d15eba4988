"""The incident lifecycle (pure): triggered -> acknowledged -> resolved, as a transition table.

An incident is the cloud's record of one alarm episode, named by the alarm's deterministic `alert_id`
(docs/alerting-rules.md, "Merge rule"): the edge's alert messages and the cloud's own evaluation of the same
samples land on the same incident, so it pages once. Its alarm side follows the engine (active, escalated,
improved, cleared: the latest message by event time wins); its human side follows people and timers:

    (state, event)                      -> state          effects
    triggered    escalated              -> triggered      page again from the first tier (priority rose)
    triggered    acknowledge            -> acknowledged   stop paging, start the acknowledgement timer
    acknowledged ack_timeout            -> triggered      page again from the first tier
    acknowledged escalated              -> triggered      page again from the first tier
    *            cleared                -> (same)         resolve automatically after the hold time
    triggered|acknowledged auto_resolve -> resolved       the alarm stayed back in range for the hold time
    triggered|acknowledged resolve      -> resolved       by hand
    resolved     escalated              -> triggered      reopened: worse than when it was resolved

The full table is `TRANSITIONS`; a pair missing from it (resolving twice, acknowledging a resolved incident)
raises IncidentTransitionError. Times: `now` is the wall clock (people and escalation timers); alarm fields
(`raised_at`, `alarm_changed_at`, `cleared_at`) are event times from the samples.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal

from cloud.alerting.errors import IncidentTransitionError
from cloud.alerting.escalation import EscalationPolicy, Progress, next_step
from proto.alerting.config import PRIORITY_RANK
from proto.messages import Alert, AlertCategory, Priority

IncidentState = Literal["triggered", "acknowledged", "resolved"]
AlarmState = Literal["active", "cleared"]
Resolution = Literal["manual", "auto"]
Source = Literal["edge", "cloud"]


class Event(enum.StrEnum):
    """What can happen to an incident."""

    OPENED = "opened"  # the first message of the alarm reached the cloud
    ESCALATED = "escalated"  # the alarm's priority rose
    IMPROVED = "improved"  # the alarm's priority fell
    UPDATED = "updated"  # a newer message at the same priority (new value, new NEWS2)
    CLEARED = "cleared"  # the engine cleared the alarm (back in range, with hysteresis)
    ACKNOWLEDGE = "acknowledge"  # someone takes it
    RESOLVE = "resolve"  # someone closes it
    ACK_TIMEOUT = "ack_timeout"  # the acknowledgement ran out while the incident was still open
    AUTO_RESOLVE = "auto_resolve"  # the alarm stayed cleared for the hold time


class Effect(enum.Enum):
    RESTART_PAGING = "restart_paging"
    STOP_PAGING = "stop_paging"
    START_ACK_TIMER = "start_ack_timer"
    CANCEL_ACK_TIMER = "cancel_ack_timer"
    HOLD_RESOLVE = "hold_resolve"
    MARK_RESOLVED = "mark_resolved"


@dataclass(frozen=True, slots=True)
class Rule:
    to: IncidentState
    effects: tuple[Effect, ...] = ()


_PAGE_AGAIN = (Effect.RESTART_PAGING, Effect.CANCEL_ACK_TIMER)
_CLOSE = (Effect.STOP_PAGING, Effect.CANCEL_ACK_TIMER, Effect.MARK_RESOLVED)

TRANSITIONS: Final[Mapping[tuple[IncidentState, Event], Rule]] = MappingProxyType({
    ("triggered", Event.ESCALATED): Rule("triggered", _PAGE_AGAIN),
    ("triggered", Event.IMPROVED): Rule("triggered"),
    ("triggered", Event.UPDATED): Rule("triggered"),
    ("triggered", Event.CLEARED): Rule("triggered", (Effect.HOLD_RESOLVE,)),
    ("triggered", Event.ACKNOWLEDGE): Rule("acknowledged", (Effect.STOP_PAGING, Effect.START_ACK_TIMER)),
    ("triggered", Event.RESOLVE): Rule("resolved", _CLOSE),
    ("triggered", Event.AUTO_RESOLVE): Rule("resolved", _CLOSE),
    ("acknowledged", Event.ESCALATED): Rule("triggered", _PAGE_AGAIN),
    ("acknowledged", Event.IMPROVED): Rule("acknowledged"),
    ("acknowledged", Event.UPDATED): Rule("acknowledged"),
    ("acknowledged", Event.CLEARED): Rule("acknowledged", (Effect.HOLD_RESOLVE,)),
    ("acknowledged", Event.ACK_TIMEOUT): Rule("triggered", _PAGE_AGAIN),
    ("acknowledged", Event.RESOLVE): Rule("resolved", _CLOSE),
    ("acknowledged", Event.AUTO_RESOLVE): Rule("resolved", _CLOSE),
    ("resolved", Event.ESCALATED): Rule("triggered", _PAGE_AGAIN),
    ("resolved", Event.IMPROVED): Rule("resolved"),
    ("resolved", Event.UPDATED): Rule("resolved"),
    ("resolved", Event.CLEARED): Rule("resolved"),
})

# An alarm whose event time lags the wall clock by more than BACKLOG_LAG came out of a backlog (an edge
# replaying what it held while offline). Its first page waits BACKLOG_GRACE, so that the rest of the backlog
# (often the alarm's own clearing) arrives first: an episode that is already over pages nobody.
BACKLOG_LAG: Final = dt.timedelta(seconds=60)
BACKLOG_GRACE: Final = dt.timedelta(seconds=15)

# Events that come from the alarm engine (edge or cloud); the others come from people and timers.
ALARM_EVENTS: Final = frozenset({Event.ESCALATED, Event.IMPROVED, Event.UPDATED, Event.CLEARED})
SYSTEM_ACTOR: Final = "system"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who caused a transition: a user (id and name) or the system."""

    name: str = SYSTEM_ACTOR
    user_id: uuid.UUID | None = None


SYSTEM: Final = Actor()


@dataclass(frozen=True, slots=True)
class Incident:
    """One alarm episode as the cloud tracks it (a row of `incidents`)."""

    incident_id: uuid.UUID  # the alarm's alert_id
    site_id: str
    patient_id: str
    rule: str
    category: AlertCategory
    priority: Priority
    state: IncidentState
    alarm_state: AlarmState
    message: str
    raised_at: dt.datetime  # event time the alarm was raised (or its earliest message seen)
    alarm_changed_at: dt.datetime  # event time of the newest alarm message applied
    opened_at: dt.datetime  # wall time the cloud opened the incident
    updated_at: dt.datetime
    edge_id: str | None = None
    department_id: str | None = None
    device_id: str | None = None
    kind: str | None = None
    value: float | None = None
    news2_total: int | None = None
    sources: frozenset[Source] = frozenset()
    acknowledged_at: dt.datetime | None = None
    acknowledged_by: Actor | None = None
    ack_deadline: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    resolved_by: Actor | None = None
    resolution: Resolution | None = None
    cleared_at: dt.datetime | None = None
    resolve_after: dt.datetime | None = None
    escalation: Progress | None = None
    next_page_at: dt.datetime | None = None

    @property
    def open(self) -> bool:
        return self.state != "resolved"


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded change of an incident (the timeline, the audit trail)."""

    incident_id: uuid.UUID
    event: Event
    from_state: IncidentState | None
    to_state: IncidentState
    at: dt.datetime
    actor: Actor = SYSTEM
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changes_state(self) -> bool:
        return self.from_state != self.to_state


def _next_page(incident: Incident, policy: EscalationPolicy) -> dt.datetime | None:
    if incident.escalation is None or incident.state != "triggered":
        return None
    step = next_step(policy, incident.priority, incident.escalation)
    return None if step is None else step.due_at


def _alarm_detail(alert: Alert, source: Source) -> dict[str, Any]:
    return {"source": source, "priority": alert.priority, "alarm_state": alert.state, "message": alert.message,
            "raised_at": alert.raised_at.isoformat(), "value": alert.value, "news2_total": alert.news2_total}


def open_incident(alert: Alert, *, source: Source, site_id: str, now: dt.datetime, policy: EscalationPolicy,
                  edge_id: str | None = None, department_id: str | None = None) -> tuple[Incident, list[Transition]]:
    """A new incident from the first message of an alarm: triggered, and paging if its kind of alarm pages.

    When the first news of an alarm is that it has cleared (a backlog after an outage), nobody is paged: the
    episode is over and the hold time resolves it. A backlog's alarm pages after BACKLOG_GRACE, if still open.
    """
    incident = Incident(
        incident_id=alert.alert_id, site_id=site_id, patient_id=alert.patient_id, rule=alert.rule,
        category=alert.category, priority=alert.priority, state="triggered", alarm_state="active",
        message=alert.message, raised_at=alert.raised_at, alarm_changed_at=alert.raised_at, opened_at=now,
        updated_at=now, edge_id=edge_id, department_id=department_id, device_id=alert.device_id, kind=alert.kind,
        value=alert.value, news2_total=alert.news2_total, sources=frozenset({source}),
    )
    if alert.state == "active" and policy.pages(alert.category, alert.priority):
        backlog = now - alert.raised_at > BACKLOG_LAG
        incident = replace(incident, escalation=Progress.start(now + BACKLOG_GRACE if backlog else now))
    incident = replace(incident, next_page_at=_next_page(incident, policy))
    transitions = [Transition(incident.incident_id, Event.OPENED, None, "triggered", now,
                              detail=_alarm_detail(alert, source))]
    if alert.state == "cleared":
        incident, cleared = apply(incident, Event.CLEARED, now=now, policy=policy, alert=alert, source=source)
        transitions.append(cleared)
    return incident, transitions


def alarm_event(incident: Incident, alert: Alert) -> Event | None:
    """Which event a message of the incident's alarm is, or None when it changes nothing.

    Messages older than the newest one applied are history (the edge's copy of something the cloud already
    evaluated, or a reordering); a cleared alarm never becomes active again under the same id.
    """
    if alert.raised_at < incident.alarm_changed_at:
        return None
    if incident.alarm_state == "cleared":
        return None
    if alert.state == "cleared":
        return Event.CLEARED
    if alert.raised_at == incident.alarm_changed_at and alert.priority == incident.priority:
        return None  # the same message from the other evaluator
    rank_new, rank_old = PRIORITY_RANK[alert.priority], PRIORITY_RANK[incident.priority]
    if rank_new < rank_old:  # rank 0 is the most urgent
        return Event.ESCALATED
    if rank_new > rank_old:
        return Event.IMPROVED
    return Event.UPDATED


def apply(
    incident: Incident, event: Event, *, now: dt.datetime, policy: EscalationPolicy, actor: Actor = SYSTEM,
    alert: Alert | None = None, source: Source | None = None, note: str | None = None,
) -> tuple[Incident, Transition]:
    """Apply one event: the new incident and the transition to record. IncidentTransitionError if not allowed."""
    rule = TRANSITIONS.get((incident.state, event))
    if rule is None:
        raise IncidentTransitionError(incident.state, event.value)
    if event in ALARM_EVENTS and alert is None:
        raise ValueError(f"{event.value} needs the alarm message")
    updated = replace(incident, state=rule.to, updated_at=now)
    detail: dict[str, Any] = {}
    if alert is not None and source is not None:
        updated = replace(
            updated, priority=alert.priority, message=alert.message, alarm_changed_at=alert.raised_at,
            kind=alert.kind or updated.kind, value=alert.value if alert.value is not None else updated.value,
            news2_total=alert.news2_total if alert.news2_total is not None else updated.news2_total,
            sources=updated.sources | {source},
        )
        detail = _alarm_detail(alert, source)
    for effect in rule.effects:
        updated = _effect(updated, effect, now=now, policy=policy, actor=actor, event=event, alert=alert)
    updated = replace(updated, next_page_at=_next_page(updated, policy))
    if note:
        detail["note"] = note
    if event is Event.ESCALATED and incident.state == "resolved":
        detail["reopened"] = True
    return updated, Transition(incident.incident_id, event, incident.state, rule.to, now, actor, detail)


def _effect(incident: Incident, effect: Effect, *, now: dt.datetime, policy: EscalationPolicy, actor: Actor,
            event: Event, alert: Alert | None) -> Incident:
    if effect is Effect.RESTART_PAGING:
        pages = policy.pages(incident.category, incident.priority)
        return replace(incident, escalation=Progress.start(now) if pages else None)
    if effect is Effect.STOP_PAGING:
        if event is Event.ACKNOWLEDGE:
            return replace(incident, escalation=None, acknowledged_at=now, acknowledged_by=actor)
        return replace(incident, escalation=None)
    if effect is Effect.START_ACK_TIMER:
        return replace(incident, ack_deadline=now + policy.ack_timeout(incident.priority))
    if effect is Effect.CANCEL_ACK_TIMER:
        return replace(incident, ack_deadline=None)
    if effect is Effect.HOLD_RESOLVE:
        assert alert is not None
        return replace(incident, alarm_state="cleared", cleared_at=alert.raised_at,
                       resolve_after=alert.raised_at + policy.resolve_hold)
    if effect is Effect.MARK_RESOLVED:
        resolution: Resolution = "auto" if event is Event.AUTO_RESOLVE else "manual"
        return replace(incident, resolved_at=now, resolved_by=actor, resolution=resolution, resolve_after=None)
    raise AssertionError(f"unhandled effect {effect}")


def step_taken(incident: Incident, *, at: dt.datetime, policy: EscalationPolicy, skipped: bool = False) -> Incident:
    """The incident after an escalation step paged someone (or found nobody on call: `skipped`)."""
    if incident.escalation is None:
        raise ValueError("the incident is not paging")
    progress = incident.escalation.skip() if skipped else incident.escalation.taken(at)
    updated = replace(incident, escalation=progress, updated_at=at)
    return replace(updated, next_page_at=_next_page(updated, policy))


def due_timer(incident: Incident, now: dt.datetime) -> Event | None:
    """The timer event due at `now`, if any: auto-resolve first (it ends the incident), then ack timeout."""
    if incident.state != "resolved" and incident.resolve_after is not None and incident.resolve_after <= now:
        return Event.AUTO_RESOLVE
    if incident.state == "acknowledged" and incident.ack_deadline is not None and incident.ack_deadline <= now:
        return Event.ACK_TIMEOUT
    return None
