"""The vitals API's work: scoped reads, downsampling and NEWS2, each audited before it returns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from cloud.api import queries
from cloud.api.audit import audit, audit_many
from cloud.api.auth.models import User
from cloud.api.auth.scoping import SiteScope
from cloud.api.auth.store import Conn
from cloud.api.downsample import MINUTE, DownsampleError, plan_buckets
from cloud.api.errors import InvalidParameterError, NotFoundError
from cloud.api.fhir_resources import PatientRow
from cloud.api.news2_history import (
    LONGEST_RECENCY,
    PARAMETER_KINDS,
    MinuteValue,
    News2Point,
    grid,
    score_history,
    score_now,
)
from cloud.api.schemas import LatestVitalOut, News2Out, PatientOut, SeriesOut
from proto.quality import ARTEFACT, Quality
from proto.vocabulary import VOCABULARY, UnknownKindError, kind, kind_by_wire_id

# How far back "latest" looks: a week covers spot measurements (weight, glucose); older values are history.
LATEST_LOOKBACK = dt.timedelta(days=7)
NEWS2_KIND_IDS: tuple[int, ...] = tuple(sorted(kind(name).wire_id for name in PARAMETER_KINDS.values()))
_NEWS2_KIND_NAMES = {kind(name).wire_id: name for name in PARAMETER_KINDS.values()}
_ARTEFACT = int(ARTEFACT)


def news2_inputs(samples: Iterable[queries.LatestSample]) -> dict[str, dict[str, MinuteValue]]:
    """Per patient, the artefact-free latest value of each NEWS2 kind among `samples` (`score_now`'s input)."""
    inputs: dict[str, dict[str, MinuteValue]] = {}
    for sample in samples:
        name = _NEWS2_KIND_NAMES.get(sample.kind_id)
        if name is not None and not sample.quality & _ARTEFACT:
            inputs.setdefault(sample.patient_id, {})[name] = MinuteValue(sample.time, sample.value)
    return inputs


async def current_news2_inputs(conn: Conn, latest: Sequence[queries.LatestSample], *, now: dt.datetime
                               ) -> dict[str, dict[str, MinuteValue]]:
    """The NEWS2 inputs now (the latest artefact-free sample of each parameter within the longest recency
    window), given the patients' latest samples: where the newest is an artefact, the raw data is asked for
    the latest clean one, and only there."""
    recent = [s for s in latest if now - s.time <= LONGEST_RECENCY]
    inputs = news2_inputs(recent)
    flagged = [s for s in recent if s.quality & _ARTEFACT and s.kind_id in _NEWS2_KIND_NAMES]
    if flagged:
        clean = await queries.latest_samples(
            conn, sorted({s.patient_id for s in flagged}), lookback=LONGEST_RECENCY,
            kind_ids=sorted({s.kind_id for s in flagged}), clean_only=True)
        wanted = {(s.patient_id, s.kind_id) for s in flagged}
        for patient_id, values in news2_inputs(c for c in clean if (c.patient_id, c.kind_id) in wanted).items():
            inputs.setdefault(patient_id, {}).update(values)
    return inputs


def latest_out(sample: queries.LatestSample) -> LatestVitalOut:
    """The wire form of a latest sample, with the vocabulary's unit, LOINC and display names."""
    vital = kind_by_wire_id(sample.kind_id)
    return LatestVitalOut(
        kind=vital.name, time=sample.time, value=sample.value, unit=vital.unit, loinc=vital.loinc,
        display_zh=vital.display_zh, display_en=vital.display_en, quality=sample.quality,
        quality_names=list(Quality(sample.quality).names), device_id=sample.device_id,
    )


def news2_out(point: News2Point) -> News2Out:
    """The wire form of a NEWS2 point."""
    score = point.score
    return News2Out(
        time=point.time, total=score.total, risk=score.risk, subscores=dict(score.subscores),
        complete=score.complete, missing=list(score.missing),
    )


async def require_patient(conn: Conn, patient_id: str, scope: SiteScope) -> PatientRow:
    """The patient, or NotFoundError when unknown or outside the caller's sites (the two look the same)."""
    found = await queries.visible_patient(conn, patient_id, scope)
    if found is None:
        raise NotFoundError("patient not found")
    return found


async def patient_list(conn: Conn, *, user: User, scope: SiteScope, ip: str) -> list[PatientOut]:
    """Every visible patient with their latest vitals and current NEWS2."""
    patients = await queries.visible_patients(conn, scope)
    ids = [p.patient_id for p in patients]
    latest = await queries.latest_samples(conn, ids, lookback=LATEST_LOOKBACK)
    now = dt.datetime.now(dt.UTC)
    inputs = await current_news2_inputs(conn, latest, now=now)
    await audit_many(conn, "patients.list", user, ids, ip=ip)
    by_patient: dict[str, list[queries.LatestSample]] = {}
    for sample in latest:
        by_patient.setdefault(sample.patient_id, []).append(sample)
    result = []
    for p in patients:
        point = score_now(inputs.get(p.patient_id, {}), now=now)
        result.append(PatientOut(
            patient_id=p.patient_id, site_id=p.site_id, site_name=p.site_name, ward=p.ward, bed=p.bed,
            latest=[latest_out(s) for s in by_patient.get(p.patient_id, [])],
            news2=news2_out(point) if point is not None else None,
        ))
    return result


async def latest_vitals(
    conn: Conn, *, user: User, scope: SiteScope, patient_id: str, ip: str
) -> list[LatestVitalOut]:
    """A patient's latest value of every kind seen in the last week."""
    await require_patient(conn, patient_id, scope)
    samples = await queries.latest_samples(conn, [patient_id], lookback=LATEST_LOOKBACK)
    await audit(conn, "vitals.latest", user, patient_id, ip=ip)
    return [latest_out(s) for s in samples]


def resolve_range(
    start: dt.datetime | None, end: dt.datetime | None, *, default_span: dt.timedelta, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) from optional parameters (default: the `default_span` up to now); 422 on naive times."""
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidParameterError(name, "must include a UTC offset (e.g. 2024-05-01T08:00:00+08:00)")
    end = end or now
    start = start or end - default_span
    if end <= start:
        raise InvalidParameterError("end", "end must be after start")
    return start, end


def parse_kind(name: str) -> int:
    """The wire id of a vocabulary kind; 422 naming `kind` otherwise."""
    try:
        return kind(name).wire_id
    except UnknownKindError:
        raise InvalidParameterError("kind", f"unknown kind; one of {', '.join(VOCABULARY)}") from None


async def vitals_series(
    conn: Conn, *, user: User, scope: SiteScope, patient_id: str, kind_name: str,
    start: dt.datetime, end: dt.datetime, max_points: int, ip: str,
) -> SeriesOut:
    """One kind's series over [start, end) in at most `max_points` min/max/avg buckets."""
    kind_id = parse_kind(kind_name)
    try:
        plan = plan_buckets(start, end, max_points)
    except DownsampleError as exc:
        raise InvalidParameterError(exc.field, str(exc)) from None
    await require_patient(conn, patient_id, scope)
    # One round trip for both: the audit row goes first, and if it fails the pipeline fails with it.
    async with conn.pipeline():
        await audit(conn, "vitals.series", user, patient_id, ip=ip, detail={
            "kind": kind_name, "start": start.isoformat(), "end": end.isoformat(),
        })
        buckets = await queries.series(conn, plan, patient_id=patient_id, kind_id=kind_id)
    # Validated from plain dicts in one call: a thousand BucketOut(...) constructions cost more than the query.
    return SeriesOut.model_validate({
        "patient_id": patient_id, "kind": kind_name, "unit": kind(kind_name).unit, "start": plan.data_start,
        "end": plan.data_end, "bucket_seconds": plan.width.total_seconds(), "source": plan.source.name,
        "buckets": [
            {"start": b.start, "min": b.min, "max": b.max, "avg": b.avg, "count": b.sample_count} for b in buckets
        ],
    })


async def news2_history(
    conn: Conn, *, user: User, scope: SiteScope, patient_id: str, start: dt.datetime, end: dt.datetime,
    max_points: int, ip: str,
) -> tuple[dt.timedelta, Sequence[News2Point]]:
    """NEWS2 as of each point of a minute-aligned grid over (start, end] (at most `max_points` points)."""
    try:
        step = plan_buckets(start, end, max_points, source=MINUTE).width
    except DownsampleError as exc:
        raise InvalidParameterError(exc.field, str(exc)) from None
    await require_patient(conn, patient_id, scope)
    points = list(grid(start, end, step))
    if not points:
        return step, []
    values = await queries.minute_values(
        conn, patient_id=patient_id, kind_ids=NEWS2_KIND_IDS, start=points[0] - LONGEST_RECENCY, end=points[-1],
    )
    await audit(conn, "news2.history", user, patient_id, ip=ip, detail={
        "start": start.isoformat(), "end": end.isoformat(),
    })
    return step, score_history(values, points)
