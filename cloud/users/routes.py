"""Routes: user management for admins (`/api/admin/users`), experts' own profile (`/api/me/profile`), and
the specialty list."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.auth.models import Role, User
from cloud.api.deps import ClientIp, CurrentUser, Db, require_roles
from cloud.users import service, store
from cloud.users.profile import TITLE_NAMES, Availability, Credentials, ExpertProfile, Title

router = APIRouter(prefix="/api", tags=["users"])

Admin = Annotated[User, Depends(require_roles(Role.ADMIN))]
Expert = Annotated[User, Depends(require_roles(Role.EXPERT))]
RoleName = Annotated[Role, Field(description="admin, county_doctor, expert or on_call")]


class ManagedUserOut(BaseModel):
    user_id: uuid.UUID
    username: str
    display_name: str
    roles: list[str]
    site_id: str | None
    disabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    password_changed_at: dt.datetime | None
    live_sessions: int


class UserListOut(BaseModel):
    users: list[ManagedUserOut]
    next_after: str | None = Field(description="pass as `after` for the next page; null on the last page")


class UserCreateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    display_name: str = Field(default="", max_length=128)
    password: str = Field(min_length=1, max_length=service.PASSWORD_MAX)
    roles: list[RoleName] = Field(min_length=1)
    site_id: str | None = None


class UserUpdateIn(BaseModel):
    """Fields to change (absent ones stay)."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=128)
    roles: list[RoleName] | None = None
    site_id: str | None = None
    disabled: bool | None = None


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: str = Field(min_length=1, max_length=service.PASSWORD_MAX)


class RevokedOut(BaseModel):
    revoked: int


class CredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    specialties: list[str] = Field(min_length=1, max_length=20)
    icd10_prefixes: list[str] = Field(default_factory=list, max_length=100)
    title: Title
    years_practice: int = Field(ge=0, le=70)
    licence_region: str = Field(description="GB/T 2260 province code, e.g. 440000")


class AvailabilityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    languages: list[str] = Field(min_length=1, max_length=20)
    max_concurrent: int = Field(ge=1, le=50)
    on_duty: bool
    online: bool

    def value(self) -> Availability:
        return Availability(languages=tuple(self.languages), max_concurrent=self.max_concurrent,
                            on_duty=self.on_duty, online=self.online)


class ProfileIn(CredentialsIn):
    """An expert's whole profile as an admin sets it; availability may be left to the expert."""

    availability: AvailabilityIn | None = None


class ProfileOut(BaseModel):
    user_id: uuid.UUID
    specialties: list[str]
    icd10_prefixes: list[str]
    title: str
    title_zh: str
    title_en: str
    years_practice: int
    licence_region: str
    languages: list[str]
    max_concurrent: int
    on_duty: bool
    online: bool
    status_changed_at: dt.datetime | None
    updated_at: dt.datetime | None


class SpecialtyOut(BaseModel):
    code: str
    name_en: str
    name_zh: str


class SpecialtiesOut(BaseModel):
    specialties: list[SpecialtyOut]


def managed_out(user: store.ManagedUser) -> ManagedUserOut:
    return ManagedUserOut(
        user_id=user.user_id, username=user.username, display_name=user.display_name,
        roles=sorted(r.value for r in user.roles), site_id=user.site_id, disabled=user.disabled,
        created_at=user.created_at, updated_at=user.updated_at, password_changed_at=user.password_changed_at,
        live_sessions=user.live_sessions,
    )


def profile_out(profile: ExpertProfile) -> ProfileOut:
    credentials, availability = profile.credentials, profile.availability
    title_zh, title_en = TITLE_NAMES[credentials.title]
    return ProfileOut(
        user_id=profile.user_id, specialties=list(credentials.specialties),
        icd10_prefixes=list(credentials.icd10_prefixes), title=credentials.title, title_zh=title_zh,
        title_en=title_en, years_practice=credentials.years_practice, licence_region=credentials.licence_region,
        languages=list(availability.languages), max_concurrent=availability.max_concurrent,
        on_duty=availability.on_duty, online=availability.online, status_changed_at=profile.status_changed_at,
        updated_at=profile.updated_at,
    )


# --- admin: users ------------------------------------------------------------------------------------------


