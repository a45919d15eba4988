"""Routes: admins browse the audit log (`GET /api/audit`) and read the chain head to anchor it elsewhere."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from cloud.api.audit import access_draft
from cloud.api.auth.models import Role, User
from cloud.api.deps import ClientIp, Db, require_roles
from cloud.api.errors import InvalidParameterError, NotFoundError
from cloud.audit import store

router = APIRouter(prefix="/api/audit", tags=["audit"])

Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]


class AuditEntryOut(BaseModel):
    seq: int
    at: dt.datetime
    user_id: uuid.UUID | None
    username: str
    event: str
    patient_id: str | None
    entity: str | None
    entity_id: str | None
    detail: dict[str, Any]
    ip: str | None
    entry_hash: str | None = Field(description="hex SHA-256; null for a row not yet sealed")


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next_before: int | None = Field(description="pass as `before` for the next (older) page; null on the last")


class AuditHeadOut(BaseModel):
    seq: int
    entry_hash: str


def entry_out(row: store.AuditRow) -> AuditEntryOut:
    entry, draft = row.entry, row.entry.draft
    return AuditEntryOut(
        seq=entry.seq, at=entry.at, user_id=draft.user_id, username=draft.username, event=draft.event,
        patient_id=draft.patient_id, entity=draft.entity, entity_id=draft.entity_id, detail=dict(draft.detail),
        ip=draft.ip, entry_hash=row.entry_hash.hex() if row.entry_hash is not None else None,
    )


@router.get("", response_model=AuditPageOut)
async def browse(
    admin: Admin, conn: Db, ip: ClientIp,
    patient: Annotated[str | None, Query(max_length=64, description="pseudonymous patient id")] = None,
    user: Annotated[str | None, Query(max_length=64, description="username or user id")] = None,
    event: Annotated[str | None, Query(max_length=128, description="exact, or a prefix ending in *")] = None,
    entity: Annotated[str | None, Query(max_length=64)] = None,
    entity_id: Annotated[str | None, Query(max_length=128)] = None,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
    before: Annotated[int | None, Query(ge=1)] = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPageOut:
    """Audit entries, newest first, filtered; paged with `before`. Browsing is itself audited."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidParameterError(name, "must include a UTC offset")
    query = store.AuditQuery(patient_id=patient, user=user, event=event, entity=entity, entity_id=entity_id,
                             since=since, until=until, before=before, limit=limit)
    filters = {"user": user, "event": event, "entity": entity, "entity_id": entity_id, "before": before,
               "since": since.isoformat() if since else None, "until": until.isoformat() if until else None}
    rows = await store.search(conn, query)  # before this browse's own entry, so a page shows the log as it was
    await store.append(conn, [access_draft("audit.browse", admin, patient, ip=ip, detail={
        k: v for k, v in filters.items() if v is not None})])
    return AuditPageOut(entries=[entry_out(r) for r in rows],
                        next_before=rows[-1].entry.seq if len(rows) == limit else None)


@router.get("/head", response_model=AuditHeadOut)
async def head(admin: Admin, conn: Db) -> AuditHeadOut:
    """The chain's last entry and hash: record it outside the database to anchor `audit verify --anchor`."""
    found = await store.read_head_async(conn)
    if found is None:
        raise NotFoundError("the audit chain is empty")
    return AuditHeadOut(seq=found.seq, entry_hash=found.entry_hash.hex())
