"""Routes of recording consent: read it, record it (the requesting side), revoke it (either participant).

- `GET /api/consultations/{id}/recording-consent`: whether consent stands, and its history;
- `POST /api/consultations/{id}/recording-consent` {given_by: patient|guardian, note?}: 201 recorded,
  200 when consent already stood (the standing one is returned); 403 for the expert, 409 when no call
  can run (the consultation is not accepted or in session);
- `POST /api/consultations/{id}/recording-consent/revoke`: 200, also when nothing stood.

Non-participants get 404 (existence does not leak). Every read and write is audited with the patient.
Recording and revoking tell the site's edge at once (recording_control.py); `edge_notified` says whether
that command went out (open calls re-check within `video.revalidate_s` either way).
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, NoReturn

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from cloud.api.audit import audit
from cloud.api.auth.models import User
from cloud.api.auth.store import Conn
from cloud.api.deps import ClientIp, CurrentUser, Db
from cloud.api.errors import ApiError, ForbiddenError, InvalidParameterError, NotFoundError
from cloud.video import consent_store
from cloud.video.consent import MAX_NOTE, ConsentRefused, check_grant, check_revoke, record_flag
from cloud.video.participants import CallRefused, Participation, participation
from cloud.video.recording_control import tell_edge
from cloud.video.runtime import VideoRuntime

router = APIRouter(prefix="/api/consultations", tags=["video"])


class ConsentIn(BaseModel):
    given_by: Literal["patient", "guardian"] = "patient"
    note: str = Field(default="", max_length=MAX_NOTE)


class _Conflict(ApiError):
    status_code = 409


async def _participation(conn: Conn, consultation_id: uuid.UUID, user: User) -> Participation:
    try:
        return await participation(conn, consultation_id=consultation_id, user=user)
    except CallRefused:
        raise NotFoundError("no such consultation among yours") from None


def _raise(exc: ConsentRefused) -> NoReturn:
    if exc.status == 403:
        raise ForbiddenError(exc.detail) from None
    if exc.status == 422:
        raise InvalidParameterError("note", exc.detail, location="body") from None
    raise _Conflict(exc.detail) from None


async def _answer(conn: Conn, consultation_id: uuid.UUID, **extra: Any) -> dict[str, Any]:
    history = await consent_store.history(conn, consultation_id)
    standing = next((c for c in history if c.standing), None)
    return {"standing": standing is not None,
            "consent": consent_store.as_json(standing) if standing is not None else None,
            "history": [consent_store.as_json(c) for c in history]} | extra


@router.get("/{consultation_id}/recording-consent")
async def read_consent(consultation_id: uuid.UUID, user: CurrentUser, conn: Db, ip: ClientIp) -> dict[str, Any]:
    """Whether the patient's consent to record stands, who recorded or revoked it when, and the caller's role
    in the call (the panel offers to record consent to the requester only)."""
    found = await _participation(conn, consultation_id, user)
    answer = await _answer(conn, consultation_id, role=found.role)
    await audit(conn, "video.consent_read", user, found.patient_id, ip=ip,
                detail={"consultation_id": str(consultation_id), "standing": answer["standing"]})
    return answer


@router.post("/{consultation_id}/recording-consent", status_code=status.HTTP_201_CREATED)
async def grant_consent(consultation_id: uuid.UUID, body: ConsentIn, request: Request, response: Response,
                        user: CurrentUser, conn: Db, ip: ClientIp) -> dict[str, Any]:
    """Record the patient's consent (the requesting county doctor); the edge starts recording a running call."""
    found = await _participation(conn, consultation_id, user)
    try:
        check_grant(role=found.role, state=found.state, note=body.note)
    except ConsentRefused as exc:
        _raise(exc)
    async with conn.transaction():
        consent, created = await consent_store.grant(conn, consultation_id=consultation_id, user_id=user.user_id,
                                                     given_by=body.given_by, note=body.note)
        await audit(conn, "video.consent_grant", user, found.patient_id, ip=ip,
                    detail={"consultation_id": str(consultation_id), "consent_id": str(consent.consent_id),
                            "given_by": consent.given_by, "new": created})
    if not created:
        response.status_code = status.HTTP_200_OK
    runtime: VideoRuntime = request.app.state.video
    record, consent_id = record_flag(consent)
    notified = await tell_edge(conn, runtime, site_id=found.site_id, consultation_id=consultation_id, record=record,
                               consent_id=consent_id)
    return await _answer(conn, consultation_id, edge_notified=notified)


@router.post("/{consultation_id}/recording-consent/revoke")
async def revoke_consent(consultation_id: uuid.UUID, request: Request, user: CurrentUser, conn: Db,
                         ip: ClientIp) -> dict[str, Any]:
    """Revoke consent (either participant); the edge stops recording at once."""
    found = await _participation(conn, consultation_id, user)
    try:
        check_revoke(role=found.role)
    except ConsentRefused as exc:
        _raise(exc)
    async with conn.transaction():
        revoked = await consent_store.revoke(conn, consultation_id=consultation_id, user_id=user.user_id)
        await audit(conn, "video.consent_revoke", user, found.patient_id, ip=ip,
                    detail={"consultation_id": str(consultation_id),
                            "consent_id": str(revoked.consent_id) if revoked else None})
    runtime: VideoRuntime = request.app.state.video
    notified = await tell_edge(conn, runtime, site_id=found.site_id, consultation_id=consultation_id, record=False,
                               consent_id=None)
    return await _answer(conn, consultation_id, edge_notified=notified)
