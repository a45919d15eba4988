"""Routes: incidents (list, detail and timeline, acknowledge, resolve), who is on call, and the admin side
(departments, rotations, overrides, escalation policies, channels, contact points, the delivery log).

Incidents are site-scoped like patients (an incident outside the caller's sites is not found). Every
clinical role reads them; on-call doctors and county doctors of the site acknowledge and resolve; admins do
everything. Reads of incidents are audited; transitions go to the audit trail with the incident change.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable
from typing import Annotated, Literal, TypeVar

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Response

from cloud.alerting import directory, store
from cloud.alerting.channel_secrets import seal_config
from cloud.alerting.directory import SITE_WIDE, ChannelRow
from cloud.alerting.errors import ChannelConfigError, IncidentTransitionError, PolicyError, ScheduleError
from cloud.alerting.escalation import EscalationPolicy
from cloud.alerting.incidents import Event, Incident
from cloud.alerting.notify.channels import build_channel, redacted
from cloud.alerting.oncall import Department, Override, Rotation, Shift
from cloud.alerting.schemas import (
    ActionIn,
    AlarmMessageOut,
    ChannelIn,
    ChannelOut,
    ContactIn,
    ContactOut,
    DeliveryListOut,
    DeliveryOut,
    DepartmentIn,
    DepartmentOnCallOut,
    DepartmentOut,
    IncidentDetailOut,
    IncidentListOut,
    IncidentOut,
    OnCallNowOut,
    OverrideIn,
    OverrideOut,
    PersonOut,
    PolicyIn,
    PolicyOut,
    RotationIn,
    RotationOut,
    ShiftOut,
    TierOut,
    TimelineEventOut,
)
from cloud.alerting.workflow import act, load_directory
from cloud.api.audit import audit, audit_many
from cloud.api.auth.models import Role, User
from cloud.api.auth.permissions import READ_VITALS
from cloud.api.auth.scoping import SiteScope
from cloud.api.deps import ClientIp, Db, Scope, require_roles
from cloud.api.errors import ApiError, InvalidParameterError, NotFoundError
from cloud.api.schemas import ModelResponse
from cloud.identity.routes import IdentityKeys

router = APIRouter(tags=["alerting"])
T = TypeVar("T")

# Who acknowledges and resolves incidents (of their own sites): on-call and county doctors, and admins.
HANDLE_INCIDENTS: frozenset[Role] = frozenset({Role.ADMIN, Role.ON_CALL, Role.COUNTY_DOCTOR})

Reader = Annotated[User, Depends(require_roles(*READ_VITALS))]
Handler = Annotated[User, Depends(require_roles(*HANDLE_INCIDENTS))]
Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]
IncidentId = Annotated[uuid.UUID, Path()]
SiteId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]


class ConflictError(ApiError):
    """The incident's state does not allow the action (resolving a resolved incident...)."""

    status_code = 409


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _visible(conn: Db, incident_id: uuid.UUID, scope: SiteScope) -> Incident:
    incident = await store.get_incident(conn, incident_id)
    if incident is None or not scope.allows(incident.site_id):
        raise NotFoundError("incident not found")
    return incident


# --- incidents ---------------------------------------------------------------------------------------------------


