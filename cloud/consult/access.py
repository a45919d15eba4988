"""In which capacities a user acts on one consultation (pure): the workflow's `Actor`s for a caller."""

from __future__ import annotations

import uuid

from cloud.api.auth.models import Role, User
from cloud.consult.workflow import Actor


def capacities(
    user: User, *, site_id: str, assigned_expert_id: uuid.UUID | None, pending_expert_id: uuid.UUID | None,
) -> frozenset[Actor]:
    """Admin for admins; requester for county doctors of the patient's site (the consultation belongs to the
    site's team, so a colleague on the next shift can follow it up); expert for the expert holding the pending
    offer or assigned to it."""
    found: set[Actor] = set()
    if Role.ADMIN in user.roles:
        found.add(Actor.ADMIN)
    if Role.COUNTY_DOCTOR in user.roles and user.site_id == site_id:
        found.add(Actor.REQUESTER)
    if Role.EXPERT in user.roles and user.user_id in (assigned_expert_id, pending_expert_id):
        found.add(Actor.EXPERT)
    return frozenset(found)
