"""Recording consent (pure): who may record and revoke it, what stands, and what the edge is told."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from cloud.video import messages
from cloud.video.consent import Consent, ConsentRefused, check_grant, check_revoke, record_flag, standing

T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)
CONSULTATION = uuid.UUID(int=7)
DOCTOR, EXPERT = uuid.UUID(int=1), uuid.UUID(int=2)


def consent(n: int, *, revoked: bool = False) -> Consent:
    return Consent(consent_id=uuid.UUID(int=100 + n), consultation_id=CONSULTATION, granted_by=DOCTOR,
                   granted_at=T0 + dt.timedelta(minutes=n), given_by="patient", note="",
                   revoked_by=EXPERT if revoked else None,
                   revoked_at=T0 + dt.timedelta(minutes=n, seconds=30) if revoked else None)


def test_the_county_doctor_records_consent_while_a_call_can_run() -> None:
    check_grant(role="requester", state="in_session", note="verbal, in front of the nurse")
    check_grant(role="requester", state="accepted", note="")


@pytest.mark.parametrize("role, state, note, status", [
    ("expert", "in_session", "", 403),  # the expert is not with the patient
    ("requester", "requested", "", 409),  # no call can run before an expert accepted
    ("requester", "closed", "", 409),
    ("requester", "in_session", "x" * 501, 422),
])
def test_consent_is_refused_to_others_outside_a_call_and_with_an_overlong_note(role: str, state: str, note: str,
                                                                                  status: int) -> None:
    with pytest.raises(ConsentRefused) as refused:
        check_grant(role=role, state=state, note=note)  # type: ignore[arg-type]
    assert refused.value.status == status


def test_either_participant_may_revoke() -> None:
    check_revoke(role="requester")
    check_revoke(role="expert")


def test_only_an_unrevoked_consent_stands_and_tells_the_edge_to_record() -> None:
    history = [consent(2), consent(1, revoked=True)]

    assert standing(history) == consent(2)
    assert standing([consent(1, revoked=True)]) is None
    assert record_flag(consent(2)) == (True, str(uuid.UUID(int=102)))
    assert record_flag(consent(1, revoked=True)) == (False, None)
    assert record_flag(None) == (False, None)


def test_offers_carry_record_and_the_consent_only_while_it_stands() -> None:
    route = messages.CallRoute(consultation_id=str(CONSULTATION), user_id=str(EXPERT), role="expert", session="s")
    offer = messages.ClientOffer("v=0\r\n", None)

    with_consent = messages.command_args(offer, route=route, n=0, ice_servers=[], record=True, consent_id="c-1")
    without = messages.command_args(offer, route=route, n=0, ice_servers=[], record=False, consent_id="c-1")

    assert (with_consent["record"], with_consent["consent_id"]) == (True, "c-1")
    assert without["record"] is False and "consent_id" not in without
    assert messages.record_args(consultation_id="c", record=False, consent_id="c-1") == {
        "type": "record", "consultation_id": "c", "record": False}


def test_the_edges_recording_signal_reaches_the_browser_without_its_route() -> None:
    route = messages.CallRoute(consultation_id="c", user_id="u", role="expert", session="s")
    signal = {"consultation_id": "c", "user_id": "u", "session": "s", "n": 0, "type": "recording", "active": True}

    assert messages.for_browser(signal, route=route) == {"type": "recording", "n": 0, "active": True}
