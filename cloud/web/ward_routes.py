"""Route: GET /api/ward/overview, the dashboard's ward view (site-scoped; audited per session and window)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from cloud.api.deps import ClientIp, CurrentSession, Db, Scope, VitalsReader
from cloud.web import ward
from cloud.web.audit_window import AuditWindow
from cloud.web.schemas import WardOut

router = APIRouter(prefix="/api/ward", tags=["dashboard"])


class WardResponse(Response):
    """The overview's JSON (cloud.web.ward.render_json); `response_model` still documents the shape."""

    media_type = "application/json"

    def render(self, content: object) -> bytes:
        assert isinstance(content, dict)
        return ward.render_json(content)


def audit_window(request: Request) -> AuditWindow:
    """The process's record of which patients each session was last audited for (created on first use)."""
    window: AuditWindow | None = getattr(request.app.state, "ward_audit_window", None)
    if window is None:
        window = AuditWindow()
        request.app.state.ward_audit_window = window
    return window


@router.get("/overview", response_model=WardOut)
async def overview(
    request: Request, user: VitalsReader, session: CurrentSession, scope: Scope, conn: Db, ip: ClientIp,
    site: Annotated[str | None, Query(min_length=1, max_length=64, description="only this site")] = None,
) -> WardResponse:
    """Patients with latest vitals, NEWS2 and device status, highest risk first."""
    return WardResponse(await ward.ward_overview(conn, user=user, session=session.token_hash, scope=scope,
                                                  site_id=site, ip=ip, seen=audit_window(request)))
