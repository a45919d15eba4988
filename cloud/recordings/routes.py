"""Routes of consultation recordings: the edges' signed uploads, and listing and playback for participants.

- `PUT /api/edge/recordings/{recording_id}`: an edge's sealed recording (upload.py). 201 stored, 200
  already stored with the same bytes (the edge retried after a lost answer), 409 the id is taken by other
  bytes, 400 unreadable, 401/403 signature, 403 the consultation is not of the edge's site, 413 too large.
- `GET /api/consultations/{id}/recordings`: the consultation's recordings (participants only).
- `GET /api/consultations/{id}/recordings/{recording_id}`: the media, decrypted on the fly.

Participants are the consultation's requesting side and its expert (cloud/video/participants.py), in any
state (a recording belongs to the record after the call); everyone else gets 404, unknown consultations
too. Every list and download is audited with the patient; every stored upload is audited as a transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from cloud.api.audit import audit, record_transition
from cloud.api.auth.store import Conn
from cloud.api.deps import ClientIp, CurrentUser, Db, pooled_connection
from cloud.api.errors import NotFoundError
from cloud.consult import store as consult_store
from cloud.dicomweb.auth import (
    EdgeAuthError,
    ReplayCache,
    VerifiedEdge,
    check_sender,
    check_signature,
    database_lookup,
)
from cloud.edges import cloud_key
from cloud.identity.crypto import DecryptionError, UnknownKeyVersionError
from cloud.identity.keystore import VerifiedKeys
from cloud.recordings import records
from cloud.recordings.sealed import SealError, decrypt_chunks, read_header
from cloud.recordings.store import RecordingStore, RecordingStoreError, storage_key
from cloud.recordings.upload import Staged, UploadRefused, check, stage
from cloud.settings import CloudSettings
from cloud.video.participants import CallRefused, participation
from cloud.video.settings import video_settings

log = logging.getLogger(__name__)


@dataclass
class RecordingState:
    """What the recording routes share in one API process."""

    settings: CloudSettings
    store: RecordingStore
    max_bytes: int
    replay: ReplayCache = field(default_factory=ReplayCache)


def recording_root(settings: CloudSettings) -> Path:
    configured = video_settings(settings).recording_dir
    return Path(configured) if configured else settings.dicom.store_dir.parent / "recordings"


def _problem(status: int, detail: str) -> JSONResponse:
    # Edges authenticate with request signatures (the scheme STOW-RS answers with too).
    headers = {"WWW-Authenticate": "TelemedEdge"} if status == 401 else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _recording_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UploadRefused(400, "the recording id is not a UUID") from None


async def _participant_patient(conn: Conn, consultation_id: uuid.UUID, user: Any) -> str:
    try:
        found = await participation(conn, consultation_id=consultation_id, user=user)
    except CallRefused:
        raise NotFoundError("no such consultation among yours") from None
    return found.patient_id


def router_for(settings: CloudSettings) -> APIRouter:
    """The recording routes; their state is created with the router (no I/O until used)."""
    router = APIRouter(tags=["video"])
    video = video_settings(settings)
    state = RecordingState(settings=settings, store=RecordingStore(recording_root(settings)),
                           max_bytes=video.max_recording_bytes)

    @router.put("/api/edge/recordings/{recording_id}", include_in_schema=True)
    async def upload(request: Request, recording_id: str) -> Response:
        """An edge's sealed recording (signed like STOW-RS; see cloud/recordings/upload.py)."""
        staged: Staged | None = None
        try:
            # Who is sending comes first: nobody else's bytes are received, and nobody else learns anything
            # (not even whether the id is well formed).
            async with pooled_connection(request.app.state.pool) as conn:
                claim = await check_sender(request.headers, lookup=database_lookup(conn), now=time.time())
            staged = await stage(request.stream(), state.store.staging_path(), limit=state.max_bytes)
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            edge = check_signature(claim, method="PUT", path=path, body_sha256=staged.sha256, replay=state.replay,
                                   now=time.time())
            return await _take(request, _recording_uuid(recording_id), edge, staged)
        except UploadRefused as exc:
            log.warning("video.recording_refused", extra={"recording_id": recording_id, "status": exc.status,
                                                          "detail": exc.detail})
            return _problem(exc.status, exc.detail)
        except EdgeAuthError as exc:
            sender = request.headers.get("x-telemed-edge", "")[:64]
            log.warning("video.recording_auth_failed",
                        extra={"status": exc.status_code, "detail": exc.detail, "edge_id": sender})
            return _problem(exc.status_code, exc.detail)
        finally:
            if staged is not None:
                staged.path.unlink(missing_ok=True)

    async def _take(request: Request, recording_id: uuid.UUID, edge: VerifiedEdge, staged: Staged) -> Response:
        signer = cloud_key.load_or_create(settings.keys.cloud_key_path)
        checked = await asyncio.to_thread(check, staged.path, recording_id=recording_id, edge_id=edge.edge_id,
                                          cloud_key=signer)
        keys: VerifiedKeys = request.app.state.identity_keys
        async with pooled_connection(request.app.state.pool) as conn:
            consultation = await consult_store.get_consultation(conn, checked.consultation_id)
            if consultation is None or consultation.site_id != edge.site_id:
                raise UploadRefused(403, "the recording's consultation is not one of the edge's site")
            existing = await records.get(conn, recording_id)
            if existing is not None:
                if existing.sha256 == staged.sha256:
                    return JSONResponse({"recording_id": str(recording_id), "stored": "already"}, status_code=200)
                raise UploadRefused(409, "another recording is stored under this id")
            key = storage_key(checked.consultation_id, recording_id)
            ring = await keys.ring(conn)
            row = records.Recording(
                recording_id=recording_id, consultation_id=checked.consultation_id, edge_id=edge.edge_id,
                consent_id=await records.consent_of(conn, checked.consent_id, checked.consultation_id),
                started_at=checked.started_at, ended_at=checked.ended_at, media_type=checked.media_type,
                size=staged.bytes, media_bytes=checked.media_bytes, sha256=staged.sha256,
                wrapped_key=records.wrap(ring, checked.key, recording_id), storage_key=key, status="stored",
                received_at=dt.datetime.now(dt.UTC))
            await asyncio.to_thread(state.store.commit, staged.path, key)
            async with conn.transaction():
                if not await records.insert(conn, row):
                    raise UploadRefused(409, "another recording is stored under this id")
                await record_transition(conn, entity="video_recording", entity_id=str(recording_id),
                                        from_state=None, to_state="stored", actor=f"edge:{edge.edge_id}",
                                        patient_id=consultation.patient_id,
                                        detail={"consultation_id": str(checked.consultation_id),
                                                "bytes": staged.bytes, "seconds": round(
                                                    (checked.ended_at - checked.started_at).total_seconds())})
        log.info("video.recording_stored", extra={"recording_id": str(recording_id), "edge_id": edge.edge_id,
                                                  "bytes": staged.bytes})
        return JSONResponse({"recording_id": str(recording_id), "sha256": staged.sha256, "bytes": staged.bytes},
                            status_code=201)

    @router.get("/api/consultations/{consultation_id}/recordings")
    async def list_recordings(consultation_id: uuid.UUID, user: CurrentUser, conn: Db, ip: ClientIp
                              ) -> dict[str, Any]:
        """The consultation's stored recordings (participants only)."""
        patient_id = await _participant_patient(conn, consultation_id, user)
        found = await records.of_consultation(conn, consultation_id)
        await audit(conn, "video.recording_list", user, patient_id, ip=ip,
                    detail={"consultation_id": str(consultation_id), "count": len(found)})
        return {"recordings": [r.as_json() for r in found]}

    @router.get("/api/consultations/{consultation_id}/recordings/{recording_id}")
    async def download(request: Request, consultation_id: uuid.UUID, recording_id: uuid.UUID, user: CurrentUser,
                       conn: Db, ip: ClientIp) -> StreamingResponse:
        """The recording's media, decrypted as it is sent (participants only)."""
        patient_id = await _participant_patient(conn, consultation_id, user)
        found = await records.get(conn, recording_id)
        if found is None or found.consultation_id != consultation_id or found.status != "stored":
            raise NotFoundError("no such recording of this consultation")
        keys: VerifiedKeys = request.app.state.identity_keys
        try:
            key = records.unwrap(await keys.ring(conn), found.wrapped_key, recording_id)
        except UnknownKeyVersionError:
            key = records.unwrap(await keys.ring(conn, refresh=True), found.wrapped_key, recording_id)
        except DecryptionError:
            log.error("video.recording_key_unreadable", extra={"recording_id": str(recording_id)})
            raise
        await audit(conn, "video.recording_download", user, patient_id, ip=ip,
                    detail={"consultation_id": str(consultation_id), "recording_id": str(recording_id)})
        try:
            source = state.store.open(found.storage_key)
        except RecordingStoreError:
            log.error("video.recording_missing", extra={"recording_id": str(recording_id)})
            raise NotFoundError("the recording's media is not in the store") from None
        extension = "webm" if found.media_type == "video/webm" else "bin"
        return StreamingResponse(
            _media(source, key, str(recording_id)), media_type=found.media_type,
            headers={"Content-Length": str(found.media_bytes), "Cache-Control": "no-store",
                     "Content-Disposition": f'attachment; filename="recording-{recording_id}.{extension}"'})

    return router


def _media(source: Any, key: bytes, recording_id: str) -> Iterator[bytes]:
    """Decrypted chunks (Starlette runs this generator in its thread pool)."""
    with contextlib.closing(source):
        try:
            header = read_header(source)
            yield from decrypt_chunks(source, header, key)
        except SealError:
            # The stored bytes changed since they were checked on upload: cut the download short.
            log.error("video.recording_tampered", extra={"recording_id": recording_id})
            raise
