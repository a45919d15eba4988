"""Routes: FHIR R4 read-only export (Observation search, Patient and Device read), application/fhir+json.

Search parameters and paging are described in fhir_search.py; resource shapes in fhir_resources.py.
Errors are OperationOutcomes (app.py). A patient outside the caller's sites searches as an empty Bundle
and reads as 404, exactly like a patient that does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response

from cloud.api import queries
from cloud.api.audit import audit
from cloud.api.auth.store import Conn
from cloud.api.deps import ClientIp, Db, FhirExporter, Policy, Scope
from cloud.api.errors import NotAcceptableError, NotFoundError
from cloud.api.fhir_ids import FhirIdError, from_fhir_id
from cloud.api.fhir_resources import (
    FHIR_JSON,
    LOINC,
    SampleRow,
    device,
    exportable,
    loinc_index,
    observation,
    patient,
    searchset,
)
from cloud.api.fhir_search import (
    Cursor,
    SearchParameterError,
    TimeRange,
    parse_codes,
    parse_count,
    parse_cursor,
    parse_dates,
    parse_reference,
)
from proto.vocabulary import kind

router = APIRouter(prefix="/fhir", tags=["fhir"])

_LOINC_INDEX = loinc_index()
_SUPPORTED = frozenset({"patient", "subject", "code", "date", "_count", "_cursor", "_format"})
_JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json"})


class FhirResponse(Response):
    """A FHIR JSON body (R4 "JSON representation": media type application/fhir+json)."""

    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@router.get("/Observation", response_class=FhirResponse)
async def search_observations(
    request: Request, user: FhirExporter, scope: Scope, conn: Db, policy: Policy, ip: ClientIp
) -> FhirResponse:
    """Vital-sign Observations of one patient: `patient`, `code`, `date` (ge/gt/le/lt/eq), `_count`."""
    params = request.query_params
    _check_format(request)
    unknown = sorted(set(params) - _SUPPORTED)
    if unknown:
        raise SearchParameterError(unknown[0], f"unsupported search parameter {unknown[0]!r}")
    reference = params.get("patient") or params.get("subject")
    if not reference:
        raise SearchParameterError("patient", "Observation search requires the patient parameter")
    patient_id = _our_id(parse_reference(reference, "Patient"))
    kinds = parse_codes(params.getlist("code"), loinc_index=_LOINC_INDEX, loinc_system=LOINC)
    window = parse_dates(params.getlist("date"), default_tz=policy.fhir_timezone)
    count = parse_count(params.get("_count"))
    cursor = parse_cursor(params.get("_cursor"))

    found = None if patient_id is None else await queries.visible_patient(conn, patient_id, scope)
    rows: list[SampleRow] = []
    if found is not None and not window.empty:
        kind_ids = sorted(kind(name).wire_id for name in (kinds if kinds is not None else set(_LOINC_INDEX.values())))
        rows = await _page(conn, found.patient_id, kind_ids, window, cursor, count + 1)
        await audit(conn, "fhir.observation.search", user, found.patient_id, ip=ip, detail={"count": len(rows)})
    page, more = rows[:count], len(rows) > count
    base = str(request.base_url).rstrip("/") + "/fhir"
    self_url = str(request.url)
    next_url = None
    if more:
        last = page[-1]
        next_params = [(k, v) for k, v in params.multi_items() if k != "_cursor"]
        next_params.append(("_cursor", Cursor(_micros(last.time), last.kind_id, last.device_id or "").encode()))
        next_url = f"{base}/Observation?{urlencode(next_params)}"
    bundle = searchset([observation(r) for r in page], base_url=base, self_url=self_url, next_url=next_url)
    return FhirResponse(bundle)


@router.get("/Patient/{fhir_id}", response_class=FhirResponse)
async def read_patient(
    request: Request, fhir_id: str, user: FhirExporter, scope: Scope, conn: Db, ip: ClientIp
) -> FhirResponse:
    """One Patient (404 when unknown or outside the caller's sites)."""
    _check_format(request)
    patient_id = _our_id(fhir_id)
    found = None if patient_id is None else await queries.visible_patient(conn, patient_id, scope)
    if found is None:
        raise NotFoundError("Patient not found")
    await audit(conn, "fhir.patient.read", user, found.patient_id, ip=ip)
    return FhirResponse(patient(found))


@router.get("/Device/{fhir_id}", response_class=FhirResponse)
async def read_device(
    request: Request, fhir_id: str, user: FhirExporter, scope: Scope, conn: Db, ip: ClientIp
) -> FhirResponse:
    """One Device (404 when unknown or outside the caller's sites)."""
    _check_format(request)
    device_id = _our_id(fhir_id)
    found = None if device_id is None else await queries.visible_device(conn, device_id, scope)
    if found is None:
        raise NotFoundError("Device not found")
    await audit(conn, "fhir.device.read", user, found.patient_id, ip=ip, detail={"device_id": found.device_id})
    return FhirResponse(device(found))


async def _page(
    conn: Conn, patient_id: str, kind_ids: list[int], window: TimeRange, cursor: Cursor | None, limit: int,
) -> list[SampleRow]:
    """Up to `limit` exportable samples in (kind, time, device) order after `cursor`: one index range per kind."""
    rows: list[SampleRow] = []
    for kind_id in kind_ids:
        if cursor is not None and kind_id < cursor.kind_id:
            continue
        after = None
        if cursor is not None and kind_id == cursor.kind_id:
            after = (_from_micros(cursor.time_us), cursor.device_id)
        while len(rows) < limit:
            want = limit - len(rows)
            batch = await queries.samples_page(
                conn, patient_id=patient_id, kind_id=kind_id, lower=window.lower, upper=window.upper,
                after=after, limit=want,
            )
            # Samples without an Observation form (e.g. a fractional ACVPU code) are skipped, not counted.
            rows.extend(r for r in batch if exportable(r))
            if len(batch) < want:
                break  # this kind is exhausted
            after = (batch[-1].time, batch[-1].device_id or "")
        if len(rows) >= limit:
            break
    return rows[:limit]


def _check_format(request: Request) -> None:
    """Only JSON is produced: `_format=xml` (FHIR R4 http.html#mime-type) is 406 Not Acceptable."""
    requested = request.query_params.get("_format")
    if requested is not None and requested.split(";")[0].strip().lower() not in _JSON_FORMATS:
        raise NotAcceptableError(f"only JSON is supported, not {requested!r}")


def _our_id(fhir_id: str) -> str | None:
    """Our id for a FHIR id; None for an id we never issue (so: not found)."""
    try:
        return from_fhir_id(fhir_id)
    except FhirIdError:
        return None


def _micros(t: dt.datetime) -> int:
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)
