"""SLA timers of a consultation (pure): when to remind an expert, expire an offer, and escalate.

Two clocks per consultation. The response clock starts when an offer is made: a reminder at
`reminder_fraction` of the response target, and at the target the offer expires (the service re-offers it to
the next match). The overall clock starts at the request: past it with no report the consultation is marked
breached and the admins are told (once). Targets depend on urgency.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from cloud.consult.workflow import State
from cloud.triage.lexicon import Urgency

# States the overall clock runs in (after the request, before the report).
_OVERALL_RUNNING = frozenset({State.REQUESTED, State.OFFERED, State.ACCEPTED, State.IN_SESSION, State.ESCALATED})


@dataclass(frozen=True)
class SlaPolicy:
    """Targets in seconds per urgency (`TELEMED_CONSULT__*`): response = offer to acceptance, overall = request
    to submitted report."""

    routine_response_s: int = 15 * 60
    urgent_response_s: int = 10 * 60
    emergency_response_s: int = 5 * 60
    routine_overall_s: int = 24 * 3600
    urgent_overall_s: int = 4 * 3600
    emergency_overall_s: int = 3600
    reminder_fraction: float = 0.5

    def __post_init__(self) -> None:
        for urgency in Urgency:
            if self.response_s(urgency) < 1 or self.overall_s(urgency) < self.response_s(urgency):
                raise ValueError(f"{urgency.value}: need 1 <= response_s <= overall_s")
        if not 0.0 < self.reminder_fraction < 1.0:
            raise ValueError("reminder_fraction must lie strictly between 0 and 1")

    def response_s(self, urgency: Urgency) -> int:
        return int(getattr(self, f"{urgency.value}_response_s"))

    def overall_s(self, urgency: Urgency) -> int:
        return int(getattr(self, f"{urgency.value}_overall_s"))

    def response(self, urgency: Urgency) -> dt.timedelta:
        return dt.timedelta(seconds=self.response_s(urgency))

    def reminder(self, urgency: Urgency) -> dt.timedelta:
        return self.response(urgency) * self.reminder_fraction

    def overall(self, urgency: Urgency) -> dt.timedelta:
        return dt.timedelta(seconds=self.overall_s(urgency))


@dataclass(frozen=True, slots=True)
class OfferClock:
    """The pending offer's timer state."""

    offer_id: uuid.UUID
    offered_at: dt.datetime
    reminded: bool


@dataclass(frozen=True, slots=True)
class ConsultClock:
    """What the timers need to know about one consultation."""

    consultation_id: uuid.UUID
    state: State
    urgency: Urgency
    requested_at: dt.datetime | None
    breached: bool
    offer: OfferClock | None


@dataclass(frozen=True, slots=True)
class Remind:
    consultation_id: uuid.UUID
    offer_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Expire:
    consultation_id: uuid.UUID
    offer_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Breach:
    consultation_id: uuid.UUID


SlaAction = Remind | Expire | Breach


@dataclass(frozen=True, slots=True)
class Deadlines:
    """When the running clocks fire (None when a clock is not running)."""

    remind_at: dt.datetime | None
    respond_by: dt.datetime | None
    overall_by: dt.datetime | None


def deadlines(clock: ConsultClock, policy: SlaPolicy) -> Deadlines:
    """The reminder, response and overall deadlines of `clock`."""
    offer = clock.offer if clock.state is State.OFFERED else None
    overall = clock.requested_at is not None and clock.state in _OVERALL_RUNNING
    return Deadlines(
        remind_at=offer.offered_at + policy.reminder(clock.urgency) if offer else None,
        respond_by=offer.offered_at + policy.response(clock.urgency) if offer else None,
        overall_by=clock.requested_at + policy.overall(clock.urgency)
        if overall and clock.requested_at is not None else None,
    )


def due_actions(clock: ConsultClock, *, now: dt.datetime, policy: SlaPolicy) -> list[SlaAction]:
    """What the scheduler must do for `clock` at `now`. An expiry supersedes a reminder not yet sent (the
    expert gets no reminder for an offer already gone); a breach is reported once."""
    actions: list[SlaAction] = []
    due = deadlines(clock, policy)
    if clock.offer is not None and due.respond_by is not None and due.remind_at is not None:
        if now >= due.respond_by:
            actions.append(Expire(clock.consultation_id, clock.offer.offer_id))
        elif now >= due.remind_at and not clock.offer.reminded:
            actions.append(Remind(clock.consultation_id, clock.offer.offer_id))
    if not clock.breached and due.overall_by is not None and now >= due.overall_by:
        actions.append(Breach(clock.consultation_id))
    return actions


def next_wakeup(clocks: list[ConsultClock], *, now: dt.datetime, policy: SlaPolicy) -> dt.datetime | None:
    """The earliest future deadline among `clocks` (a scheduler may sleep until then)."""
    moments: list[dt.datetime] = []
    for clock in clocks:
        due = deadlines(clock, policy)
        if due.remind_at is not None and clock.offer is not None and not clock.offer.reminded:
            moments.append(due.remind_at)
        moments += [m for m in (due.respond_by, None if clock.breached else due.overall_by) if m is not None]
    future = [m for m in moments if m > now]
    return min(future) if future else None
