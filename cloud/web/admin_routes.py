"""Routes: read-only admin views the dashboard needs (edges, devices, statistics); admin only."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from cloud.api.auth.models import Role, User
from cloud.api.deps import Db, require_roles
from cloud.api.errors import InvalidParameterError
from cloud.consult.policy import load_consult_policy
from cloud.web import admin
from cloud.web.schemas import DevicesOut, EdgesOut, StatsOut

router = APIRouter(prefix="/api/admin", tags=["dashboard"])

Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]


@router.get("/edges", response_model=EdgesOut)
async def edges(user: Admin, conn: Db) -> EdgesOut:
    """Edge nodes: registration, online state, last seen, outbox depth per lane."""
    return EdgesOut(edges=await admin.edges(conn))


@router.get("/devices", response_model=DevicesOut)
async def devices(user: Admin, conn: Db) -> DevicesOut:
    """Devices with site, state, battery and current patient."""
    return DevicesOut(devices=await admin.devices(conn))


@router.get("/stats", response_model=StatsOut)
async def stats(
    user: Admin, conn: Db,
    days: Annotated[int, Query(ge=1, le=admin.MAX_DAYS)] = 14,
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the day boundaries")] = "Asia/Shanghai",
) -> StatsOut:
    """Consultation volume, response time against the SLA and alert counts by priority, per day."""
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidParameterError("tz", "unknown time zone") from None
    return await admin.stats(conn, days=days, timezone=tz, now=dt.datetime.now(dt.UTC),
                             sla=load_consult_policy().sla)
