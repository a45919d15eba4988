"""The consultation workflow as a transition table `(event, state) -> (next state, who may fire it)`.

Pure: no I/O. The happy path is draft -> requested -> offered -> accepted -> in_session -> report_submitted
-> closed. A declined or expired offer returns the consultation to `requested`, from where the service offers
it to the next-ranked expert (`offer`) or, with nobody left, escalates it to the admins (`escalate`), who may
offer it to an expert of their choice. The requester may cancel until an expert has accepted. `breach` marks
an overall SLA breach without changing the state. Any pair missing from the table is an explicit error, as in
the DICOM upper-layer state machine (PS3.8 section 9.2), never a silent no-op.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class State(enum.StrEnum):
    """Where a consultation stands."""

    DRAFT = "draft"
    REQUESTED = "requested"  # waiting for an offer to be made (transient between offers)
    OFFERED = "offered"  # one expert holds the offer
    ACCEPTED = "accepted"
    IN_SESSION = "in_session"
    REPORT_SUBMITTED = "report_submitted"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    ESCALATED = "escalated"  # nobody left to offer it to: the admins must act


class Event(enum.StrEnum):
    """What can happen to a consultation."""

    SUBMIT = "submit"
    OFFER = "offer"
    ACCEPT = "accept"
    DECLINE = "decline"
    EXPIRE = "expire"
    ESCALATE = "escalate"
    START_SESSION = "start_session"
    SUBMIT_REPORT = "submit_report"
    CLOSE = "close"
    CANCEL = "cancel"
    BREACH = "breach"


class Actor(enum.StrEnum):
    """In which capacity a party acts on one consultation."""

    REQUESTER = "requester"  # a county doctor of the patient's site
    EXPERT = "expert"  # the expert holding the offer, or the assigned one
    ADMIN = "admin"
    SYSTEM = "system"  # matching and the SLA scheduler


@dataclass(frozen=True, slots=True)
class Transition:
    """Where an event leads from one state, and who may fire it."""

    target: State
    actors: frozenset[Actor]


class WorkflowError(Exception):
    """An event that cannot happen now."""

    def __init__(self, event: Event, state: State, message: str) -> None:
        super().__init__(message)
        self.event = event
        self.state = state


class UnknownTransitionError(WorkflowError):
    """The (event, state) pair is not in the table: the consultation is in the wrong state for it."""

    def __init__(self, event: Event, state: State) -> None:
        super().__init__(event, state, f"cannot {event.value} a consultation that is {state.value}")


class ActorNotAllowedError(WorkflowError):
    """The pair exists, but not for the capacities the caller holds."""

    def __init__(self, event: Event, state: State, actors: frozenset[Actor]) -> None:
        names = ", ".join(sorted(a.value for a in actors)) or "nobody"
        super().__init__(event, state, f"{names} may not {event.value} a consultation that is {state.value}")


def _t(target: State, *actors: Actor) -> Transition:
    return Transition(target, frozenset(actors))


_CANCELLABLE = (State.DRAFT, State.REQUESTED, State.OFFERED, State.ESCALATED)
_RUNNING = (State.REQUESTED, State.OFFERED, State.ACCEPTED, State.IN_SESSION, State.ESCALATED)

TRANSITIONS: Mapping[tuple[Event, State], Transition] = MappingProxyType({
    (Event.SUBMIT, State.DRAFT): _t(State.REQUESTED, Actor.REQUESTER),
    (Event.OFFER, State.REQUESTED): _t(State.OFFERED, Actor.SYSTEM),
    (Event.OFFER, State.ESCALATED): _t(State.OFFERED, Actor.ADMIN),
    (Event.ACCEPT, State.OFFERED): _t(State.ACCEPTED, Actor.EXPERT),
    (Event.DECLINE, State.OFFERED): _t(State.REQUESTED, Actor.EXPERT),
    (Event.EXPIRE, State.OFFERED): _t(State.REQUESTED, Actor.SYSTEM),
    (Event.ESCALATE, State.REQUESTED): _t(State.ESCALATED, Actor.SYSTEM),
    (Event.START_SESSION, State.ACCEPTED): _t(State.IN_SESSION, Actor.EXPERT, Actor.REQUESTER),
    (Event.SUBMIT_REPORT, State.IN_SESSION): _t(State.REPORT_SUBMITTED, Actor.EXPERT),
    (Event.CLOSE, State.REPORT_SUBMITTED): _t(State.CLOSED, Actor.REQUESTER, Actor.ADMIN),
    **{(Event.CANCEL, s): _t(State.CANCELLED, Actor.REQUESTER, Actor.ADMIN) for s in _CANCELLABLE},
    **{(Event.BREACH, s): _t(s, Actor.SYSTEM) for s in _RUNNING},
})

TERMINAL: frozenset[State] = frozenset({State.CLOSED, State.CANCELLED})
# States in which an expert is assigned and the consultation counts towards their load.
ASSIGNED: frozenset[State] = frozenset({State.ACCEPTED, State.IN_SESSION})


def next_state(state: State, event: Event, actors: frozenset[Actor]) -> State:
    """The state `event` leads to from `state` when fired by a party holding `actors`; raises otherwise."""
    found = TRANSITIONS.get((event, state))
    if found is None:
        raise UnknownTransitionError(event, state)
    if found.actors.isdisjoint(actors):
        raise ActorNotAllowedError(event, state, actors)
    return found.target


def available_events(state: State, actors: frozenset[Actor]) -> list[Event]:
    """The events a party holding `actors` may fire now (for the dashboard's buttons), in table order."""
    return [event for (event, source), t in TRANSITIONS.items()
            if source is state and not t.actors.isdisjoint(actors) and event is not Event.BREACH]
