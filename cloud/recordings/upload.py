"""Taking in an edge's sealed recording: stream it to staging, verify the edge's signature, check every chunk.

The request is signed like STOW-RS uploads (cloud/dicomweb/auth.py: method, path, SHA-256 of the body,
time, edge id, Ed25519). Recordings can be large, so the sender is checked from the headers before the body
is read (cloud.dicomweb.auth.check_sender: a stranger's upload is refused before it is received), the body
is streamed to a staging file while its digest is computed, and the signature is checked against that
digest (check_signature) rather than holding the body in memory as STOW-RS does; the clock window and the
replay cache are the same.

The container is then checked completely before anything is stored (the edge deletes its copy on our
answer): the header must name this recording and this edge, the recording key must unwrap with the
cloud's key, and every chunk must authenticate. Origin comes from the edge's signature (anyone can seal
for the cloud's public key), confidentiality from the wrap.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.recordings.sealed import SealError, decrypt_chunks, read_header, unwrap_key


class UploadRefused(Exception):
    """The upload cannot be stored; `status` is the HTTP answer (400, 403, 409, 413)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Staged:
    path: Path
    bytes: int
    sha256: str


async def stage(chunks: AsyncIterator[bytes], path: Path, *, limit: int) -> Staged:
    """Write the request body to `path`, hashing it; UploadRefused(413) past `limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as out:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadRefused(413, f"recordings are limited to {limit} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Staged(path=path, bytes=size, sha256=digest.hexdigest())


@dataclass(frozen=True)
class CheckedRecording:
    """A staged upload whose every chunk authenticated."""

    recording_id: uuid.UUID
    consultation_id: uuid.UUID
    consent_id: str | None
    started_at: dt.datetime
    ended_at: dt.datetime
    media_type: str
    media_bytes: int
    key: bytes


def _time(fields: Mapping[str, Any], name: str) -> dt.datetime:
    value = fields.get(name)
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise UploadRefused(400, f"header: {name} is not a time") from None
    if parsed.tzinfo is None:
        raise UploadRefused(400, f"header: {name} needs a time zone")
    return parsed


def check(staged: Path, *, recording_id: uuid.UUID, edge_id: str, cloud_key: Ed25519PrivateKey) -> CheckedRecording:
    """Open the staged container completely (blocking: run it in a thread); UploadRefused(400) if unusable."""
    try:
        with staged.open("rb") as source:
            header = read_header(source)
            fields = header.fields
            if header.recording_id != str(recording_id):
                raise UploadRefused(400, "the container is of another recording")
            if fields.get("edge_id") != edge_id:
                raise UploadRefused(400, "the container names another edge")
            try:
                consultation_id = uuid.UUID(str(fields.get("consultation_id")))
            except ValueError:
                raise UploadRefused(400, "header: consultation_id is not a UUID") from None
            started, ended = _time(fields, "started_at"), _time(fields, "ended_at")
            if ended < started:
                raise UploadRefused(400, "header: the recording ends before it starts")
            media_type = fields.get("media_type")
            if not isinstance(media_type, str) or not media_type.startswith(("video/", "audio/")):
                raise UploadRefused(400, "header: media_type must be a video or audio type")
            key = unwrap_key(header, cloud_key)
            media = sum(len(chunk) for chunk in decrypt_chunks(source, header, key))
    except SealError as exc:
        raise UploadRefused(400, f"not a readable sealed recording: {exc}") from None
    consent = fields.get("consent_id")
    return CheckedRecording(recording_id=recording_id, consultation_id=consultation_id,
                            consent_id=consent if isinstance(consent, str) else None, started_at=started,
                            ended_at=ended, media_type=media_type, media_bytes=media, key=key)
