"""QIDO-RS (PS3.18 10.6): search for studies, a study's series and a series' instances, as DICOM JSON.

Routes (all site-scoped and audited; bearer token or the dashboard's session cookie):
  GET /dicomweb/studies
  GET /dicomweb/studies/{study}/series
  GET /dicomweb/studies/{study}/series/{series}/instances
Matching, includefield, fuzzymatching, limit and offset are cloud/dicomweb/matching.py. PatientID is the
archive's patient id: the cloud's pseudonymous patient id of the instance (`dicom_instances.patient_id`,
which is the DICOM Patient ID unless the edge mapped it). Zero matches answer 200 with `[]` (CP-2473);
a truncated page carries the `Warning: 299` header of PS3.18 8.3.4.4.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from fastapi import APIRouter, Request, Response

from cloud.api.audit import audit, audit_many
from cloud.api.auth.models import User
from cloud.api.auth.store import Conn
from cloud.api.deps import ClientIp, Db, Scope
from cloud.api.errors import NotAcceptableError, NotFoundError
from cloud.dicomweb import catalog
from cloud.dicomweb.catalog import BadRequestError, DicomReader, Header, Headers, SeriesRow, Store
from cloud.dicomweb.matching import (
    INSTANCE_AVAILABILITY,
    INSTANCE_NUMBER,
    MODALITIES_IN_STUDY,
    MODALITY,
    PATIENT_ID,
    RETRIEVE_URL,
    SERIES_INSTANCE_UID,
    SERIES_NUMBER,
    SERIES_RELATED_INSTANCES,
    SOP_INSTANCE_UID,
    STUDY_DATE,
    STUDY_INSTANCE_UID,
    STUDY_RELATED_INSTANCES,
    STUDY_RELATED_SERIES,
    STUDY_TIME,
    Attributes,
    Level,
    QueryError,
    SearchQuery,
    element,
    first_value,
    parse_search,
    select,
    sort_key_number,
)
from cloud.dicomweb.negotiation import DICOM_JSON, accepts_json
from proto.messages import DICOM_UID

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

# A study result is built from one of its instances and keeps only study and patient attributes: the Patient
# (PS3.3 C.7.1.1), General Study (C.7.2.1) and Patient Study (C.7.2.2) modules, and those QIDO-RS computes.
_STUDY_KEYS: Final = frozenset({
    "00080005", STUDY_DATE, STUDY_TIME, "00080050", INSTANCE_AVAILABILITY, "00080090", "00080201", "00081030",
    "00081060", "00100010", PATIENT_ID, "00100021", "00100030", "00100040", "00101010", "00101020", "00101030",
    STUDY_INSTANCE_UID, "00200010",
})


@dataclass(frozen=True, slots=True)
class Result:
    """One search result and the patient it belongs to (for the audit trail)."""

    attributes: Attributes
    patient_id: str | None


def base_url(request: Request) -> str:
    """This service's DICOMweb root as the client reached it."""
    return str(request.base_url).rstrip("/") + "/dicomweb"


def check_uid(value: str) -> str:
    """A path UID; malformed ones are simply not found."""
    if len(value) > 64 or not DICOM_UID.match(value):
        raise NotFoundError("no such study, series or instance")
    return value


def _archive_attributes(header: Header, patient_id: str | None) -> Attributes:
    attributes = {k: v for k, v in header.attributes.items() if "BulkDataURI" not in v}
    if patient_id:
        attributes[PATIENT_ID] = element("LO", patient_id)
    attributes[INSTANCE_AVAILABILITY] = element("CS", "ONLINE")
    return attributes


def study_results(series: Sequence[SeriesRow], headers: Sequence[Header], base: str) -> list[Result]:
    """One study result per study: study attributes from its first series' instance, plus counts and the
    modalities of all its series."""
    by_study: dict[str, list[tuple[SeriesRow, Header]]] = {}
    for row, header in zip(series, headers, strict=True):
        by_study.setdefault(row.study_instance_uid, []).append((row, header))
    results = []
    for study_uid, members in by_study.items():
        row, header = members[0]
        attributes = {k: v for k, v in _archive_attributes(header, row.patient_id).items() if k in _STUDY_KEYS}
        modalities = sorted({str(m) for _, h in members if (m := first_value(h.attributes, MODALITY))})
        attributes[MODALITIES_IN_STUDY] = element("CS", *modalities)
        attributes[STUDY_RELATED_SERIES] = element("IS", len(members))
        attributes[STUDY_RELATED_INSTANCES] = element("IS", sum(r.instances for r, _ in members))
        attributes[RETRIEVE_URL] = element("UR", f"{base}/studies/{study_uid}")
        results.append(Result(attributes, row.patient_id))
    results.sort(key=lambda r: (str(first_value(r.attributes, STUDY_DATE) or ""),
                                str(first_value(r.attributes, STUDY_TIME) or "")), reverse=True)
    return results