@router.get("/admin/users", response_model=UserListOut)
async def list_users(
    admin: Admin, conn: Db, role: Role | None = None, site: str | None = None,
    include_disabled: bool = True, q: Annotated[str | None, Query(max_length=64)] = None,
    after: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> UserListOut:
    """Users by username, filtered by role, site, a search text; paged with `after`."""
    users = await store.list_users(conn, role=role, site_id=site, include_disabled=include_disabled, search=q,
                                   limit=limit, after=after)
    return UserListOut(users=[managed_out(u) for u in users],
                       next_after=users[-1].username if len(users) == limit else None)


@router.post("/admin/users", response_model=ManagedUserOut, status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreateIn, admin: Admin, conn: Db, ip: ClientIp) -> ManagedUserOut:
    """Create a user with roles (and a site for county doctors)."""
    created = await service.create_user(
        conn, admin=admin, username=body.username, password=body.password, roles=frozenset(body.roles),
        site_id=body.site_id, display_name=body.display_name, ip=ip)
    return managed_out(created)


@router.get("/admin/users/{user_id}", response_model=ManagedUserOut)
async def get_user(user_id: uuid.UUID, admin: Admin, conn: Db) -> ManagedUserOut:
    """One user."""
    return managed_out(await service.require_user(conn, user_id))


@router.patch("/admin/users/{user_id}", response_model=ManagedUserOut)
async def update_user(user_id: uuid.UUID, body: UserUpdateIn, admin: Admin, conn: Db, ip: ClientIp) -> ManagedUserOut:
    """Change display name, roles, site or disabled (rights changes log the user out everywhere)."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if "roles" in changes:
        changes["roles"] = frozenset(changes["roles"] or ())
    for name in ("display_name", "disabled"):
        if name in changes and changes[name] is None:
            del changes[name]
    return managed_out(await service.update_user(conn, admin=admin, user_id=user_id, changes=changes, ip=ip))


@router.post("/admin/users/{user_id}/password", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(user_id: uuid.UUID, body: PasswordIn, admin: Admin, conn: Db, ip: ClientIp) -> Response:
    """Set a new password (the user's sessions are revoked)."""
    await service.reset_password(conn, admin=admin, user_id=user_id, password=body.password, ip=ip)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/admin/users/{user_id}/sessions", response_model=RevokedOut)
async def revoke_sessions(user_id: uuid.UUID, admin: Admin, conn: Db, ip: ClientIp) -> RevokedOut:
    """Log the user out everywhere."""
    return RevokedOut(revoked=await service.revoke_sessions(conn, admin=admin, user_id=user_id, ip=ip))


@router.get("/admin/users/{user_id}/profile", response_model=ProfileOut)
async def get_profile(user_id: uuid.UUID, admin: Admin, conn: Db) -> ProfileOut:
    """An expert's profile."""
    return profile_out(await service.profile_of(conn, user_id))


@router.put("/admin/users/{user_id}/profile", response_model=ProfileOut)
async def put_profile(user_id: uuid.UUID, body: ProfileIn, admin: Admin, conn: Db, ip: ClientIp) -> ProfileOut:
    """Set an expert's verified credentials (and availability, if given)."""
    credentials = Credentials(specialties=tuple(body.specialties), icd10_prefixes=tuple(body.icd10_prefixes),
                              title=body.title, years_practice=body.years_practice,
                              licence_region=body.licence_region)
    profile = await service.set_credentials(
        conn, admin=admin, user_id=user_id, credentials=credentials,
        availability=body.availability.value() if body.availability is not None else None, ip=ip)
    return profile_out(profile)


# --- experts: own profile ----------------------------------------------------------------------------------


@router.get("/me/profile", response_model=ProfileOut)
async def my_profile(expert: Expert, conn: Db) -> ProfileOut:
    """The caller's expert profile."""
    return profile_out(await service.profile_of(conn, expert.user_id))


@router.put("/me/profile", response_model=ProfileOut)
async def put_my_profile(body: AvailabilityIn, expert: Expert, conn: Db, ip: ClientIp) -> ProfileOut:
    """The caller's languages, capacity and duty status (credentials are set by admins)."""
    return profile_out(await service.set_availability(conn, expert=expert, availability=body.value(), ip=ip))


# --- everyone ----------------------------------------------------------------------------------------------


@router.get("/specialties", response_model=SpecialtiesOut)
async def list_specialties(user: CurrentUser, conn: Db) -> SpecialtiesOut:
    """The controlled specialty list with Chinese and English names."""
    return SpecialtiesOut(specialties=[SpecialtyOut(code=s.code, name_en=s.name_en, name_zh=s.name_zh)
                                       for s in await store.specialties(conn)])
