"""The incident lifecycle: triggered -> acknowledged -> resolved, with timers, re-triggering and merging."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from dataclasses import replace

import pytest

from cloud.alerting.errors import IncidentTransitionError
from cloud.alerting.escalation import EscalationPolicy
from cloud.alerting.incidents import (
    TRANSITIONS,
    Actor,
    Event,
    Incident,
    alarm_event,
    apply,
    due_timer,
    open_incident,
    step_taken,
)
from proto.alerting import alert_id_for
from proto.messages import Alert

T0 = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
POLICY = EscalationPolicy()
DOCTOR = Actor("dr-primary", uuid.uuid4())


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def alarm(priority: str = "medium", *, state: str = "active", raised_s: float = 0, category: str = "clinical",
          rule: str = "news2", start_s: float = 0) -> Alert:
    return Alert(alert_id=alert_id_for("pt-1", rule, int(at(start_s).timestamp() * 1e6)), patient_id="pt-1",
                 rule=rule, priority=priority, category=category, state=state,  # type: ignore[arg-type]
                 raised_at=at(raised_s), message=f"{rule} {priority} {state}", news2_total=5)


def opened(priority: str = "medium", **kwargs: object) -> Incident:
    incident, _ = open_incident(alarm(priority, **kwargs), source="cloud", site_id="county-a", now=at(1),  # type: ignore[arg-type]
                                policy=POLICY, department_id="icu")
    return incident


def test_a_clinical_alarm_opens_a_triggered_incident_that_pages_at_once() -> None:
    incident, transitions = open_incident(alarm("medium"), source="edge", site_id="county-a", now=at(1),
                                          policy=POLICY, department_id="icu")
    assert incident.state == "triggered" and incident.alarm_state == "active"
    assert incident.next_page_at == at(1)
    assert incident.sources == {"edge"}
    assert [(t.event, t.from_state, t.to_state) for t in transitions] == [(Event.OPENED, None, "triggered")]


@pytest.mark.parametrize(("priority", "category"), [("low", "technical"), ("medium", "technical"),
                                                     ("low", "advisory"), ("low", "clinical")])
def test_technical_advisory_and_low_alarms_open_incidents_that_never_page(priority: str, category: str) -> None:
    incident = opened(priority, category=category, rule="sensor_off")
    assert incident.state == "triggered" and incident.escalation is None and incident.next_page_at is None


def test_acknowledging_stops_paging_and_starts_the_acknowledgement_timer() -> None:
    incident, transition = apply(opened("high"), Event.ACKNOWLEDGE, now=at(30), policy=POLICY, actor=DOCTOR)
    assert incident.state == "acknowledged" and incident.next_page_at is None and incident.escalation is None
    assert incident.acknowledged_by == DOCTOR and incident.acknowledged_at == at(30)
    assert incident.ack_deadline == at(30 + 900)  # high: 15 minutes
    assert (transition.from_state, transition.to_state, transition.actor) == ("triggered", "acknowledged", DOCTOR)


def test_an_acknowledgement_that_times_out_re_triggers_and_pages_from_the_first_tier_again() -> None:
    incident, _ = apply(opened("high"), Event.ACKNOWLEDGE, now=at(30), policy=POLICY, actor=DOCTOR)
    assert due_timer(incident, at(929)) is None
    assert due_timer(incident, at(930)) is Event.ACK_TIMEOUT
    incident, transition = apply(incident, Event.ACK_TIMEOUT, now=at(930), policy=POLICY)
    assert incident.state == "triggered" and incident.next_page_at == at(930) and incident.ack_deadline is None
    assert incident.escalation is not None and incident.escalation.steps_taken == 0
    assert transition.actor.name == "system"


def test_a_cleared_alarm_resolves_the_incident_after_the_hold_time_back_in_range() -> None:
    incident = opened("medium")
    event = alarm_event(incident, alarm("medium", state="cleared", raised_s=200))
    assert event is Event.CLEARED
    incident, _ = apply(incident, event, now=at(201), policy=POLICY, alert=alarm("medium", state="cleared",
                                                                                   raised_s=200), source="cloud")
    assert incident.state == "triggered" and incident.alarm_state == "cleared"
    assert incident.resolve_after == at(200 + 300)
    assert due_timer(incident, at(499)) is None
    assert due_timer(incident, at(500)) is Event.AUTO_RESOLVE
    incident, transition = apply(incident, Event.AUTO_RESOLVE, now=at(500), policy=POLICY)
    assert incident.state == "resolved" and incident.resolution == "auto" and incident.next_page_at is None
    assert transition.to_state == "resolved"


def test_resolving_by_hand_records_who_and_a_second_resolve_is_refused() -> None:
    incident, _ = apply(opened("high"), Event.RESOLVE, now=at(60), policy=POLICY, actor=DOCTOR, note="treated")
    assert incident.state == "resolved" and incident.resolution == "manual" and incident.resolved_by == DOCTOR
    with pytest.raises(IncidentTransitionError):
        apply(incident, Event.RESOLVE, now=at(61), policy=POLICY, actor=DOCTOR)
    with pytest.raises(IncidentTransitionError):
        apply(incident, Event.ACKNOWLEDGE, now=at(61), policy=POLICY, actor=DOCTOR)


def test_a_priority_rise_pages_again_even_when_acknowledged_and_reopens_a_resolved_incident() -> None:
    acknowledged, _ = apply(opened("medium"), Event.ACKNOWLEDGE, now=at(10), policy=POLICY, actor=DOCTOR)
    worse = alarm("high", raised_s=100)
    assert alarm_event(acknowledged, worse) is Event.ESCALATED
    incident, _ = apply(acknowledged, Event.ESCALATED, now=at(101), policy=POLICY, alert=worse, source="cloud")
    assert incident.state == "triggered" and incident.priority == "high" and incident.next_page_at == at(101)

    resolved, _ = apply(opened("medium"), Event.RESOLVE, now=at(10), policy=POLICY, actor=DOCTOR)
    incident, transition = apply(resolved, Event.ESCALATED, now=at(101), policy=POLICY, alert=worse,
                                 source="edge")
    assert incident.state == "triggered" and transition.detail["reopened"] is True


def test_an_improvement_updates_the_priority_without_paging_again() -> None:
    incident = step_taken(opened("high"), at=at(1), policy=POLICY)
    better = alarm("medium", raised_s=50)
    assert alarm_event(incident, better) is Event.IMPROVED
    incident, _ = apply(incident, Event.IMPROVED, now=at(51), policy=POLICY, alert=better, source="cloud")
    assert incident.priority == "medium" and incident.escalation is not None
    assert incident.escalation.steps_taken == 1 and incident.next_page_at == at(1 + 600)


def test_copies_and_older_messages_change_nothing() -> None:
    incident = opened("medium", raised_s=0)
    assert alarm_event(incident, alarm("medium", raised_s=0)) is None  # the other evaluator's copy
    newer = alarm("high", raised_s=30)
    incident, _ = apply(incident, Event.ESCALATED, now=at(31), policy=POLICY, alert=newer, source="cloud")
    assert alarm_event(incident, alarm("medium", raised_s=0)) is None  # history arriving late
    cleared = alarm("high", state="cleared", raised_s=90)
    incident, _ = apply(incident, Event.CLEARED, now=at(91), policy=POLICY, alert=cleared, source="cloud")
    assert alarm_event(incident, alarm("high", raised_s=95)) is None  # a cleared alarm id never comes back


def test_the_first_news_of_an_alarm_being_already_over_pages_nobody() -> None:
    # A backlog after an outage: raised and cleared while the uplink was down.
    incident, transitions = open_incident(alarm("high", state="cleared", raised_s=100), source="edge",
                                          site_id="county-a", now=at(4000), policy=POLICY)
    assert incident.escalation is None and incident.next_page_at is None
    assert incident.resolve_after == at(400)
    assert [t.event for t in transitions] == [Event.OPENED, Event.CLEARED]
    assert due_timer(incident, at(4000)) is Event.AUTO_RESOLVE


def test_an_alarm_out_of_a_backlog_waits_briefly_for_its_own_clearing_before_paging() -> None:
    old = alarm("high", raised_s=0)
    incident, _ = open_incident(old, source="edge", site_id="county-a", now=at(3 * 3600), policy=POLICY)
    assert incident.next_page_at == at(3 * 3600 + 15)
    cleared = alarm("high", state="cleared", raised_s=60)
    incident, _ = apply(incident, Event.CLEARED, now=at(3 * 3600 + 1), policy=POLICY, alert=cleared, source="edge")
    assert due_timer(incident, at(3 * 3600 + 2)) is Event.AUTO_RESOLVE  # resolved before the page is due
    live, _ = open_incident(alarm("high", raised_s=3 * 3600 - 5), source="edge", site_id="county-a",
                            now=at(3 * 3600), policy=POLICY)
    assert live.next_page_at == at(3 * 3600)


def test_steps_taken_schedule_the_next_one_after_the_priority_delay() -> None:
    incident = step_taken(opened("high"), at=at(1), policy=POLICY)
    assert incident.next_page_at == at(121)
    incident = step_taken(incident, at=at(121), policy=POLICY, skipped=True)
    assert incident.next_page_at == at(121)  # the head takes the empty secondary's slot


ALL_STATES = ("triggered", "acknowledged", "resolved")


@pytest.mark.parametrize(("state", "event"), [
    pair for pair in itertools.product(ALL_STATES, list(Event)) if pair not in TRANSITIONS])
def test_every_pair_outside_the_table_is_an_explicit_error(state: str, event: Event) -> None:
    incident = replace(opened("high"), state=state)  # type: ignore[arg-type]
    with pytest.raises(IncidentTransitionError):
        apply(incident, event, now=at(5), policy=POLICY, alert=alarm("high", raised_s=5), source="cloud")


def test_the_table_allows_what_the_lifecycle_needs() -> None:
    allowed = set(TRANSITIONS)
    assert ("triggered", Event.ACKNOWLEDGE) in allowed and ("acknowledged", Event.ACK_TIMEOUT) in allowed
    assert ("resolved", Event.ACKNOWLEDGE) not in allowed and ("triggered", Event.ACK_TIMEOUT) not in allowed
    assert all(rule.to in ALL_STATES for rule in TRANSITIONS.values())
