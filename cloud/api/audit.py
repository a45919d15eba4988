"""The audit hooks: every read and write of patient data, and every workflow transition, goes into the
hash-chained audit log (cloud/audit/) before the data leaves the server.

`audit`/`audit_many` record access to patient data; `record_transition` records a state change of a
consultation, an alert or any other entity. They run on the caller's connection (inside its transaction,
when it has one); if the record cannot be written the caller fails rather than acting unaudited.
Details name what was done, never patient names or other identity values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cloud.api.auth.models import User
from cloud.api.auth.store import Conn
from cloud.audit import store
from cloud.audit.chain import Draft

# An actor is a user, or a named system component ("system:sla-scheduler") acting on its own.
Actor = User | str
SYSTEM_PREFIX = "system:"


def _actor(actor: Actor) -> tuple[Any, str]:
    if isinstance(actor, User):
        return actor.user_id, actor.username
    if not actor.strip():
        raise ValueError("a system actor needs a name")
    name = actor if actor.startswith(SYSTEM_PREFIX) else SYSTEM_PREFIX + actor
    return None, name


def access_draft(
    event: str, user: User, patient_id: str | None, *, detail: Mapping[str, Any] | None = None,
    ip: str | None = None,
) -> Draft:
    """The audit entry for `user` doing `event` on `patient_id`'s data."""
    return Draft(username=user.username, event=event, user_id=user.user_id, patient_id=patient_id,
                 detail=dict(detail or {}), ip=ip)


async def audit(
    conn: Conn, event: str, user: User, patient_id: str | None, *,
    detail: Mapping[str, Any] | None = None, ip: str | None = None,
) -> None:
    """Record that `user` did `event` (e.g. "vitals.series") on `patient_id`'s data."""
    await store.append(conn, [access_draft(event, user, patient_id, detail=detail, ip=ip)])


async def audit_many(
    conn: Conn, event: str, user: User, patient_ids: Iterable[str], *,
    detail: Mapping[str, Any] | None = None, ip: str | None = None,
) -> None:
    """`audit` for each of several patients seen at once (a patient list), in one append."""
    drafts = [access_draft(event, user, pid, detail=detail, ip=ip) for pid in patient_ids]
    await store.append(conn, drafts)


def transition_draft(
    *, entity: str, entity_id: str, from_state: str | None, to_state: str, actor: Actor,
    detail: Mapping[str, Any] | None = None, patient_id: str | None = None, ip: str | None = None,
) -> Draft:
    """The audit entry of a state change: event `<entity>.transition`, states in the detail."""
    if not entity or not entity_id or not to_state:
        raise ValueError("a transition needs an entity, its id and the new state")
    user_id, username = _actor(actor)
    body = {**dict(detail or {}), "from": from_state, "to": to_state}
    return Draft(username=username, event=f"{entity}.transition", user_id=user_id, patient_id=patient_id,
                 entity=entity, entity_id=entity_id, detail=body, ip=ip)


async def record_transition(
    conn: Conn, *, entity: str, entity_id: str, from_state: str | None, to_state: str, actor: Actor,
    detail: Mapping[str, Any] | None = None, patient_id: str | None = None, ip: str | None = None,
) -> None:
    """Record that `entity` `entity_id` went from `from_state` (None when created) to `to_state`.

    Call it in the transaction that makes the change, so the change and its record commit together.
    """
    await store.append(conn, [transition_draft(
        entity=entity, entity_id=entity_id, from_state=from_state, to_state=to_state, actor=actor, detail=detail,
        patient_id=patient_id, ip=ip,
    )])


def record_transition_sync(
    conn: store.SyncConn, *, entity: str, entity_id: str, from_state: str | None, to_state: str, actor: Actor,
    detail: Mapping[str, Any] | None = None, patient_id: str | None = None, ip: str | None = None,
) -> None:
    """`record_transition` on a synchronous connection (workers and command-line tools)."""
    store.append_sync(conn, [transition_draft(
        entity=entity, entity_id=entity_id, from_state=from_state, to_state=to_state, actor=actor, detail=detail,
        patient_id=patient_id, ip=ip,
    )])
