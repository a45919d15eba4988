"""Who is calling: roles, users and their sessions (plain values, no I/O)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass


class Role(enum.StrEnum):
    """What a user does; a user may hold several roles."""

    ADMIN = "admin"  # runs the system; sees every site
    COUNTY_DOCTOR = "county_doctor"  # works at one county hospital (site)
    EXPERT = "expert"  # remote specialist consulted by county doctors
    ON_CALL = "on_call"  # receives escalated alerts


ALL_ROLES: frozenset[Role] = frozenset(Role)


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated user. `site_id` is the hospital a county doctor (or site-bound on-call) belongs to."""

    user_id: uuid.UUID
    username: str
    display_name: str
    roles: frozenset[Role]
    site_id: str | None

    def has_any(self, roles: frozenset[Role]) -> bool:
        """Whether the user holds at least one of `roles`."""
        return not self.roles.isdisjoint(roles)


@dataclass(frozen=True, slots=True)
class AuthSession:
    """A live login: the user and the hashed token that identifies the session."""

    user: User
    token_hash: bytes
    expires_at: dt.datetime


def parse_roles(values: list[str] | tuple[str, ...]) -> frozenset[Role]:
    """Roles from their stored names; unknown names (from a newer schema) are ignored, never granted."""
    known = {role.value: role for role in Role}
    return frozenset(known[value] for value in values if value in known)
