"""STOW-RS (PS3.18 10.5): `POST /dicomweb/studies` and `POST /dicomweb/studies/{study}` for edge uploads.

The request is multipart/related; type="application/dicom" (PS3.18 8.6.1.2), signed by an edge
(cloud/dicomweb/auth.py). The response is application/dicom+json (PS3.18 F.2) with ReferencedSOPSequence
(stored or already held, each with its RetrieveURL) and FailedSOPSequence (with FailureReason), and the
status PS3.18 10.5.3 gives: 200 all stored, 202 some stored and some failed, 409 none stored; 400 for a
malformed body, 401/403 for a bad or revoked edge, 413 too large, 415 not multipart/related of
application/dicom, 503 when the database is unavailable (the edge retries).

Wiring (the composition root): `install(app, store=FileObjectStore(dicom_store_dir))`, with the app's
psycopg AsyncConnectionPool at `app.state.pool` (opened in its lifespan, as cloud/api/app.py does).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from fastapi import APIRouter, FastAPI, Request, Response
from psycopg_pool import AsyncConnectionPool

from cloud.dicomweb import multipart
from cloud.dicomweb.auth import EdgeAuthError, ReplayCache, database_lookup, verify
from cloud.dicomweb.parts import DICOM_MEDIA_TYPE
from cloud.dicomweb.service import StowOutcome, store_instances
from cloud.dicomweb.store import ObjectStore
from proto.messages import DICOM_UID

log = logging.getLogger(__name__)

DICOM_JSON: Final = "application/dicom+json"
MAX_REQUEST_BYTES: Final = 512 * 1024 * 1024
MAX_PARTS: Final = 10_000

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])


@dataclass
class DicomWebState:
    """What the STOW-RS routes need from the application (set by `install`)."""

    store: ObjectStore
    replay: ReplayCache = field(default_factory=ReplayCache)
    max_request_bytes: int = MAX_REQUEST_BYTES
    clock: Callable[[], float] = time.time


def install(app: FastAPI, *, store: ObjectStore, replay: ReplayCache | None = None,
            max_request_bytes: int = MAX_REQUEST_BYTES, clock: Callable[[], float] = time.time) -> None:
    """Add the STOW-RS routes to `app` and the state they use."""
    app.state.dicomweb = DicomWebState(store=store, replay=replay or ReplayCache(),
                                       max_request_bytes=max_request_bytes, clock=clock)
    app.include_router(router)


# --- responses ----------------------------------------------------------------------------------------------


def _element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def stow_response_body(outcome: StowOutcome, *, base_url: str, study_uid: str | None) -> dict[str, Any]:
    """The Store Instances Response Module as DICOM JSON (PS3.18 10.5.3.2, Table 10.5.3-1)."""
    base = base_url.rstrip("/") + "/dicomweb/studies/"
    body: dict[str, Any] = {}
    if study_uid is not None:
        body["00081190"] = _element("UR", base + study_uid)  # RetrieveURL of the study
    if outcome.failed:
        body["00081198"] = _element("SQ", *[
            {"00081150": _element("UI", *([f.sop_class_uid] if f.sop_class_uid else [])),
             "00081155": _element("UI", *([f.sop_instance_uid] if f.sop_instance_uid else [])),
             "00081197": _element("US", f.reason)}
            for f in outcome.failed])
    if outcome.stored:
        body["00081199"] = _element("SQ", *[
            {"00081150": _element("UI", s.sop_class_uid),
             "00081155": _element("UI", s.sop_instance_uid),
             "00081190": _element("UR", f"{base}{s.study_instance_uid}/series/{s.series_instance_uid}"
                                        f"/instances/{s.sop_instance_uid}")}
            for s in outcome.stored])
    return body


def stow_status(outcome: StowOutcome) -> int:
    """PS3.18 10.5.3: 200 all stored, 202 partly, 409 nothing."""
    if not outcome.stored:
        return 409
    return 202 if outcome.failed else 200


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps({"detail": detail}), status_code=status, media_type="application/json",
                    headers=headers)


# --- the route ----------------------------------------------------------------------------------------------


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None if it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _accepts_dicom_json(accept: str) -> bool:
    if not accept.strip():
        return True
    types = {multipart.parse_media_type(item)[0] for item in accept.split(",")}
    return bool(types & {DICOM_JSON, "application/json", "application/*", "*/*"})


@router.post("/studies", include_in_schema=True)
async def store_studies(request: Request) -> Response:
    """Store instances of any studies (PS3.18 10.5, Store Instances)."""
    return await _store(request, None)


@router.post("/studies/{study}", include_in_schema=True)
async def store_study(request: Request, study: str) -> Response:
    """Store instances of one study; an instance of another study fails (0xA900)."""
    if len(study) > 64 or not DICOM_UID.match(study):
        return _problem(400, "the study in the path is not a valid DICOM UID")
    return await _store(request, study)


async def _store(request: Request, study_uid: str | None) -> Response:
    state: DicomWebState = request.app.state.dicomweb
    media_type, params = multipart.parse_media_type(request.headers.get("content-type", ""))
    if media_type != "multipart/related" or params.get("type", "").lower() != DICOM_MEDIA_TYPE:
        return _problem(415, 'expected multipart/related; type="application/dicom"')
    boundary = params.get("boundary", "")
    if not boundary:
        return _problem(400, "multipart/related without a boundary")
    if not _accepts_dicom_json(request.headers.get("accept", "")):
        return _problem(406, f"responses are {DICOM_JSON}")
    body = await _read_body(request, state.max_request_bytes)
    if body is None:
        return _problem(413, f"requests are limited to {state.max_request_bytes} bytes")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    try:
        async with pool.connection() as conn:
            try:
                edge = await verify(method=request.method, path=path, body=body, headers=request.headers,
                                    lookup=database_lookup(conn), replay=state.replay, now=state.clock())
            except EdgeAuthError as exc:
                log.warning("dicomweb.auth_failed status=%d detail=%s edge_id=%s", exc.status_code, exc.detail,
                            request.headers.get("x-telemed-edge", "")[:64])
                return _problem(exc.status_code, exc.detail,
                                {"WWW-Authenticate": "TelemedEdge"} if exc.status_code == 401 else None)
            try:
                parts = multipart.split(body, boundary)
            except multipart.MultipartError as exc:
                return _problem(400, f"malformed multipart body: {exc}")
            if not parts or len(parts) > MAX_PARTS:
                return _problem(400, f"a request carries 1..{MAX_PARTS} instances")
            outcome = await store_instances(conn, state.store, edge=edge, parts=parts, study_uid=study_uid)
    except psycopg.Error as exc:
        log.error("dicomweb.database_unavailable error=%s", type(exc).__name__)
        return _problem(503, "database unavailable, retry later", {"Retry-After": "5"})
    content = stow_response_body(outcome, base_url=str(request.base_url), study_uid=study_uid)
    return Response(json.dumps(content, separators=(",", ":")), status_code=stow_status(outcome),
                    media_type=DICOM_JSON)
