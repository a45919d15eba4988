"""Incident handling against the database: alarm messages in, acknowledgements and resolutions by people,
timers and escalation steps out. The pure rules are in incidents.py, escalation.py and oncall.py; this
module loads, applies, records and pages, each call inside the caller's transaction.

Every change of an incident, in the same transaction:
- the incident row and its timeline (`incident_events`);
- the audit trail (`record_transition`, entity "incident");
- a dashboard push (pg_notify `telemed_events`, type "alert");
and every escalation step writes its pages to the delivery log as pending rows, which the dispatcher sends
after the commit (so a page is never sent for a change that rolled back, nor lost by a crash after commit).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from cloud.alerting import directory, store
from cloud.alerting.directory import Conn, Person, Place, PolicyKey, Site
from cloud.alerting.escalation import EscalationPolicy, Step, due_step
from cloud.alerting.incidents import (
    Actor,
    Event,
    Incident,
    Source,
    Transition,
    alarm_event,
    apply,
    due_timer,
    open_incident,
    step_taken,
)
from cloud.alerting.notify.dashboard import EVENTS_CHANNEL, incident_payload
from cloud.alerting.notify.page import Page
from cloud.alerting.oncall import OnCallBook
from cloud.api.audit import record_transition
from cloud.api.auth.models import User
from proto.messages import Alert

log = logging.getLogger(__name__)

AUDIT_SYSTEM_ACTOR: Final = "system:alerting"
NO_CHANNEL: Final = "none"


@dataclass(frozen=True)
class Directory:
    """A snapshot of who is on call and how incidents escalate (the service refreshes it periodically)."""

    book: OnCallBook = field(default_factory=OnCallBook)
    policies: Mapping[PolicyKey, EscalationPolicy] = field(default_factory=dict)
    sites: Mapping[str, Site] = field(default_factory=dict)
    default_policy: EscalationPolicy = field(default_factory=EscalationPolicy)
    link_base: str | None = None  # the dashboard URL an incident id is appended to

    def policy(self, site_id: str, department_id: str | None) -> EscalationPolicy:
        return directory.policy_for(self.policies, site_id, department_id, self.default_policy)

    def link(self, incident_id: uuid.UUID) -> str | None:
        return None if not self.link_base else f"{self.link_base.rstrip('/')}/{incident_id}"


async def load_directory(conn: Conn, *, now: dt.datetime, default_policy: EscalationPolicy | None = None,
                         link_base: str | None = None) -> Directory:
    return Directory(await directory.load_book(conn, now=now), await directory.policies(conn),
                     await directory.sites(conn), default_policy or EscalationPolicy(), link_base)


@dataclass(frozen=True, slots=True)
class AlarmInput:
    """An alarm message to apply: from an edge (up/alerts) or the cloud's own engine, for a site."""

    alert: Alert
    source: Source
    site_id: str
    edge_id: str | None = None


@dataclass
class Outcome:
    """What a call changed: incidents with their transitions, and the pages it queued."""

    changed: dict[uuid.UUID, Incident] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    deliveries: list[store.DeliveryRow] = field(default_factory=list)

    def add(self, incident: Incident, transitions: Sequence[Transition]) -> None:
        self.changed[incident.incident_id] = incident
        self.transitions.extend(transitions)


def _message_order(item: AlarmInput) -> tuple[dt.datetime, int]:
    return item.alert.raised_at, 1 if item.alert.state == "cleared" else 0


async def apply_alarms(conn: Conn, items: Sequence[AlarmInput], *, now: dt.datetime, ctx: Directory) -> Outcome:
    """Open, update and clear incidents from alarm messages (edge and cloud copies merge by alert_id)."""
    outcome = Outcome()
    if not items:
        return outcome
    ordered = sorted(items, key=_message_order)
    existing = await store.get_incidents(conn, sorted({i.alert.alert_id for i in ordered}), for_update=True)
    new_patients = {i.alert.patient_id for i in ordered if i.alert.alert_id not in existing}
    where = await directory.places(conn, new_patients)
    current = dict(existing)
    for item in ordered:
        alert = item.alert
        incident = current.get(alert.alert_id)
        if incident is None:
            department = _department(ctx, where.get(alert.patient_id), item.site_id)
            policy = ctx.policy(item.site_id, department)
            incident, transitions = open_incident(alert, source=item.source, site_id=item.site_id, now=now,
                                                  policy=policy, edge_id=item.edge_id, department_id=department)
            current[alert.alert_id] = incident
            outcome.add(incident, transitions)
            continue
        event = alarm_event(incident, alert)
        if event is None:
            if item.source not in incident.sources:  # the other evaluator's copy: note who saw it
                incident = replace(incident, sources=incident.sources | {item.source})
                current[alert.alert_id] = incident
                outcome.changed[alert.alert_id] = incident
            continue
        policy = ctx.policy(incident.site_id, incident.department_id)
        incident, transition = apply(incident, event, now=now, policy=policy, alert=alert, source=item.source)
        current[alert.alert_id] = incident
        outcome.add(incident, [transition])
    await _record(conn, outcome, user=None)
    await store.merge_messages(conn, [(i.alert, i.source) for i in ordered])
    return outcome