@router.get("/api/incidents", response_model=IncidentListOut)
async def list_incidents(
    user: Reader, scope: Scope, conn: Db, ip: ClientIp,
    state: Annotated[Literal["triggered", "acknowledged", "resolved"] | None, Query()] = None,
    priority: Annotated[Literal["high", "medium", "low"] | None, Query()] = None,
    patient: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    category: Annotated[Literal["clinical", "technical", "advisory"] | None, Query()] = None,
    site: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    before: Annotated[dt.datetime | None, Query(description="opened before (paging): RFC 3339")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> ModelResponse:
    """Incidents of the caller's sites, newest first, filtered by state, priority, patient, category, site."""
    found = await store.list_incidents(conn, scope, store.IncidentFilter(
        state=state, priority=priority, patient_id=patient, category=category, site_id=site, before=before,
        limit=limit))
    await audit_many(conn, "incidents.list", user, sorted({i.patient_id for i in found}), ip=ip)
    return ModelResponse(IncidentListOut(incidents=[IncidentOut.of(i) for i in found]))


@router.get("/api/incidents/{incident_id}", response_model=IncidentDetailOut)
async def incident_detail(incident_id: IncidentId, user: Reader, scope: Scope, conn: Db, ip: ClientIp
                          ) -> ModelResponse:
    """One incident with its timeline (transitions and pages), alarm messages and deliveries."""
    incident = await _visible(conn, incident_id, scope)
    events = await store.timeline(conn, incident_id)
    messages = await store.messages(conn, incident_id)
    deliveries = await store.list_deliveries(conn, scope=scope, incident_id=incident_id, limit=500)
    await audit(conn, "incidents.read", user, incident.patient_id, detail={"incident_id": str(incident_id)}, ip=ip)
    return ModelResponse(IncidentDetailOut(
        incident=IncidentOut.of(incident),
        timeline=[TimelineEventOut(**e) for e in events],
        messages=[AlarmMessageOut(**m) for m in messages],
        deliveries=[_delivery_out(d) for d in deliveries],
    ))


async def _act(conn: Db, incident_id: uuid.UUID, event: Event, user: User, scope: SiteScope,
               note: str | None) -> IncidentOut:
    await _visible(conn, incident_id, scope)
    ctx = await load_directory(conn, now=_now())
    try:
        async with conn.transaction():
            updated = await act(conn, incident_id, event, user=user, now=_now(), ctx=ctx, note=note)
    except IncidentTransitionError as exc:
        raise ConflictError(str(exc)) from None
    if updated is None:
        raise NotFoundError("incident not found")
    return IncidentOut.of(updated)


@router.post("/api/incidents/{incident_id}/acknowledge", response_model=IncidentOut)
async def acknowledge(incident_id: IncidentId, user: Handler, scope: Scope, conn: Db,
                      body: ActionIn | None = None) -> IncidentOut:
    """Take the incident: paging stops; it pages again if still open when the acknowledgement times out."""
    return await _act(conn, incident_id, Event.ACKNOWLEDGE, user, scope, body.note if body else None)


@router.post("/api/incidents/{incident_id}/resolve", response_model=IncidentOut)
async def resolve(incident_id: IncidentId, user: Handler, scope: Scope, conn: Db,
                  body: ActionIn | None = None) -> IncidentOut:
    """Close the incident by hand."""
    return await _act(conn, incident_id, Event.RESOLVE, user, scope, body.note if body else None)


# --- on call now -----------------------------------------------------------------------------------------------


@router.get("/api/oncall/now", response_model=OnCallNowOut)
async def oncall_now(user: Reader, scope: Scope, conn: Db,
                     site: Annotated[str, Query(min_length=1, max_length=64)],
                     at: Annotated[dt.datetime | None, Query(description="default now")] = None) -> OnCallNowOut:
    """Who is on call now and next at a site, per department and tier, and each department's head."""
    if not scope.allows(site):
        raise NotFoundError("site not found")
    when = at or _now()
    if when.tzinfo is None:
        raise InvalidParameterError("at", "give a time zone offset")
    book = await directory.load_book(conn, now=when, site_id=site)
    user_ids = {d.head_user_id for d in book.departments if d.head_user_id}
    tiers = []
    for department in book.departments:
        for tier in ("primary", "secondary"):
            who = book.who(site, department.department_id, tier, when)
            tiers.append((department.department_id, who))
            user_ids.update(s.user_id for s in (who.now, who.next) if s is not None)
    people = await directory.people(conn, user_ids)

    def person(user_id: uuid.UUID | None) -> PersonOut | None:
        if user_id is None:
            return None
        p = people.get(user_id)
        return PersonOut(user_id=user_id, username=p.username if p else None,
                         display_name=p.display_name if p else None)

    def shift(s: Shift | None) -> ShiftOut | None:
        if s is None:
            return None
        p = people.get(s.user_id)
        return ShiftOut(user_id=s.user_id, username=p.username if p else None,
                        display_name=p.display_name if p else None, starts_at=s.starts_at, ends_at=s.ends_at,
                        source=s.source)

    return OnCallNowOut(site_id=site, at=when, departments=[
        DepartmentOnCallOut(
            department_id=d.department_id, name=d.name, name_zh=d.name_zh, head=person(d.head_user_id),
            tiers=[TierOut(tier=who.tier, now=shift(who.now), next=shift(who.next))
                   for dep, who in tiers if dep == d.department_id])
        for d in book.departments])


# --- admin: departments, rotations, overrides -----------------------------------------------------------------------


@router.get("/api/oncall/departments", response_model=list[DepartmentOut])
async def list_departments(user: Admin, conn: Db, site: Annotated[str | None, Query()] = None) -> list[DepartmentOut]:
    return [DepartmentOut(site_id=d.site_id, department_id=d.department_id, name=d.name, name_zh=d.name_zh,
                          head_user_id=d.head_user_id, wards=list(d.wards), is_default=d.is_default)
            for d in await directory.departments(conn, site_id=site)]


@router.put("/api/oncall/departments/{site_id}/{department_id}", response_model=DepartmentOut)
async def put_department(
    site_id: SiteId, department_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")],
    body: DepartmentIn, user: Admin, conn: Db,
) -> DepartmentOut:
    """Create or update a department (its head is the last escalation tier)."""
    department = Department(site_id, department_id, body.name, body.name_zh, body.head_user_id,
                            tuple(body.wards), body.is_default)
    await _write(directory.upsert_department(conn, department))
    return DepartmentOut(site_id=site_id, department_id=department_id, name=body.name, name_zh=body.name_zh,
                         head_user_id=body.head_user_id, wards=body.wards, is_default=body.is_default)


@router.delete("/api/oncall/departments/{site_id}/{department_id}", status_code=204)
async def delete_department(site_id: SiteId, department_id: str, user: Admin, conn: Db) -> Response:
    if not await directory.delete_department(conn, site_id, department_id):
        raise NotFoundError("department not found")
    return Response(status_code=204)


def _rotation_out(r: Rotation) -> RotationOut:
    return RotationOut(rotation_id=r.rotation_id, site_id=r.site_id, department_id=r.department_id, tier=r.tier,
                       members=list(r.members), period=r.period, handoff=r.handoff,
                       handoff_weekday=r.handoff_weekday, anchor=r.anchor, timezone=r.timezone)


@router.get("/api/oncall/rotations", response_model=list[RotationOut])
async def list_rotations(user: Admin, conn: Db, site: Annotated[str | None, Query()] = None) -> list[RotationOut]:
    return [_rotation_out(r) for r in await directory.rotations(conn, site_id=site)]


@router.put("/api/oncall/rotations", response_model=RotationOut)
async def put_rotation(body: RotationIn, user: Admin, conn: Db) -> RotationOut:
    """Create or replace the rota of a department's tier (one per tier)."""
    try:
        rotation = Rotation(uuid.uuid4(), body.site_id, body.department_id, body.tier, tuple(body.members),
                            body.period, body.handoff, body.handoff_weekday, body.anchor, body.timezone)
    except ScheduleError as exc:
        raise InvalidParameterError("rotation", str(exc), location="body") from None
    return _rotation_out(await _write(directory.upsert_rotation(conn, rotation)))


@router.delete("/api/oncall/rotations/{rotation_id}", status_code=204)
async def delete_rotation(rotation_id: uuid.UUID, user: Admin, conn: Db) -> Response:
    if not await directory.delete_rotation(conn, rotation_id):
        raise NotFoundError("rotation not found")
    return Response(status_code=204)


def _override_out(o: Override) -> OverrideOut:
    return OverrideOut(override_id=o.override_id, site_id=o.site_id, department_id=o.department_id, tier=o.tier,
                       user_id=o.user_id, starts_at=o.starts_at, ends_at=o.ends_at, reason=o.reason)


@router.get("/api/oncall/overrides", response_model=list[OverrideOut])
async def list_overrides(user: Admin, conn: Db, site: Annotated[str | None, Query()] = None) -> list[OverrideOut]:
    """Overrides that have not ended yet."""
    return [_override_out(o) for o in await directory.overrides(conn, site_id=site, ending_after=_now())]


@router.post("/api/oncall/overrides", response_model=OverrideOut, status_code=201)
async def create_override(body: OverrideIn, user: Admin, conn: Db) -> OverrideOut:
    """Put someone on call for a window instead of the rota."""
    try:
        override = Override(uuid.uuid4(), body.site_id, body.department_id, body.tier, body.user_id,
                            body.starts_at, body.ends_at, body.reason)
    except ScheduleError as exc:
        raise InvalidParameterError("override", str(exc), location="body") from None
    await _write(directory.insert_override(conn, override, created_by=user.user_id))
    return _override_out(override)


@router.delete("/api/oncall/overrides/{override_id}", status_code=204)
async def delete_override(override_id: uuid.UUID, user: Admin, conn: Db) -> Response:
    if not await directory.delete_override(conn, override_id):
        raise NotFoundError("override not found")
    return Response(status_code=204)


# --- admin: escalation policies ---------------------------------------------------------------------------------


@router.get("/api/alerting/policies", response_model=list[PolicyOut])
async def list_policies(user: Admin, conn: Db) -> list[PolicyOut]:
    """Escalation policies by site and department ('' = the whole site)."""
    return [PolicyOut(site_id=s, department_id=d, policy=p.to_dict())
            for (s, d), p in sorted((await directory.policies(conn)).items())]


@router.put("/api/alerting/policies/{site_id}", response_model=PolicyOut)
async def put_policy(site_id: SiteId, body: PolicyIn, user: Admin, conn: Db,
                     department: Annotated[str, Query(max_length=64)] = SITE_WIDE) -> PolicyOut:
    """Set the escalation policy of a site, or of one of its departments."""
    try:
        policy = EscalationPolicy.from_dict(body.model_dump())
    except PolicyError as exc:
        raise InvalidParameterError("policy", str(exc), location="body") from None
    await _write(directory.put_policy(conn, site_id, department, policy, updated_by=user.user_id))
    return PolicyOut(site_id=site_id, department_id=department, policy=policy.to_dict())


@router.delete("/api/alerting/policies/{site_id}", status_code=204)
async def delete_policy(site_id: SiteId, user: Admin, conn: Db,
                        department: Annotated[str, Query(max_length=64)] = SITE_WIDE) -> Response:
    if not await directory.delete_policy(conn, site_id, department):
        raise NotFoundError("policy not found")
    return Response(status_code=204)


# --- admin: channels and contact points -------------------------------------------------------------------------


def _channel_out(row: ChannelRow) -> ChannelOut:
    return ChannelOut(channel_id=row.channel_id, kind=row.kind, name=row.name, site_id=row.site_id,
                      config=redacted(row.config), enabled=row.enabled)


@router.get("/api/alerting/channels", response_model=list[ChannelOut])
async def list_channels(user: Admin, conn: Db) -> list[ChannelOut]:
    return [_channel_out(c) for c in await directory.channels(conn)]


@router.put("/api/alerting/channels/{channel_id}", response_model=ChannelOut)
async def put_channel(channel_id: uuid.UUID, body: ChannelIn, user: Admin, conn: Db,
                      keys: IdentityKeys) -> ChannelOut:
    """Create or replace a channel; its configuration is checked by building it, its secrets stored encrypted."""
    try:
        build_channel(body.kind, body.config)
    except ChannelConfigError as exc:
        raise InvalidParameterError("config", str(exc), location="body") from None
    stored = seal_config(await keys.ring(conn), channel_id, body.config)
    row = ChannelRow(channel_id, body.kind, body.name, body.site_id, stored, body.enabled)
    await _write(directory.upsert_channel(conn, row))
    return _channel_out(row)


@router.delete("/api/alerting/channels/{channel_id}", status_code=204)
async def delete_channel(channel_id: uuid.UUID, user: Admin, conn: Db) -> Response:
    if not await directory.delete_channel(conn, channel_id):
        raise NotFoundError("channel not found")
    return Response(status_code=204)


@router.get("/api/alerting/contacts/{user_id}", response_model=list[ContactOut])
async def list_contacts(user_id: uuid.UUID, user: Admin, conn: Db) -> list[ContactOut]:
    return [ContactOut(**c) for c in await directory.user_contacts(conn, user_id)]


@router.put("/api/alerting/contacts/{user_id}/{channel_id}", response_model=ContactOut)
async def put_contact(user_id: uuid.UUID, channel_id: uuid.UUID, body: ContactIn, user: Admin, conn: Db
                      ) -> ContactOut:
    """How a user is reached on a channel (e-mail address, WeCom userid, DingTalk mobile; none for webhooks)."""
    await _write(directory.put_contact(conn, user_id, channel_id, body.address, body.enabled))
    return ContactOut(user_id=user_id, channel_id=channel_id, address=body.address, enabled=body.enabled)


@router.delete("/api/alerting/contacts/{user_id}/{channel_id}", status_code=204)
async def delete_contact(user_id: uuid.UUID, channel_id: uuid.UUID, user: Admin, conn: Db) -> Response:
    if not await directory.delete_contact(conn, user_id, channel_id):
        raise NotFoundError("contact not found")
    return Response(status_code=204)


# --- admin: the delivery log -------------------------------------------------------------------------------------


def _delivery_out(d: store.DeliveryRow) -> DeliveryOut:
    return DeliveryOut(delivery_id=d.delivery_id, incident_id=d.incident_id, channel_id=d.channel_id,
                       channel_kind=d.channel_kind, recipient_id=d.recipient_id, step=d.step, tier=d.tier,
                       status=d.status, attempts=d.attempts, last_error=d.last_error, created_at=d.created_at,
                       next_attempt_at=d.next_attempt_at, finished_at=d.finished_at)


@router.get("/api/alerting/deliveries", response_model=DeliveryListOut)
async def list_deliveries(
    user: Admin, scope: Scope, conn: Db,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
    channel: Annotated[str | None, Query(max_length=32)] = None,
    incident: Annotated[uuid.UUID | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryListOut:
    """The delivery log, newest first (status=failed: the pages that did not get through)."""
    rows = await store.list_deliveries(conn, scope=scope, incident_id=incident, status=status, channel_kind=channel,
                                       limit=limit)
    return DeliveryListOut(deliveries=[_delivery_out(d) for d in rows])


@router.get("/api/alerting/deliveries/failed", response_model=DeliveryListOut)
async def failed_deliveries(user: Admin, scope: Scope, conn: Db,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> DeliveryListOut:
    """Pages that could not be delivered (after every retry, or at once when the error was permanent)."""
    rows = await store.list_deliveries(conn, scope=scope, status="failed", limit=limit)
    return DeliveryListOut(deliveries=[_delivery_out(d) for d in rows])


async def _write(operation: Awaitable[T]) -> T:
    """Run a write; database refusals (unknown site, department or user) become 422."""
    try:
        return await operation
    except psycopg.errors.ForeignKeyViolation as exc:
        detail = exc.diag.message_detail or str(exc)
        raise InvalidParameterError("body", f"refers to something that does not exist: {detail}",
                                    location="body") from None
    except (psycopg.errors.CheckViolation, psycopg.errors.UniqueViolation) as exc:
        raise InvalidParameterError("body", str(exc.diag.message_primary or exc), location="body") from None
