"""User management (admins) and expert profiles: the flows behind cloud/users/routes.py, each audited.

Rules beyond the schema's: an admin cannot disable themself or drop their own admin role, and the last
enabled admin cannot be removed; disabling a user, resetting a password or changing roles or site revokes
the user's sessions (their next request needs a fresh login with the new rights); removing the expert role
or disabling an expert takes them off duty. Passwords are scrypt-hashed (cloud/api/auth/passwords.py).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final

from cloud.api.auth import service as auth_service
from cloud.api.auth import store as auth_store
from cloud.api.auth.models import Role, User
from cloud.api.auth.passwords import hash_password
from cloud.api.errors import ApiError, InvalidParameterError, NotFoundError
from cloud.audit import store as audit_store
from cloud.audit.chain import Draft
from cloud.users import store
from cloud.users.profile import (
    Availability,
    Credentials,
    ExpertProfile,
    ProfileError,
    normalise_availability,
    normalise_credentials,
)

log = logging.getLogger(__name__)

USERNAME_FORM: Final = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")  # users_username_form in 0002_auth.sql
PASSWORD_MIN: Final = 10
PASSWORD_MAX: Final = 256
DEFAULT_AVAILABILITY: Final = Availability(languages=("zh",), max_concurrent=3, on_duty=False, online=False)


class UserConflictError(ApiError):
    """The change conflicts with existing users (a taken username, the last admin)."""

    status_code = 409


def _draft(actor: User, event: str, target: uuid.UUID, detail: Mapping[str, Any], ip: str | None) -> Draft:
    return Draft(username=actor.username, event=event, user_id=actor.user_id, entity="user",
                 entity_id=str(target), detail=dict(detail), ip=ip)


def check_password(password: str) -> None:
    """Length bounds (NIST SP 800-63B section 5.1.1.2: at least 8, long passphrases allowed); 422 otherwise."""
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidParameterError("password", f"{PASSWORD_MIN}..{PASSWORD_MAX} characters", location="body")


async def require_user(conn: auth_store.Conn, user_id: uuid.UUID, *, lock: bool = False) -> store.ManagedUser:
    found = await store.get_user(conn, user_id, lock=lock)
    if found is None:
        raise NotFoundError("user not found")
    return found


async def create_user(
    conn: auth_store.Conn, *, admin: User, username: str, password: str, roles: frozenset[Role],
    site_id: str | None, display_name: str = "", ip: str | None = None,
) -> store.ManagedUser:
    """Create a user (the `user add` command's flow, audited)."""
    if not USERNAME_FORM.match(auth_service.normalise_username(username)):
        raise InvalidParameterError("username", "1-64 of a-z 0-9 . _ @ -, starting with a letter or digit",
                                    location="body")
    check_password(password)
    try:
        async with conn.transaction():
            user = await auth_service.add_user(conn, username=username, password=password, roles=roles,
                                               site_id=site_id, display_name=display_name)
            await audit_store.append(conn, [_draft(admin, "user.create", user.user_id, {
                "username": user.username, "roles": sorted(r.value for r in roles), "site_id": site_id}, ip)])
    except auth_store.UserExistsError as exc:
        raise UserConflictError(str(exc)) from None
    except auth_store.UnknownSiteError as exc:
        raise InvalidParameterError("site_id", str(exc), location="body") from None
    except ValueError as exc:  # a county doctor without a site
        raise InvalidParameterError("site_id", str(exc), location="body") from None
    log.info("users.created user_id=%s by=%s", user.user_id, admin.user_id)
    return await require_user(conn, user.user_id)


async def update_user(
    conn: auth_store.Conn, *, admin: User, user_id: uuid.UUID, changes: Mapping[str, Any], ip: str | None = None,
) -> store.ManagedUser:
    """Change display name, roles, site or disabled; revokes the user's sessions when their rights change."""
    allowed = {"display_name", "roles", "site_id", "disabled"}
    if set(changes) - allowed:
        raise InvalidParameterError(sorted(set(changes) - allowed)[0], "cannot be changed here", location="body")
    async with conn.transaction():
        admins = await store.lock_admins(conn)
        target = await require_user(conn, user_id, lock=True)
        roles: frozenset[Role] = changes.get("roles", target.roles)
        disabled: bool = changes.get("disabled", target.disabled)
        loses_admin = Role.ADMIN in target.roles and not target.disabled and (Role.ADMIN not in roles or disabled)
        if loses_admin and user_id == admin.user_id:
            raise UserConflictError("you cannot disable yourself or remove your own admin role")
        if loses_admin and [a for a in admins if a != user_id] == []:
            raise UserConflictError("the last enabled admin cannot be removed")
        try:
            await store.update_user(conn, user_id, changes)
        except store.RoleSiteError as exc:
            raise InvalidParameterError("site_id", str(exc), location="body") from None
        except auth_store.UnknownSiteError as exc:
            raise InvalidParameterError("site_id", str(exc), location="body") from None
        rights_changed = disabled or roles != target.roles or changes.get("site_id", target.site_id) != target.site_id
        revoked = await auth_store.revoke_user_sessions(conn, user_id) if rights_changed else 0
        if disabled or Role.EXPERT not in roles:
            await store.take_off_duty(conn, user_id)
        detail: dict[str, Any] = {"fields": sorted(changes), "sessions_revoked": revoked}
        if "roles" in changes:
            detail["roles"] = sorted(r.value for r in roles)
        if "site_id" in changes:
            detail["site_id"] = changes["site_id"]
        if "disabled" in changes:
            detail["disabled"] = disabled
        await audit_store.append(conn, [_draft(admin, "user.update", user_id, detail, ip)])
    log.info("users.updated user_id=%s by=%s fields=%s", user_id, admin.user_id, ",".join(sorted(changes)))
    return await require_user(conn, user_id)


async def reset_password(
    conn: auth_store.Conn, *, admin: User, user_id: uuid.UUID, password: str, ip: str | None = None,
) -> int:
    """Set a new password and revoke every session of the user; how many sessions were revoked."""
    check_password(password)
    hashed = await asyncio.to_thread(hash_password, password)
    async with conn.transaction():
        await require_user(conn, user_id, lock=True)
        await store.set_password_hash(conn, user_id, hashed)
        revoked = await auth_store.revoke_user_sessions(conn, user_id)
        await audit_store.append(conn, [_draft(admin, "user.password_reset", user_id,
                                               {"sessions_revoked": revoked}, ip)])
    log.info("users.password_reset user_id=%s by=%s", user_id, admin.user_id)
    return revoked


async def revoke_sessions(
    conn: auth_store.Conn, *, admin: User, user_id: uuid.UUID, ip: str | None = None,
) -> int:
    """Log a user out everywhere; how many live sessions were revoked."""
    async with conn.transaction():
        await require_user(conn, user_id)
        revoked = await auth_store.revoke_user_sessions(conn, user_id)
        await audit_store.append(conn, [_draft(admin, "user.sessions_revoke", user_id,
                                               {"sessions_revoked": revoked}, ip)])
    log.info("users.sessions_revoked user_id=%s by=%s count=%d", user_id, admin.user_id, revoked)
    return revoked


# --- expert profiles ---------------------------------------------------------------------------------------


def _profile_error(exc: ProfileError) -> InvalidParameterError:
    return InvalidParameterError(exc.field, exc.message, location="body")


async def profile_of(conn: auth_store.Conn, user_id: uuid.UUID) -> ExpertProfile:
    """An expert's profile; 404 when none was set up."""
    profile = await store.get_profile(conn, user_id)
    if profile is None:
        raise NotFoundError("no expert profile yet: an admin records the credentials first")
    return profile


async def set_credentials(
    conn: auth_store.Conn, *, admin: User, user_id: uuid.UUID, credentials: Credentials,
    availability: Availability | None = None, ip: str | None = None,
) -> ExpertProfile:
    """Create or replace an expert's credentials (and, if given, their availability)."""
    known = frozenset(s.code for s in await store.specialties(conn))
    try:
        checked = normalise_credentials(credentials, known_specialties=known)
        offered = normalise_availability(availability) if availability is not None else None
    except ProfileError as exc:
        raise _profile_error(exc) from None
    async with conn.transaction():
        target = await require_user(conn, user_id, lock=True)
        if Role.EXPERT not in target.roles:
            raise InvalidParameterError("user_id", "only experts have a profile (give the user the expert role)",
                                        location="path")
        await store.put_credentials(conn, user_id, checked, offered or DEFAULT_AVAILABILITY)
        if offered is not None:
            await store.put_availability(conn, user_id, offered)
        await audit_store.append(conn, [_draft(admin, "expert.profile.credentials", user_id, {
            "specialties": list(checked.specialties), "icd10_prefixes": list(checked.icd10_prefixes),
            "title": checked.title, "years_practice": checked.years_practice,
            "licence_region": checked.licence_region}, ip)])
    return await profile_of(conn, user_id)


async def set_availability(
    conn: auth_store.Conn, *, expert: User, availability: Availability, ip: str | None = None,
) -> ExpertProfile:
    """An expert's own languages, capacity and duty status."""
    try:
        checked = normalise_availability(availability)
    except ProfileError as exc:
        raise _profile_error(exc) from None
    async with conn.transaction():
        if not await store.put_availability(conn, expert.user_id, checked):
            raise NotFoundError("no expert profile yet: an admin records the credentials first")
        await audit_store.append(conn, [_draft(expert, "expert.profile.availability", expert.user_id, {
            "languages": list(checked.languages), "max_concurrent": checked.max_concurrent,
            "on_duty": checked.on_duty, "online": checked.online}, ip)])
    log.info("users.availability user_id=%s on_duty=%s online=%s", expert.user_id, checked.on_duty, checked.online)
    return await profile_of(conn, expert.user_id)