def _department(ctx: Directory, place: Place | None, site_id: str) -> str | None:
    department = ctx.book.department_for(site_id, place.ward if place else None)
    return None if department is None else department.department_id


async def act(conn: Conn, incident_id: uuid.UUID, event: Event, *, user: User, now: dt.datetime,
              ctx: Directory, note: str | None = None) -> Incident | None:
    """A person acknowledges or resolves an incident; None if there is no such incident.

    Raises IncidentTransitionError when the incident's state does not allow it.
    """
    if event not in (Event.ACKNOWLEDGE, Event.RESOLVE):
        raise ValueError(f"people acknowledge or resolve, not {event.value}")
    incident = await store.get_incident(conn, incident_id, for_update=True)
    if incident is None:
        return None
    policy = ctx.policy(incident.site_id, incident.department_id)
    actor = Actor(name=user.username, user_id=user.user_id)
    updated, transition = apply(incident, event, now=now, policy=policy, actor=actor, note=note)
    outcome = Outcome()
    outcome.add(updated, [transition])
    await _record(conn, outcome, user=user)
    return updated


async def sweep(conn: Conn, *, now: dt.datetime, ctx: Directory, limit: int = 200) -> Outcome:
    """Fire what is due at `now`: auto-resolves, acknowledgement timeouts, then escalation steps (pages)."""
    outcome = Outcome()
    due = await store.due_incidents(conn, now, limit=limit)
    if not due:
        return outcome
    pages: list[tuple[Incident, Step, list[uuid.UUID]]] = []
    for incident in due:
        policy = ctx.policy(incident.site_id, incident.department_id)
        timer = due_timer(incident, now)
        if timer is not None:
            incident, transition = apply(incident, timer, now=now, policy=policy)
            outcome.add(incident, [transition])
        while incident.state == "triggered" and incident.escalation is not None:
            step = due_step(policy, incident.priority, incident.escalation, now)
            if step is None:
                break
            recipients = _recipients(ctx.book, incident, step, now)
            incident = step_taken(incident, at=now, policy=policy, skipped=not recipients)
            outcome.changed[incident.incident_id] = incident
            pages.append((incident, step, recipients))
            if recipients:
                break  # one step at a time: the next one waits its delay
        outcome.changed.setdefault(incident.incident_id, incident)
    outcome.deliveries = await _page(conn, pages, now=now, ctx=ctx)
    await _record(conn, outcome, user=None)
    return outcome


def _recipients(book: OnCallBook, incident: Incident, step: Step, now: dt.datetime) -> list[uuid.UUID]:
    """Who a step pages: the tier's person on call now, or the department head."""
    department_id = incident.department_id
    if department_id is None:
        return []
    if step.tier == "department_head":
        department = book.department(incident.site_id, department_id)
        return [department.head_user_id] if department is not None and department.head_user_id else []
    shift = book.on_call(incident.site_id, department_id, step.tier, now)
    return [] if shift is None else [shift.user_id]


