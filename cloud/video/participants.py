"""Who may join a consultation's call, and which edge serves it.

Participants are the consultation's requesting side (county doctors of the patient's site: the
consultation belongs to the site's team, cloud/consult/access.py) and its assigned expert, while the
consultation is accepted or in session. An expert who only holds a pending offer, an admin, and everyone
else are refused; so is a consultation that does not exist (refused the same way, so that its existence
does not leak).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, Literal

from cloud.api.auth.models import User
from cloud.api.auth.store import Conn
from cloud.consult import store
from cloud.consult.access import capacities
from cloud.consult.workflow import Actor, State

CALL_STATES: Final = frozenset({State.ACCEPTED.value, State.IN_SESSION.value})
CallRole = Literal["requester", "expert"]


class CallRefused(Exception):
    """The caller may not join; `status` is the HTTP status of the refusal (403 or 409)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class CallAccess:
    consultation_id: uuid.UUID
    site_id: str
    patient_id: str
    role: CallRole


@dataclass(frozen=True, slots=True)
class Participation:
    """The caller's place in a consultation, whatever its state (recordings outlive the call)."""

    consultation_id: uuid.UUID
    site_id: str
    patient_id: str
    state: str
    role: CallRole


async def participation(conn: Conn, *, consultation_id: uuid.UUID, user: User) -> Participation:
    """The caller's role in the consultation; CallRefused(403) for everyone else and unknown consultations."""
    consultation = await store.get_consultation(conn, consultation_id)
    if consultation is None:
        raise CallRefused(403, "only the consultation's participants may join its call")
    found = capacities(user, site_id=consultation.site_id, assigned_expert_id=consultation.assigned_expert_id,
                       pending_expert_id=None)
    role: CallRole
    if Actor.EXPERT in found:
        role = "expert"
    elif Actor.REQUESTER in found:
        role = "requester"
    else:
        raise CallRefused(403, "only the consultation's participants may join its call")
    return Participation(consultation_id=consultation.consultation_id, site_id=consultation.site_id,
                         patient_id=consultation.patient_id, state=consultation.state, role=role)


async def call_access(conn: Conn, *, consultation_id: uuid.UUID, user: User) -> CallAccess:
    """The caller's place in the consultation's call; CallRefused otherwise."""
    found = await participation(conn, consultation_id=consultation_id, user=user)
    if found.state not in CALL_STATES:
        raise CallRefused(409, f"the consultation is {found.state}: calls run once an expert accepted it")
    return CallAccess(consultation_id=found.consultation_id, site_id=found.site_id, patient_id=found.patient_id,
                      role=found.role)


async def site_edge(conn: Conn, site_id: str) -> str | None:
    """The active edge of a site that was heard from most recently (the one to relay its video)."""
    cur = await conn.execute(
        "SELECT edge_id FROM edges WHERE site_id = %s AND status = 'active'"
        " ORDER BY last_seen_at DESC NULLS LAST, created_at DESC LIMIT 1", (site_id,))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def signal_body(conn: Conn, event_id: uuid.UUID) -> object:
    """The signal of a stored edge event (for notifications cut short by NOTIFY's 8000-byte limit)."""
    cur = await conn.execute("SELECT body FROM events WHERE event_id = %s AND event_type = 'signal'", (event_id,))
    row = await cur.fetchone()
    if row is None:
        return None
    body = row[0]
    return body.get("signal") if isinstance(body, dict) else None
