"""The audit hook: every read and write of patient data is recorded before the data leaves the server.

One function, `audit`, so the users issue can hash-chain the log in one place. It runs on the request's
connection; if the record cannot be written the request fails rather than serving unaudited data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from psycopg.types.json import Jsonb

from cloud.api.auth.models import User
from cloud.api.auth.store import Conn

_INSERT = (
    "INSERT INTO access_log (user_id, username, event, patient_id, detail, ip) VALUES (%s, %s, %s, %s, %s, %s)"
)


async def audit(
    conn: Conn, event: str, user: User, patient_id: str | None, *,
    detail: Mapping[str, Any] | None = None, ip: str | None = None,
) -> None:
    """Record that `user` did `event` (e.g. "vitals.series") on `patient_id`'s data."""
    await conn.execute(_INSERT, (user.user_id, user.username, event, patient_id, Jsonb(dict(detail or {})), ip))


async def audit_many(
    conn: Conn, event: str, user: User, patient_ids: Iterable[str], *,
    detail: Mapping[str, Any] | None = None, ip: str | None = None,
) -> None:
    """`audit` for each of several patients seen at once (a patient list), in one round trip."""
    rows = [(user.user_id, user.username, event, pid, Jsonb(dict(detail or {})), ip) for pid in patient_ids]
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT, rows)