async def _page(conn: Conn, pages: Sequence[tuple[Incident, Step, list[uuid.UUID]]], *, now: dt.datetime,
                ctx: Directory) -> list[store.DeliveryRow]:
    """The delivery rows of the steps taken (pending per contact point; failed when someone cannot be reached)."""
    if not pages:
        return []
    user_ids = {u for _, _, users in pages for u in users}
    people = await directory.people(conn, user_ids)
    where = await directory.places(conn, {i.patient_id for i, _, _ in pages})
    rows: list[store.DeliveryRow] = []
    for incident, step, users in pages:
        reachable = [u for u in users if u in people and not people[u].disabled]
        points = await directory.contacts(conn, reachable, site_id=incident.site_id)
        detail: dict[str, object] = {"step": step.number, "round": step.round, "tier": step.tier,
                  "recipients": [people[u].username for u in reachable]}
        if not reachable:
            detail["skipped"] = "nobody on call for this tier"
            log.warning("alerting.step_unrouted incident=%s site=%s department=%s tier=%s", incident.incident_id,
                        incident.site_id, incident.department_id, step.tier)
        await store.record_page_event(conn, incident.incident_id, at=now, state=incident.state, detail=detail)
        for user_id in reachable:
            person = people[user_id]
            mine = [p for p in points if p.user_id == user_id]
            base = _page_for(incident, step, person, where.get(incident.patient_id), ctx)
            if not mine:
                delivery_id = uuid.uuid4()
                rows.append(_delivery(delivery_id, incident, step, person, None, NO_CHANNEL, None, now,
                                      base, status="failed", error="no contact point for this user"))
                log.error("alerting.unreachable incident=%s user=%s", incident.incident_id, person.username)
                continue
            for point in mine:
                delivery_id = uuid.uuid4()
                rows.append(_delivery(delivery_id, incident, step, person, point.channel_id, point.kind,
                                      point.address or None, now, base))
    await store.insert_deliveries(conn, rows)
    return rows


def _page_for(incident: Incident, step: Step, person: Person, place: Place | None, ctx: Directory) -> Page:
    site = ctx.sites.get(incident.site_id)
    department = ctx.book.department(incident.site_id, incident.department_id)
    return Page(
        delivery_id=uuid.UUID(int=0), incident_id=incident.incident_id, site_id=incident.site_id,
        patient_id=incident.patient_id, rule=incident.rule, category=incident.category, priority=incident.priority,
        state=incident.state, alarm_state=incident.alarm_state, message=incident.message,
        raised_at=incident.raised_at, step=step.number, round=step.round, tier=step.tier,
        recipient_user_id=person.user_id, recipient_username=person.username,
        recipient_name=person.display_name or person.username,
        site_name=(site.name_zh or site.name) if site else None, timezone=site.timezone if site else "Asia/Shanghai",
        department=(department.name_zh or department.name) if department else None,
        ward=place.ward if place else None, bed=place.bed if place else None, kind=incident.kind,
        value=incident.value, news2_total=incident.news2_total, link=ctx.link(incident.incident_id),
    )


def _delivery(delivery_id: uuid.UUID, incident: Incident, step: Step, person: Person, channel_id: uuid.UUID | None,
              kind: str, address: str | None, now: dt.datetime, base: Page, *, status: str = "pending",
              error: str | None = None) -> store.DeliveryRow:
    page = replace(base, delivery_id=delivery_id)
    return store.DeliveryRow(
        delivery_id=delivery_id, incident_id=incident.incident_id, channel_id=channel_id, channel_kind=kind,
        recipient_id=person.user_id, address=address, step=step.number, tier=step.tier, status=status,
        attempts=0, last_error=error, payload=page.to_dict(), created_at=now,
        next_attempt_at=now if status == "pending" else None, finished_at=None if status == "pending" else now,
    )


async def _record(conn: Conn, outcome: Outcome, *, user: User | None) -> None:
    """Persist changed incidents, their timeline, audit entries and dashboard pushes."""
    if not outcome.changed:
        return
    await store.save_incidents(conn, outcome.changed.values())
    await store.record_events(conn, outcome.transitions)
    last: dict[uuid.UUID, Transition] = {}
    for transition in outcome.transitions:
        incident = outcome.changed[transition.incident_id]
        await record_transition(
            conn, entity="incident", entity_id=str(transition.incident_id), from_state=transition.from_state,
            to_state=transition.to_state, actor=user if user is not None else AUDIT_SYSTEM_ACTOR,
            patient_id=incident.patient_id,
            detail={"event": transition.event.value, "rule": incident.rule, "priority": incident.priority,
                    "category": incident.category},
        )
        last[transition.incident_id] = transition
    for incident_id, transition in last.items():
        await conn.execute("SELECT pg_notify(%s, %s)",
                           (EVENTS_CHANNEL, incident_payload(outcome.changed[incident_id], transition)))
