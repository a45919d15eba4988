"""`video_consents` rows (migration 0007): history, the standing consent, grant and revoke."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.rows import class_row

from cloud.api.auth.store import Conn
from cloud.video.consent import Consent

_COLUMNS = ("consent_id, consultation_id, granted_by, granted_at, given_by, note, revoked_by, revoked_at")


async def history(conn: Conn, consultation_id: uuid.UUID) -> list[Consent]:
    """Every consent of the consultation, newest first."""
    async with conn.cursor(row_factory=class_row(Consent)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM video_consents WHERE consultation_id = %s"
                          " ORDER BY granted_at DESC, consent_id", (consultation_id,))
        return await cur.fetchall()


async def standing(conn: Conn, consultation_id: uuid.UUID) -> Consent | None:
    async with conn.cursor(row_factory=class_row(Consent)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM video_consents WHERE consultation_id = %s AND revoked_at IS NULL",
                          (consultation_id,))
        return await cur.fetchone()


async def grant(conn: Conn, *, consultation_id: uuid.UUID, user_id: uuid.UUID, given_by: str,
                note: str) -> tuple[Consent, bool]:
    """Record consent unless one stands; (the standing consent, whether it is new)."""
    async with conn.cursor(row_factory=class_row(Consent)) as cur:
        await cur.execute(
            f"INSERT INTO video_consents (consultation_id, granted_by, given_by, note) VALUES (%s, %s, %s, %s)"
            f" ON CONFLICT (consultation_id) WHERE revoked_at IS NULL DO NOTHING RETURNING {_COLUMNS}",
            (consultation_id, user_id, given_by, note))
        created = await cur.fetchone()
    if created is not None:
        return created, True
    existing = await standing(conn, consultation_id)
    assert existing is not None  # the conflict was the standing one
    return existing, False


async def revoke(conn: Conn, *, consultation_id: uuid.UUID, user_id: uuid.UUID) -> Consent | None:
    """Revoke the standing consent; the revoked record, or None when none stood."""
    async with conn.cursor(row_factory=class_row(Consent)) as cur:
        await cur.execute(
            f"UPDATE video_consents SET revoked_by = %s, revoked_at = greatest(now(), granted_at)"
            f" WHERE consultation_id = %s AND revoked_at IS NULL RETURNING {_COLUMNS}",
            (user_id, consultation_id))
        return await cur.fetchone()


def as_json(consent: Consent) -> dict[str, Any]:
    return {"consent_id": str(consent.consent_id), "granted_by": str(consent.granted_by),
            "granted_at": consent.granted_at.isoformat(), "given_by": consent.given_by, "note": consent.note,
            "revoked_by": str(consent.revoked_by) if consent.revoked_by else None,
            "revoked_at": consent.revoked_at.isoformat() if consent.revoked_at else None}
