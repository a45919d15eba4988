"""WADO-RS (PS3.18 10.4): metadata, instances, frames, bulk data and rendered images of stored instances.

Routes (site-scoped and audited like QIDO-RS; `{frames}` is a comma-separated list of 1-based numbers):
  GET /dicomweb/studies/{study}[/series/{series}[/instances/{instance}]]/metadata   application/dicom+json
  GET /dicomweb/studies/{study}[/series/{series}[/instances/{instance}]]           multipart/related; application/dicom
  GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}
  GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}
  GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered
  GET /dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered
  GET /dicomweb/studies/{study}/series/{series}/thumbnail
Instances are sent as stored with `transfer-syntax=*`, else in Explicit VR Little Endian (the PS3.18 8.7.3.5.2
default), decompressing when needed. Rendered images: image/jpeg (default) or image/png by Accept, with the
`window`, `viewport` and `quality` parameters of PS3.18 8.3.5.1 (cloud/dicomweb/render.py). A rendered
multi-frame instance without a frame number shows its first frame.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from starlette.concurrency import run_in_threadpool

from cloud.api.audit import audit
from cloud.api.auth.models import User
from cloud.api.auth.scoping import SiteScope
from cloud.api.auth.store import Conn
from cloud.api.deps import ClientIp, Db, Scope
from cloud.api.errors import NotAcceptableError, NotFoundError
from cloud.dicomweb import catalog, frames, render
from cloud.dicomweb.catalog import BadRequestError, DicomReader, Header, Headers, InstanceRow, Store
from cloud.dicomweb.matching import INSTANCE_NUMBER, first_value, sort_key_number
from cloud.dicomweb.negotiation import DICOM_JSON, accepts_json, choose_image, multipart_choice
from cloud.dicomweb.qido import base_url, check_uid
from cloud.dicomweb.store import ObjectStore

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

THUMBNAIL_VIEWPORT: Final = render.Viewport(128, 128)
_PIXEL_DATA: Final = "7FE00010"
_FRAME_PART_TYPES: Final = ("application/octet-stream", *sorted(set(frames.COMPRESSED_MEDIA_TYPES.values())))


# --- shared steps -----------------------------------------------------------------------------------------


async def _instances(conn: Conn, scope: SiteScope, study: str, series: str | None = None,
                     instance: str | None = None) -> list[InstanceRow]:
    """The addressed instances in scope; 404 when there are none."""
    rows = await catalog.visible_instances(
        conn, scope, study_uid=check_uid(study), series_uid=check_uid(series) if series is not None else None,
        sop_uids=[check_uid(instance)] if instance is not None else None)
    if not rows:
        raise NotFoundError("no such study, series or instance")
    return rows


async def _audit(conn: Conn, user: User, ip: str, event: str, rows: Sequence[InstanceRow], **detail: Any) -> None:
    """One access record per patient of `rows` (and one without a patient for unmatched instances)."""
    detail = {"study": rows[0].study_instance_uid, "instances": len(rows), **detail}
    for patient_id in sorted({r.patient_id for r in rows if r.patient_id}):
        await audit(conn, event, user, patient_id, detail=detail, ip=ip)
    if any(r.patient_id is None for r in rows):
        await audit(conn, event, user, None, detail={**detail, "unknown_patient": True}, ip=ip)


def _in_order(rows: Sequence[InstanceRow], headers: Sequence[Header]) -> list[tuple[InstanceRow, Header]]:
    """Instances by series, then instance number."""
    pairs = list(zip(rows, headers, strict=True))
    pairs.sort(key=lambda p: (p[0].series_instance_uid, sort_key_number(p[1].attributes, INSTANCE_NUMBER),
                              p[0].sop_instance_uid))
    return pairs


def _instance_url(base: str, row: InstanceRow) -> str:
    return f"{base}/studies/{row.study_instance_uid}/series/{row.series_instance_uid}/instances/{row.sop_instance_uid}"


def metadata_of(header: Header, row: InstanceRow, base: str) -> dict[str, Any]:
    """The instance's DICOM JSON with absolute BulkDataURIs, and its pixel data as bulk data (PS3.18 F.2.6)."""
    url = _instance_url(base, row)

    def absolute(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (f"{url}/{v}" if k == "BulkDataURI" else absolute(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [absolute(v) for v in value]
        return value

    attributes: dict[str, Any] = absolute(header.attributes)
    dataset = header.dataset
    if "Rows" in dataset and _PIXEL_DATA not in attributes:
        syntax = frames.transfer_syntax(dataset)
        vr = "OB" if syntax.is_compressed or int(dataset.get("BitsAllocated", 16)) <= 8 else "OW"
        attributes[_PIXEL_DATA] = {"vr": vr, "BulkDataURI": f"{url}/frames/" + ",".join(
            str(n) for n in range(1, frames.frame_count(dataset) + 1))}
    return attributes


# --- metadata ---------------------------------------------------------------------------------------------


async def _metadata(request: Request, conn: Conn, scope: SiteScope, user: User, store: ObjectStore,
                    cache: catalog.HeaderCache, ip: str, study: str, series: str | None = None,
                    instance: str | None = None) -> Response:
    if not accepts_json(request.headers.get("accept")):
        raise NotAcceptableError(f"metadata is {DICOM_JSON}")
    rows = await _instances(conn, scope, study, series, instance)
    headers = await catalog.load_headers(cache, store, [(r.key, r.sha256) for r in rows])
    await _audit(conn, user, ip, "dicomweb.metadata", rows)
    base = base_url(request)
    body = [metadata_of(h, r, base) for r, h in _in_order(rows, headers)]
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type=DICOM_JSON)


@router.get("/studies/{study}/metadata")
async def study_metadata(request: Request, study: str, user: DicomReader, scope: Scope, conn: Db, store: Store,
                         cache: Headers, ip: ClientIp) -> Response:
    """Metadata of every instance of a study (PS3.18 10.4.1.1.2)."""
    return await _metadata(request, conn, scope, user, store, cache, ip, study)


@router.get("/studies/{study}/series/{series}/metadata")
async def series_metadata(request: Request, study: str, series: str, user: DicomReader, scope: Scope, conn: Db,
                          store: Store, cache: Headers, ip: ClientIp) -> Response:
    """Metadata of every instance of a series."""
    return await _metadata(request, conn, scope, user, store, cache, ip, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
async def instance_metadata(request: Request, study: str, series: str, instance: str, user: DicomReader,
                            scope: Scope, conn: Db, store: Store, cache: Headers, ip: ClientIp) -> Response:
    """Metadata of one instance."""
    return await _metadata(request, conn, scope, user, store, cache, ip, study, series, instance)


# --- instances ----------------------------------------------------------------------------------------------


def _instance_syntax(request: Request) -> str | None:
    """The transfer syntax asked for: None for as stored (`*`), else a UID (default Explicit VR LE)."""
    choice = multipart_choice(request.headers.get("accept"), (frames.DICOM,))
    if choice is None:
        raise NotAcceptableError('instances are multipart/related; type="application/dicom"')
    syntax = choice.transfer_syntax
    if syntax == "*":
        return None
    syntax = syntax or str(ExplicitVRLittleEndian)
    if syntax != str(ExplicitVRLittleEndian):
        raise NotAcceptableError("instances are sent as stored (transfer-syntax=*) or in Explicit VR Little Endian")
    return syntax


async def _retrieve(request: Request, conn: Conn, scope: SiteScope, user: User, store: ObjectStore, ip: str,
                    study: str, series: str | None = None, instance: str | None = None) -> Response:
    syntax = _instance_syntax(request)
    rows = await _instances(conn, scope, study, series, instance)
    await _audit(conn, user, ip, "dicomweb.retrieve", rows)
    boundary = frames.new_boundary()

    async def body() -> AsyncIterator[bytes]:
        for row in rows:
            data = await catalog.fetch_object(store, row.key)
            if syntax is not None and row.transfer_syntax_uid != syntax:
                data = await run_in_threadpool(frames.to_explicit_little_endian, data)
            part_type = frames.DICOM if syntax is None else f"{frames.DICOM}; transfer-syntax={syntax}"
            yield frames.part(boundary, part_type, data, location=_instance_url(base_url(request), row))
        yield frames.closing(boundary)

    return StreamingResponse(body(), media_type=frames.multipart_content_type(boundary, frames.DICOM, syntax))


@router.get("/studies/{study}")
async def retrieve_study(request: Request, study: str, user: DicomReader, scope: Scope, conn: Db, store: Store,
                         ip: ClientIp) -> Response:
    """Every instance of a study (PS3.18 10.4.1.1.1)."""
    return await _retrieve(request, conn, scope, user, store, ip, study)


@router.get("/studies/{study}/series/{series}")
async def retrieve_series(request: Request, study: str, series: str, user: DicomReader, scope: Scope, conn: Db,
                          store: Store, ip: ClientIp) -> Response:
    """Every instance of a series."""
    return await _retrieve(request, conn, scope, user, store, ip, study, series)


@router.get("/studies/{study}/series/{series}/instances/{instance}")
async def retrieve_instance(request: Request, study: str, series: str, instance: str, user: DicomReader,
                            scope: Scope, conn: Db, store: Store, ip: ClientIp) -> Response:
    """One instance."""
    return await _retrieve(request, conn, scope, user, store, ip, study, series, instance)


# --- frames and bulk data -------------------------------------------------------------------------------------


def parse_frame_list(text: str) -> list[int]:
    """`1,3,5` -> [1, 3, 5] (PS3.18 8.3.3.1: a comma-separated list of frame numbers)."""
    numbers = [p.strip() for p in text.split(",")]
    if not numbers or not all(p.isdigit() and int(p) >= 1 for p in numbers):
        raise BadRequestError("frames: a comma-separated list of frame numbers from 1")
    return [int(p) for p in numbers]


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame_list}")
async def retrieve_frames(request: Request, study: str, series: str, instance: str, frame_list: str,
                          user: DicomReader, scope: Scope, conn: Db, store: Store, ip: ClientIp) -> Response:
    """Pixel data of some frames (PS3.18 10.4.1.1.4): uncompressed octet streams, or the stored bitstreams
    when the client accepts them (`transfer-syntax=*` or the stored syntax, or the compressed media type)."""
    numbers = parse_frame_list(frame_list)
    choice = multipart_choice(request.headers.get("accept"), _FRAME_PART_TYPES)
    if choice is None:
        raise NotAcceptableError('frames are multipart/related; type="application/octet-stream" (or as stored)')
    rows = await _instances(conn, scope, study, series, instance)
    data = await catalog.fetch_object(store, rows[0].key)
    dataset = await run_in_threadpool(_read, data)
    stored = str(frames.transfer_syntax(dataset))
    stored_media = frames.stored_media_type(dataset)
    wanted = choice.transfer_syntax
    if choice.part_type == frames.OCTET_STREAM:
        if wanted not in (None, "*", str(ExplicitVRLittleEndian), stored):
            raise NotAcceptableError("frames are sent as stored or in Explicit VR Little Endian")
        as_stored = stored_media is not None and wanted in ("*", stored)
    elif choice.part_type == stored_media:
        as_stored = True
    else:
        raise NotAcceptableError(f"the frames are stored as {stored_media or frames.OCTET_STREAM}")
    try:
        parts = await run_in_threadpool(frames.frames, dataset, numbers, as_stored=as_stored)
    except frames.FrameNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except frames.FrameError as exc:
        raise NotAcceptableError(str(exc)) from None
    await _audit(conn, user, ip, "dicomweb.frames", rows, frames=numbers[:50])
    syntax = stored if as_stored else str(ExplicitVRLittleEndian)
    part_type = choice.part_type
    boundary = frames.new_boundary()
    body = b"".join(frames.multipart_body(boundary, [(f"{part_type}; transfer-syntax={syntax}", p) for p in parts]))
    return Response(body, media_type=frames.multipart_content_type(boundary, part_type, syntax))


def _read(data: bytes) -> Dataset:
    try:
        return frames.read_dataset(data)
    except frames.FrameError:
        raise catalog.InstanceUnreadableError("a stored object is not a readable DICOM file") from None


@router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}")
async def retrieve_bulkdata(study: str, series: str, instance: str, tag: str, user: DicomReader, scope: Scope,
                            conn: Db, store: Store, ip: ClientIp) -> Response:
    """A bulk data element named by a metadata BulkDataURI (PS3.18 10.4.1.1.5), as stored."""
    if len(tag) != 8 or any(c not in "0123456789ABCDEFabcdef" for c in tag):
        raise NotFoundError("no such bulk data")
    rows = await _instances(conn, scope, study, series, instance)
    data = await catalog.fetch_object(store, rows[0].key)
    try:
        value = frames.element_bytes(await run_in_threadpool(_read, data), tag.upper())
    except frames.FrameError as exc:
        raise NotFoundError(str(exc)) from None
    await _audit(conn, user, ip, "dicomweb.bulkdata", rows, tag=tag.upper())
    boundary = frames.new_boundary()
    return Response(b"".join(frames.multipart_body(boundary, [(frames.OCTET_STREAM, value)])),
                    media_type=frames.multipart_content_type(boundary, frames.OCTET_STREAM))


# --- rendered -------------------------------------------------------------------------------------------------


def render_request(request: Request, frame_index: int, *, viewport: render.Viewport | None = None
                   ) -> render.RenderRequest:
    """The rendering asked for by the Accept header and the PS3.18 8.3.5.1 query parameters."""
    media_type = choose_image(request.headers.get("accept"))
    if media_type is None:
        raise NotAcceptableError("rendered images are image/jpeg or image/png")
    params = request.query_params
    try:
        window = render.parse_window(params["window"]) if "window" in params else None
        if "viewport" in params:
            viewport = render.parse_viewport(params["viewport"])
        quality = render.parse_quality(params["quality"]) if "quality" in params else render.DEFAULT_JPEG_QUALITY
    except render.InvalidRenderParameterError as exc:
        raise BadRequestError(f"{exc.parameter}: {exc}") from None
    return render.RenderRequest(frame_index=frame_index, window=window, viewport=viewport,
                                media_type="image/png" if media_type == "image/png" else "image/jpeg",
                                quality=quality)


async def _rendered(conn: Conn, user: User, ip: str, store: ObjectStore, row: InstanceRow,
                    spec: render.RenderRequest, event: str = "dicomweb.rendered") -> Response:
    data = await catalog.fetch_object(store, row.key)
    try:
        image = await run_in_threadpool(render.render, data, spec)
    except render.FrameOutOfRangeError as exc:
        raise NotFoundError(str(exc)) from None
    except render.RenderError as exc:
        raise NotAcceptableError(f"cannot render this instance: {exc}") from None
    await _audit(conn, user, ip, event, [row], frame=spec.frame_index + 1)
    return Response(image, media_type=spec.media_type)


@router.get("/studies/{study}/series/{series}/instances/{instance}/rendered")
async def rendered_instance(request: Request, study: str, series: str, instance: str, user: DicomReader,
                            scope: Scope, conn: Db, store: Store, ip: ClientIp) -> Response:
    """The instance (its first frame) as an image (PS3.18 10.4.1.1.3)."""
    spec = render_request(request, 0)
    rows = await _instances(conn, scope, study, series, instance)
    return await _rendered(conn, user, ip, store, rows[0], spec)


@router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered")
async def rendered_frame(request: Request, study: str, series: str, instance: str, frame: str, user: DicomReader,
                         scope: Scope, conn: Db, store: Store, ip: ClientIp) -> Response:
    """One frame as an image."""
    if not frame.isdigit() or int(frame) < 1:
        raise BadRequestError("frame: a frame number from 1")
    spec = render_request(request, int(frame) - 1)
    rows = await _instances(conn, scope, study, series, instance)
    return await _rendered(conn, user, ip, store, rows[0], spec)


@router.get("/studies/{study}/series/{series}/thumbnail")
async def series_thumbnail(request: Request, study: str, series: str, user: DicomReader, scope: Scope, conn: Db,
                           store: Store, cache: Headers, ip: ClientIp) -> Response:
    """A small image of the series' middle instance (PS3.18 10.4.1.1.3 thumbnail; viewport 128x128 default)."""
    spec = render_request(request, 0, viewport=THUMBNAIL_VIEWPORT)
    rows = await _instances(conn, scope, study, series)
    headers = await catalog.load_headers(cache, store, [(r.key, r.sha256) for r in rows])
    ordered = _in_order(rows, headers)
    row, header = ordered[len(ordered) // 2]
    middle = frames.frame_count(header.dataset) // 2 if first_value(header.attributes, "00280008") else 0
    return await _rendered(conn, user, ip, store, row, render.RenderRequest(
        frame_index=middle, window=spec.window, viewport=spec.viewport, media_type=spec.media_type,
        quality=spec.quality), event="dicomweb.thumbnail")
