"""The consultation workflow's transition table: the happy path, re-offers, cancelling, and explicit errors."""

from __future__ import annotations

import pytest

from cloud.consult.workflow import (
    TRANSITIONS,
    Actor,
    ActorNotAllowedError,
    Event,
    State,
    UnknownTransitionError,
    available_events,
    next_state,
)

REQUESTER = frozenset({Actor.REQUESTER})
EXPERT = frozenset({Actor.EXPERT})
SYSTEM = frozenset({Actor.SYSTEM})
ADMIN = frozenset({Actor.ADMIN})


def walk(steps: list[tuple[Event, frozenset[Actor]]], start: State = State.DRAFT) -> list[State]:
    states = [start]
    for event, actors in steps:
        states.append(next_state(states[-1], event, actors))
    return states


def test_the_happy_path_runs_from_draft_to_closed() -> None:
    assert walk([
        (Event.SUBMIT, REQUESTER), (Event.OFFER, SYSTEM), (Event.ACCEPT, EXPERT), (Event.START_SESSION, EXPERT),
        (Event.SUBMIT_REPORT, EXPERT), (Event.CLOSE, REQUESTER),
    ]) == [State.DRAFT, State.REQUESTED, State.OFFERED, State.ACCEPTED, State.IN_SESSION, State.REPORT_SUBMITTED,
           State.CLOSED]


@pytest.mark.parametrize("answer, actors", [(Event.DECLINE, EXPERT), (Event.EXPIRE, SYSTEM)])
def test_a_declined_or_expired_offer_returns_to_requested_for_the_next_match(
    answer: Event, actors: frozenset[Actor],
) -> None:
    assert walk([(answer, actors), (Event.OFFER, SYSTEM)], start=State.OFFERED) == [
        State.OFFERED, State.REQUESTED, State.OFFERED]


def test_with_nobody_left_it_escalates_and_an_admin_offers_it() -> None:
    assert walk([(Event.EXPIRE, SYSTEM), (Event.ESCALATE, SYSTEM), (Event.OFFER, ADMIN)], start=State.OFFERED) == [
        State.OFFERED, State.REQUESTED, State.ESCALATED, State.OFFERED]
    with pytest.raises(ActorNotAllowedError):
        next_state(State.ESCALATED, Event.OFFER, SYSTEM)  # matching gave up: only a person may offer now


@pytest.mark.parametrize("state", [State.DRAFT, State.REQUESTED, State.OFFERED, State.ESCALATED])
def test_the_requester_may_cancel_until_an_expert_accepts(state: State) -> None:
    assert next_state(state, Event.CANCEL, REQUESTER) is State.CANCELLED


@pytest.mark.parametrize("state", [State.ACCEPTED, State.IN_SESSION, State.REPORT_SUBMITTED, State.CLOSED,
                                   State.CANCELLED])
def test_cancelling_after_acceptance_is_an_explicit_error(state: State) -> None:
    with pytest.raises(UnknownTransitionError, match=f"cannot cancel a consultation that is {state.value}"):
        next_state(state, Event.CANCEL, REQUESTER)


def test_every_pair_outside_the_table_is_refused() -> None:
    refused = [(e, s) for e in Event for s in State if (e, s) not in TRANSITIONS]
    assert len(refused) == len(Event) * len(State) - len(TRANSITIONS)
    for event, state in refused:
        with pytest.raises(UnknownTransitionError):
            next_state(state, event, frozenset(Actor))


@pytest.mark.parametrize("event, state, actors", [
    (Event.ACCEPT, State.OFFERED, REQUESTER),  # a county doctor cannot accept for the expert
    (Event.SUBMIT_REPORT, State.IN_SESSION, REQUESTER),
    (Event.EXPIRE, State.OFFERED, EXPERT),  # only the timers expire offers
    (Event.CLOSE, State.REPORT_SUBMITTED, EXPERT),  # the requesting site closes
    (Event.SUBMIT, State.DRAFT, ADMIN),
])
def test_the_wrong_party_is_refused_even_in_the_right_state(
    event: Event, state: State, actors: frozenset[Actor],
) -> None:
    with pytest.raises(ActorNotAllowedError):
        next_state(state, event, actors)


def test_terminal_states_accept_no_event() -> None:
    for state in (State.CLOSED, State.CANCELLED):
        assert available_events(state, frozenset(Actor)) == []


def test_a_breach_marks_without_moving() -> None:
    for state in (State.REQUESTED, State.OFFERED, State.ACCEPTED, State.IN_SESSION, State.ESCALATED):
        assert next_state(state, Event.BREACH, SYSTEM) is state
    with pytest.raises(UnknownTransitionError):
        next_state(State.REPORT_SUBMITTED, Event.BREACH, SYSTEM)


def test_available_events_are_what_the_party_may_do_now() -> None:
    assert available_events(State.OFFERED, EXPERT) == [Event.ACCEPT, Event.DECLINE]
    assert available_events(State.OFFERED, REQUESTER) == [Event.CANCEL]
    assert available_events(State.ACCEPTED, REQUESTER | EXPERT) == [Event.START_SESSION]
    assert available_events(State.REPORT_SUBMITTED, ADMIN) == [Event.CLOSE]
