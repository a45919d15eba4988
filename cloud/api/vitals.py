"""Routes: the patient list, latest vitals, downsampled series and NEWS2 history (site-scoped, audited)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query

from cloud.api import vitals_service as service
from cloud.api.deps import ClientIp, Db, Scope, VitalsReader
from cloud.api.schemas import LatestVitalsOut, ModelResponse, News2HistoryOut, PatientListOut, SeriesOut

router = APIRouter(prefix="/api/patients", tags=["vitals"])

PatientId = Annotated[str, Path(min_length=1, max_length=64)]
Start = Annotated[dt.datetime | None, Query(description="RFC 3339 with offset; default end - 24 h")]
End = Annotated[dt.datetime | None, Query(description="RFC 3339 with offset; default now")]
DEFAULT_SPAN = dt.timedelta(hours=24)


@router.get("", response_model=PatientListOut)
async def list_patients(user: VitalsReader, scope: Scope, conn: Db, ip: ClientIp) -> PatientListOut:
    """Patients of the caller's sites with their latest vitals and current NEWS2."""
    return PatientListOut(patients=await service.patient_list(conn, user=user, scope=scope, ip=ip))


@router.get("/{patient_id}/vitals/latest", response_model=LatestVitalsOut)
async def latest(patient_id: PatientId, user: VitalsReader, scope: Scope, conn: Db, ip: ClientIp) -> LatestVitalsOut:
    """The latest value of each kind, with time, unit, quality flags and display names."""
    vitals = await service.latest_vitals(conn, user=user, scope=scope, patient_id=patient_id, ip=ip)
    return LatestVitalsOut(patient_id=patient_id, vitals=vitals)


@router.get("/{patient_id}/vitals", response_model=SeriesOut)
async def series(
    patient_id: PatientId, user: VitalsReader, scope: Scope, conn: Db, ip: ClientIp,
    kind: Annotated[str, Query(min_length=1, max_length=64, description="vocabulary kind, e.g. heart_rate")],
    start: Start = None, end: End = None,
    max_points: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> ModelResponse:
    """A time series downsampled to at most `max_points` buckets (min/max/avg per bucket)."""
    begin, finish = service.resolve_range(start, end, default_span=DEFAULT_SPAN, now=dt.datetime.now(dt.UTC))
    return ModelResponse(await service.vitals_series(
        conn, user=user, scope=scope, patient_id=patient_id, kind_name=kind, start=begin, end=finish,
        max_points=max_points, ip=ip,
    ))


@router.get("/{patient_id}/news2", response_model=News2HistoryOut)
async def news2(
    patient_id: PatientId, user: VitalsReader, scope: Scope, conn: Db, ip: ClientIp,
    start: Start = None, end: End = None,
    max_points: Annotated[int, Query(ge=1, le=10_080)] = 1440,
) -> News2HistoryOut:
    """NEWS2 history at one-minute resolution (coarser when the range needs more than `max_points`)."""
    begin, finish = service.resolve_range(start, end, default_span=DEFAULT_SPAN, now=dt.datetime.now(dt.UTC))
    step, points = await service.news2_history(
        conn, user=user, scope=scope, patient_id=patient_id, start=begin, end=finish, max_points=max_points, ip=ip,
    )
    return News2HistoryOut(
        patient_id=patient_id, start=begin, end=finish, step_seconds=step.total_seconds(),
        points=[service.news2_out(p) for p in points],
    )
