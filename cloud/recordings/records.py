"""`video_recordings` rows (migration 0007) and the recording key under the identity key ring.

The recording key is stored the way identity fields are (cloud/identity/crypto.py: AES-256-GCM under the
ring's current data key, versioned, bound to table, column and row), so key rotation and the check that
every replica shares the ring cover recordings too.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.rows import class_row

from cloud.api.auth.store import Conn
from cloud.identity.crypto import KeyRing, decrypt_field, encrypt_field

_TABLE = "video_recordings"
_KEY_COLUMN = "wrapped_key"


@dataclass(frozen=True, slots=True)
class Recording:
    recording_id: uuid.UUID
    consultation_id: uuid.UUID
    edge_id: str
    consent_id: uuid.UUID | None
    started_at: dt.datetime
    ended_at: dt.datetime
    media_type: str
    size: int  # of the sealed container
    media_bytes: int
    sha256: str
    wrapped_key: bytes
    storage_key: str
    status: str
    received_at: dt.datetime

    def as_json(self) -> dict[str, Any]:
        """What participants see of a recording (not its key or where it is stored)."""
        return {"recording_id": str(self.recording_id), "edge_id": self.edge_id,
                "consent_id": str(self.consent_id) if self.consent_id else None,
                "started_at": self.started_at.isoformat(), "ended_at": self.ended_at.isoformat(),
                "seconds": round((self.ended_at - self.started_at).total_seconds()),
                "media_type": self.media_type, "bytes": self.media_bytes, "received_at": self.received_at.isoformat()}


def wrap(ring: KeyRing, key: bytes, recording_id: uuid.UUID) -> bytes:
    return encrypt_field(ring, base64.b64encode(key).decode("ascii"), table=_TABLE, column=_KEY_COLUMN,
                         row_id=str(recording_id))


def unwrap(ring: KeyRing, wrapped: bytes, recording_id: uuid.UUID) -> bytes:
    return base64.b64decode(decrypt_field(ring, wrapped, table=_TABLE, column=_KEY_COLUMN, row_id=str(recording_id)))


_COLUMNS = ("recording_id, consultation_id, edge_id, consent_id, started_at, ended_at, media_type, bytes AS size,"
            " media_bytes,"
            " sha256, wrapped_key, storage_key, status, received_at")


async def get(conn: Conn, recording_id: uuid.UUID) -> Recording | None:
    async with conn.cursor(row_factory=class_row(Recording)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM video_recordings WHERE recording_id = %s", (recording_id,))
        return await cur.fetchone()


async def of_consultation(conn: Conn, consultation_id: uuid.UUID) -> list[Recording]:
    async with conn.cursor(row_factory=class_row(Recording)) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM video_recordings WHERE consultation_id = %s AND status = 'stored'"
                          " ORDER BY started_at, recording_id", (consultation_id,))
        return await cur.fetchall()


async def insert(conn: Conn, row: Recording) -> bool:
    """Insert the row; False when the recording id is already taken."""
    cur = await conn.execute(
        "INSERT INTO video_recordings (recording_id, consultation_id, edge_id, consent_id, started_at, ended_at,"
        " media_type, bytes, media_bytes, sha256, wrapped_key, storage_key, status)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (recording_id) DO NOTHING",
        (row.recording_id, row.consultation_id, row.edge_id, row.consent_id, row.started_at, row.ended_at,
         row.media_type, row.size, row.media_bytes, row.sha256, row.wrapped_key, row.storage_key, row.status))
    return cur.rowcount == 1


async def consent_of(conn: Conn, consent_id: str | None, consultation_id: uuid.UUID) -> uuid.UUID | None:
    """The consent the edge named, if it is one of this consultation's."""
    if consent_id is None:
        return None
    try:
        wanted = uuid.UUID(consent_id)
    except ValueError:
        return None
    cur = await conn.execute("SELECT consent_id FROM video_consents WHERE consent_id = %s AND consultation_id = %s",
                             (wanted, consultation_id))
    row = await cur.fetchone()
    return None if row is None else uuid.UUID(str(row[0]))
