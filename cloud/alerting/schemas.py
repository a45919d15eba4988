"""Request and response bodies of the alerting API (wire shapes; storage rows stay in store.py/directory.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloud.alerting.incidents import Incident


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ActorOut(_Out):
    name: str
    user_id: uuid.UUID | None


class IncidentOut(_Out):
    """One incident: the alarm (event times) and its handling (wall-clock times)."""

    incident_id: uuid.UUID
    site_id: str
    edge_id: str | None
    patient_id: str
    department_id: str | None
    rule: str
    category: str
    priority: str
    state: str
    alarm_state: str
    message: str
    device_id: str | None
    kind: str | None
    value: float | None
    news2_total: int | None
    sources: list[str]
    raised_at: dt.datetime
    alarm_changed_at: dt.datetime
    cleared_at: dt.datetime | None
    opened_at: dt.datetime
    updated_at: dt.datetime
    acknowledged_at: dt.datetime | None
    acknowledged_by: ActorOut | None
    ack_deadline: dt.datetime | None
    resolved_at: dt.datetime | None
    resolved_by: ActorOut | None
    resolution: str | None
    resolve_after: dt.datetime | None
    escalation_steps: int
    next_page_at: dt.datetime | None

    @classmethod
    def of(cls, i: Incident) -> IncidentOut:
        def actor(a: Any) -> ActorOut | None:
            return None if a is None else ActorOut(name=a.name, user_id=a.user_id)

        return cls(
            incident_id=i.incident_id, site_id=i.site_id, edge_id=i.edge_id, patient_id=i.patient_id,
            department_id=i.department_id, rule=i.rule, category=i.category, priority=i.priority, state=i.state,
            alarm_state=i.alarm_state, message=i.message, device_id=i.device_id, kind=i.kind, value=i.value,
            news2_total=i.news2_total, sources=sorted(i.sources), raised_at=i.raised_at,
            alarm_changed_at=i.alarm_changed_at, cleared_at=i.cleared_at, opened_at=i.opened_at,
            updated_at=i.updated_at, acknowledged_at=i.acknowledged_at, acknowledged_by=actor(i.acknowledged_by),
            ack_deadline=i.ack_deadline, resolved_at=i.resolved_at, resolved_by=actor(i.resolved_by),
            resolution=i.resolution, resolve_after=i.resolve_after,
            escalation_steps=i.escalation.steps_taken if i.escalation else 0, next_page_at=i.next_page_at,
        )


class IncidentListOut(_Out):
    incidents: list[IncidentOut]


class TimelineEventOut(_Out):
    event_id: int
    at: dt.datetime
    event: str
    from_state: str | None
    to_state: str
    actor: str
    actor_user_id: uuid.UUID | None
    detail: dict[str, Any]


class AlarmMessageOut(_Out):
    raised_at: dt.datetime
    state: str
    priority: str
    sources: list[str]
    body: dict[str, Any]
    received_at: dt.datetime


class DeliveryOut(_Out):
    delivery_id: uuid.UUID
    incident_id: uuid.UUID
    channel_id: uuid.UUID | None
    channel_kind: str
    recipient_id: uuid.UUID | None
    step: int
    tier: str
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    finished_at: dt.datetime | None


class DeliveryListOut(_Out):
    deliveries: list[DeliveryOut]


class IncidentDetailOut(_Out):
    """GET /api/incidents/{id}: the incident, its timeline, its alarm messages and its pages."""

    incident: IncidentOut
    timeline: list[TimelineEventOut]
    messages: list[AlarmMessageOut]
    deliveries: list[DeliveryOut]


class ActionIn(_In):
    """Acknowledge or resolve, with an optional note for the timeline."""

    note: str | None = Field(default=None, max_length=500)


# --- on call ---------------------------------------------------------------------------------------------------


class ShiftOut(_Out):
    user_id: uuid.UUID
    username: str | None
    display_name: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    source: str


class TierOut(_Out):
    tier: str
    now: ShiftOut | None
    next: ShiftOut | None


class PersonOut(_Out):
    user_id: uuid.UUID
    username: str | None
    display_name: str | None


class DepartmentOnCallOut(_Out):
    department_id: str
    name: str
    name_zh: str | None
    head: PersonOut | None
    tiers: list[TierOut]


class OnCallNowOut(_Out):
    """GET /api/oncall/now?site=: who is on call now and next, per department."""

    site_id: str
    at: dt.datetime
    departments: list[DepartmentOnCallOut]


class DepartmentIn(_In):
    name: str = Field(min_length=1, max_length=200)
    name_zh: str | None = Field(default=None, max_length=200)
    head_user_id: uuid.UUID | None = None
    wards: list[str] = Field(default_factory=list, max_length=100)
    is_default: bool = False


class DepartmentOut(_Out):
    site_id: str
    department_id: str
    name: str
    name_zh: str | None
    head_user_id: uuid.UUID | None
    wards: list[str]
    is_default: bool


class RotationIn(_In):
    site_id: str = Field(min_length=1, max_length=64)
    department_id: str = Field(min_length=1, max_length=64)
    tier: Literal["primary", "secondary"]
    members: list[uuid.UUID] = Field(min_length=1, max_length=100)
    period: Literal["daily", "weekly"] = "daily"
    handoff: dt.time = dt.time(8, 0)
    handoff_weekday: int = Field(default=0, ge=0, le=6)
    anchor: dt.date
    timezone: str = "Asia/Shanghai"


class RotationOut(_Out):
    rotation_id: uuid.UUID
    site_id: str
    department_id: str
    tier: str
    members: list[uuid.UUID]
    period: str
    handoff: dt.time
    handoff_weekday: int
    anchor: dt.date
    timezone: str


class OverrideIn(_In):
    site_id: str = Field(min_length=1, max_length=64)
    department_id: str = Field(min_length=1, max_length=64)
    tier: Literal["primary", "secondary"]
    user_id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str | None = Field(default=None, max_length=500)


class OverrideOut(_Out):
    override_id: uuid.UUID
    site_id: str
    department_id: str
    tier: str
    user_id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str | None


TierName = Literal["primary", "secondary", "department_head"]
PriorityName = Literal["high", "medium", "low"]


def _default_steps() -> list[TierName]:
    return ["primary", "secondary", "department_head"]


def _default_delays() -> dict[PriorityName, float]:
    return {"high": 120.0, "medium": 600.0}


def _default_ack_timeouts() -> dict[PriorityName, float]:
    return {"high": 900.0, "medium": 1800.0, "low": 3600.0}


class PolicyIn(_In):
    """An escalation policy (cloud/alerting/escalation.py); omitted fields take the defaults."""

    steps: list[TierName] = Field(default_factory=_default_steps, min_length=1, max_length=10)
    delays_s: dict[PriorityName, float] = Field(default_factory=_default_delays)
    repeat: int = Field(default=2, ge=1, le=10)
    ack_timeout_s: dict[PriorityName, float] = Field(default_factory=_default_ack_timeouts)
    resolve_hold_s: float = Field(default=300.0, ge=0, le=86_400)


class PolicyOut(_Out):
    site_id: str
    department_id: str
    policy: dict[str, Any]


class ChannelIn(_In):
    kind: Literal["webhook", "wecom", "dingtalk", "email"]
    name: str = Field(min_length=1, max_length=200)
    site_id: str | None = None
    config: dict[str, Any]
    enabled: bool = True


class ChannelOut(_Out):
    """A channel with its secrets (signing secret, password, robot URL with its key) masked."""

    channel_id: uuid.UUID
    kind: str
    name: str
    site_id: str | None
    config: dict[str, Any]
    enabled: bool


class ContactIn(_In):
    address: str = Field(default="", max_length=320)
    enabled: bool = True


class ContactOut(_Out):
    user_id: uuid.UUID
    channel_id: uuid.UUID
    address: str
    enabled: bool
