"""Consent to record a consultation's call (pure): who may record it, who may withdraw it, what stands.

Recording is off by default. The county doctor who is with the patient (the requesting side) asks the
patient, or a guardian for a patient who cannot answer, and records the answer; from then on calls of the
consultation are recorded until consent is revoked. Either side may revoke it (the patient may change
their mind in front of either doctor; stopping a recording must never wait for the other party). A
consent is recorded only while a call can run (accepted or in session). History is kept: a new consent
after a revocation is a new record.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from cloud.video.participants import CALL_STATES, CallRole

GivenBy = Literal["patient", "guardian"]
MAX_NOTE: Final = 500


class ConsentRefused(Exception):
    """The caller may not do this to the consent; `status` is the HTTP status (403 or 409)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Consent:
    consent_id: uuid.UUID
    consultation_id: uuid.UUID
    granted_by: uuid.UUID
    granted_at: dt.datetime
    given_by: GivenBy
    note: str
    revoked_by: uuid.UUID | None = None
    revoked_at: dt.datetime | None = None

    @property
    def standing(self) -> bool:
        return self.revoked_at is None


def standing(history: Iterable[Consent]) -> Consent | None:
    """The consent that stands now, if any."""
    return next((c for c in history if c.standing), None)


def check_grant(*, role: CallRole, state: str, note: str) -> None:
    """ConsentRefused unless `role` may record the patient's consent to a consultation in `state`."""
    if role != "requester":
        raise ConsentRefused(403, "the county doctor with the patient records the patient's consent")
    if state not in CALL_STATES:
        raise ConsentRefused(409, f"the consultation is {state}: consent is recorded for a call that can run")
    if len(note) > MAX_NOTE:
        raise ConsentRefused(422, f"the note is limited to {MAX_NOTE} characters")


def check_revoke(*, role: CallRole) -> None:
    """Every participant may revoke (the role is checked by the caller's participation already)."""
    if role not in ("requester", "expert"):
        raise ConsentRefused(403, "only the consultation's participants may revoke consent")


def record_flag(consent: Consent | None) -> tuple[bool, str | None]:
    """What the edge is told: record or not, and under which consent."""
    return (True, str(consent.consent_id)) if consent is not None and consent.standing else (False, None)