def series_results(series: Sequence[SeriesRow], headers: Sequence[Header], base: str) -> list[Result]:
    """One result per series, by series number."""
    results = []
    for row, header in zip(series, headers, strict=True):
        attributes = _archive_attributes(header, row.patient_id)
        attributes[SERIES_RELATED_INSTANCES] = element("IS", row.instances)
        attributes[RETRIEVE_URL] = element(
            "UR", f"{base}/studies/{row.study_instance_uid}/series/{row.series_instance_uid}")
        results.append(Result(attributes, row.patient_id))
    results.sort(key=lambda r: (sort_key_number(r.attributes, SERIES_NUMBER),
                                str(first_value(r.attributes, SERIES_INSTANCE_UID))))
    return results


def instance_results(rows: Sequence[catalog.InstanceRow], headers: Sequence[Header], base: str) -> list[Result]:
    """One result per instance, by instance number."""
    results = []
    for row, header in zip(rows, headers, strict=True):
        attributes = _archive_attributes(header, row.patient_id)
        attributes[RETRIEVE_URL] = element(
            "UR", f"{base}/studies/{row.study_instance_uid}/series/{row.series_instance_uid}"
                  f"/instances/{row.sop_instance_uid}")
        results.append(Result(attributes, row.patient_id))
    results.sort(key=lambda r: (sort_key_number(r.attributes, INSTANCE_NUMBER),
                                str(first_value(r.attributes, SOP_INSTANCE_UID))))
    return results


def _query(request: Request) -> SearchQuery:
    if not accepts_json(request.headers.get("accept")):
        raise NotAcceptableError(f"search results are {DICOM_JSON}")
    try:
        return parse_search(request.query_params.multi_items())
    except QueryError as exc:
        raise BadRequestError(f"{exc.parameter}: {exc}") from None


async def _answer(conn: Conn, user: User, ip: str, results: list[Result], query: SearchQuery, level: Level,
                  detail: dict[str, Any]) -> Response:
    """Match, page, audit and serialise."""
    matched = [r for r in results if query.matches(r.attributes)]
    end = len(matched) if query.limit is None else query.offset + query.limit
    page = matched[query.offset:end]
    patients = sorted({r.patient_id for r in page if r.patient_id})
    detail = {**detail, "level": level, "results": len(page)}
    if patients:
        await audit_many(conn, "dicomweb.search", user, patients, detail=detail, ip=ip)
    if any(r.patient_id is None for r in page):
        await audit(conn, "dicomweb.search", user, None, detail={**detail, "unknown_patient": True}, ip=ip)
    keys = query.returned_keys(level)
    body = [select(r.attributes, keys, include_all=query.include_all) for r in page]
    headers = {}
    remaining = len(matched) - end
    if remaining > 0:
        headers["Warning"] = f'299 telemed: "There are {remaining} additional results that can be requested"'
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), media_type=DICOM_JSON,
                    headers=headers)


@router.get("/studies")
async def search_studies(request: Request, user: DicomReader, scope: Scope, conn: Db, store: Store,
                         cache: Headers, ip: ClientIp) -> Response:
    """Search for studies (PS3.18 10.6.1, Table 10.6.3-3 attributes)."""
    query = _query(request)
    series = await catalog.visible_series(conn, scope, study_uids=query.exact(STUDY_INSTANCE_UID),
                                          patient_ids=query.exact(PATIENT_ID))
    headers = await catalog.load_headers(cache, store, [(s.key, s.sha256) for s in series])
    results = study_results(series, headers, base_url(request))
    return await _answer(conn, user, ip, results, query, "study", {})


@router.get("/studies/{study}/series")
async def search_series(request: Request, study: str, user: DicomReader, scope: Scope, conn: Db, store: Store,
                        cache: Headers, ip: ClientIp) -> Response:
    """Search for the series of a study (Table 10.6.3-4 attributes)."""
    query = _query(request)
    series = await catalog.visible_series(conn, scope, study_uids=[check_uid(study)],
                                          series_uids=query.exact(SERIES_INSTANCE_UID))
    if not series and query.exact(SERIES_INSTANCE_UID) is None:
        raise NotFoundError("no such study")
    headers = await catalog.load_headers(cache, store, [(s.key, s.sha256) for s in series])
    results = series_results(series, headers, base_url(request))
    return await _answer(conn, user, ip, results, query, "series", {"study": study})


@router.get("/studies/{study}/series/{series}/instances")
async def search_instances(request: Request, study: str, series: str, user: DicomReader, scope: Scope, conn: Db,
                           store: Store, cache: Headers, ip: ClientIp) -> Response:
    """Search for the instances of a series (Table 10.6.3-5 attributes)."""
    query = _query(request)
    rows = await catalog.visible_instances(conn, scope, study_uid=check_uid(study), series_uid=check_uid(series),
                                           sop_uids=query.exact(SOP_INSTANCE_UID))
    if not rows and query.exact(SOP_INSTANCE_UID) is None:
        raise NotFoundError("no such series")
    headers = await catalog.load_headers(cache, store, [(r.key, r.sha256) for r in rows])
    results = instance_results(rows, headers, base_url(request))
    return await _answer(conn, user, ip, results, query, "instance", {"study": study, "series": series})
