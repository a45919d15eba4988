"""SLA timers: reminders at half the response target, expiry at the target, one breach past the overall SLA."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from cloud.consult.sla import (
    Breach,
    ConsultClock,
    Expire,
    OfferClock,
    Remind,
    SlaPolicy,
    deadlines,
    due_actions,
    next_wakeup,
)
from cloud.consult.workflow import State
from cloud.triage.lexicon import Urgency

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
CID = uuid.UUID(int=1)
OID = uuid.UUID(int=2)
POLICY = SlaPolicy()


def offered(*, at: dt.datetime = T0, reminded: bool = False, urgency: Urgency = Urgency.ROUTINE,
            breached: bool = False) -> ConsultClock:
    return ConsultClock(CID, State.OFFERED, urgency, requested_at=T0, breached=breached,
                        offer=OfferClock(OID, at, reminded))


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.mark.parametrize("minutes, expected", [
    (0, []),
    (7.49, []),
    (7.5, [Remind(CID, OID)]),  # 50 % of the 15-minute routine target
    (14.99, [Remind(CID, OID)]),
    (15, [Expire(CID, OID)]),  # expiry supersedes a reminder never sent
])
def test_routine_offer_timers(minutes: float, expected: list[object]) -> None:
    assert due_actions(offered(), now=at(minutes), policy=POLICY) == expected


def test_a_reminder_is_sent_once() -> None:
    assert due_actions(offered(reminded=True), now=at(10), policy=POLICY) == []


def test_targets_depend_on_urgency() -> None:
    emergency = offered(urgency=Urgency.EMERGENCY)
    assert due_actions(emergency, now=at(2.5), policy=POLICY) == [Remind(CID, OID)]
    assert due_actions(emergency, now=at(5), policy=POLICY) == [Expire(CID, OID)]
    custom = SlaPolicy(emergency_response_s=120, reminder_fraction=0.25)
    assert due_actions(emergency, now=at(0.5), policy=custom) == [Remind(CID, OID)]
    assert due_actions(emergency, now=at(2), policy=custom) == [Expire(CID, OID)]


def test_the_overall_sla_breaches_once_and_only_while_running() -> None:
    accepted = ConsultClock(CID, State.ACCEPTED, Urgency.URGENT, requested_at=T0, breached=False, offer=None)
    assert due_actions(accepted, now=at(239), policy=POLICY) == []
    assert due_actions(accepted, now=at(240), policy=POLICY) == [Breach(CID)]
    already = ConsultClock(CID, State.ACCEPTED, Urgency.URGENT, requested_at=T0, breached=True, offer=None)
    assert due_actions(already, now=at(500), policy=POLICY) == []
    reported = ConsultClock(CID, State.REPORT_SUBMITTED, Urgency.URGENT, requested_at=T0, breached=False, offer=None)
    assert due_actions(reported, now=at(500), policy=POLICY) == []


def test_an_offer_made_late_expires_and_the_overall_sla_breaches_together() -> None:
    late = offered(at=at(1430), urgency=Urgency.ROUTINE)
    assert due_actions(late, now=at(1445), policy=POLICY) == [Expire(CID, OID), Breach(CID)]


def test_deadlines_and_next_wakeup() -> None:
    clock = offered(at=at(1))
    due = deadlines(clock, POLICY)
    assert (due.remind_at, due.respond_by, due.overall_by) == (at(8.5), at(16), at(24 * 60))
    assert next_wakeup([clock], now=at(2), policy=POLICY) == at(8.5)
    assert next_wakeup([offered(at=at(1), reminded=True)], now=at(2), policy=POLICY) == at(16)
    draft = ConsultClock(CID, State.DRAFT, Urgency.ROUTINE, requested_at=None, breached=False, offer=None)
    assert deadlines(draft, POLICY) == type(due)(None, None, None)


def test_policies_must_be_coherent() -> None:
    with pytest.raises(ValueError):
        SlaPolicy(urgent_response_s=5 * 3600)  # a response target beyond the overall target
    with pytest.raises(ValueError):
        SlaPolicy(reminder_fraction=1.0)
