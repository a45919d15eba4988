"""SQL for the vitals API and the FHIR export: patients in scope, latest values, series, minute rollups.

Every patient read is restricted by a SiteScope in the query itself, so an out-of-scope patient is simply
not found. Tables are those of migration 0001_core (both storage modes share the column names).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from psycopg import sql
from psycopg.rows import class_row

from cloud.api.auth.scoping import SiteScope, scope_predicate
from cloud.api.auth.store import Conn
from cloud.api.downsample import EPOCH, BucketPlan
from cloud.api.fhir_resources import DeviceRow, PatientRow, SampleRow
from cloud.api.news2_history import WORST_OF_MINUTE, MinuteValue
from proto.quality import ARTEFACT
from proto.vocabulary import BY_WIRE_ID, kind_by_wire_id


@dataclass(frozen=True, slots=True)
class LatestSample:
    """A patient's most recent sample of one kind."""

    patient_id: str
    kind_id: int
    time: dt.datetime
    value: float
    quality: int
    device_id: str | None


class Bucket(NamedTuple):
    """One downsampled bucket: its start and the min/max/mean/count of the samples in it (a tuple: charts
    read a thousand of these per request)."""

    start: dt.datetime
    min: float
    max: float
    avg: float
    sample_count: int


_PATIENTS = (
    "SELECT p.patient_id, p.site_id, s.name AS site_name, p.ward, p.bed"
    " FROM patients p JOIN sites s USING (site_id) WHERE "
    + scope_predicate("p.site_id", patient_column="p.patient_id")
)


async def visible_patient(conn: Conn, patient_id: str, scope: SiteScope) -> PatientRow | None:
    """The patient if it exists and lies in `scope`; None otherwise (the caller answers 404 either way)."""
    cur = conn.cursor(row_factory=class_row(PatientRow))
    params = {**scope.sql_params(), "patient_id": patient_id}
    await cur.execute(_PATIENTS + " AND p.patient_id = %(patient_id)s", params)
    return await cur.fetchone()


async def visible_patients(conn: Conn, scope: SiteScope) -> list[PatientRow]:
    """Every patient in `scope`, by site, ward, bed and id."""
    cur = conn.cursor(row_factory=class_row(PatientRow))
    await cur.execute(_PATIENTS + " ORDER BY p.site_id, p.ward NULLS LAST, p.bed NULLS LAST, p.patient_id",
                      scope.sql_params())
    return await cur.fetchall()


# Samples stamped slightly ahead by an edge's clock still count as latest; the ingest writer keeps those stamped
# further ahead out of vitals_latest (migration 0008), and the raw-data probes use the same bound.
CLOCK_SKEW = dt.timedelta(minutes=5)

_LATEST = (
    "SELECT patient_id, kind_id, time, value, quality, device_id FROM vitals_latest"
    " WHERE patient_id = ANY(%(patients)s::text[]) AND kind_id = ANY(%(kinds)s::smallint[])"
    " AND time > now() - %(lookback)s AND time <= now() + %(skew)s"
    " ORDER BY patient_id, kind_id"
)
_LATEST_CLEAN = (
    "SELECT p.patient_id, k.kind_id, v.time, v.value, v.quality, v.device_id"
    " FROM unnest(%(patients)s::text[]) AS p(patient_id)"
    " CROSS JOIN unnest(%(kinds)s::smallint[]) AS k(kind_id)"
    " CROSS JOIN LATERAL ("
    "   SELECT time, value, quality, device_id FROM vitals"
    "    WHERE patient_id = p.patient_id AND kind_id = k.kind_id"
    "      AND time > now() - %(lookback)s AND time <= now() + %(skew)s AND quality & %(artefact)s = 0"
    "    ORDER BY time DESC LIMIT 1) AS v"
    " ORDER BY p.patient_id, k.kind_id"
)


async def latest_samples(
    conn: Conn, patient_ids: Sequence[str], *, lookback: dt.timedelta, kind_ids: Iterable[int] | None = None,
    clean_only: bool = False,
) -> list[LatestSample]:
    """Each patient's latest sample per kind within `lookback` of now (artefact-free ones if `clean_only`), by
    patient and kind.

    The latest samples are one indexed read of vitals_latest, kept by the ingest writer. The newest
    artefact-free one may be older: `clean_only` probes the vitals index once per (patient, kind), and the
    lookback bounds how many partitions (or chunks) each probe visits, so ask only for the pairs that need it.
    """
    if not patient_ids:
        return []
    # Only kinds this version knows: a newer vocabulary's kinds would have no unit or name to show here.
    kinds = sorted(kind_ids) if kind_ids is not None else sorted(BY_WIRE_ID)
    cur = conn.cursor(row_factory=class_row(LatestSample))
    await cur.execute(_LATEST_CLEAN if clean_only else _LATEST, {
        "patients": list(patient_ids), "kinds": kinds, "lookback": lookback, "skew": CLOCK_SKEW,
        "artefact": int(ARTEFACT),
    })
    return await cur.fetchall()


def series_query(plan: BucketPlan) -> sql.Composed:
    """The SQL for one downsampled series (parameters: width, origin, patient_id, kind_id, start, end)."""
    if plan.source.is_rollup:
        return sql.SQL(
            "SELECT date_bin(%(width)s, bucket, %(origin)s) AS start, min(min) AS min, max(max) AS max,"
            # sum(bigint) accumulates in numeric; a rollup row's count fits an integer, whose sum is bigint.
            " sum(sum) / sum(count::integer) AS avg, sum(count::integer) AS count"
            " FROM {table} WHERE patient_id = %(patient_id)s AND kind_id = %(kind_id)s"
            " AND bucket >= %(start)s AND bucket < %(end)s GROUP BY 1 ORDER BY 1"
        ).format(table=sql.Identifier(plan.source.table))
    return sql.SQL(
        "SELECT date_bin(%(width)s, time, %(origin)s) AS start, min(value) AS min, max(value) AS max,"
        " avg(value) AS avg, count(*) AS count"
        " FROM {table} WHERE patient_id = %(patient_id)s AND kind_id = %(kind_id)s"
        " AND time >= %(start)s AND time < %(end)s GROUP BY 1 ORDER BY 1"
    ).format(table=sql.Identifier(plan.source.table))


def series_params(plan: BucketPlan, *, patient_id: str, kind_id: int) -> dict[str, Any]:
    """The parameters of `series_query` for one patient and kind."""
    return {
        "width": plan.width, "origin": EPOCH, "patient_id": patient_id, "kind_id": kind_id,
        "start": plan.data_start, "end": plan.data_end,
    }


async def series(conn: Conn, plan: BucketPlan, *, patient_id: str, kind_id: int) -> list[Bucket]:
    """The non-empty buckets of one patient's kind under `plan`, in time order."""
    cur = await conn.execute(series_query(plan), series_params(plan, patient_id=patient_id, kind_id=kind_id))
    return list(map(Bucket._make, await cur.fetchall()))


async def minute_values(
    conn: Conn, *, patient_id: str, kind_ids: Sequence[int], start: dt.datetime, end: dt.datetime,
) -> dict[str, list[MinuteValue]]:
    """Per-minute values from vitals_1m in [start, end), keyed by kind name: the mean, or for the kinds in
    WORST_OF_MINUTE the maximum (worst ACVPU level, any oxygen)."""
    worst = [k for k in kind_ids if kind_by_wire_id(k).name in WORST_OF_MINUTE]
    cur = await conn.execute(
        "SELECT kind_id, bucket, CASE WHEN kind_id = ANY(%(worst)s) THEN max ELSE sum / count END"
        " FROM vitals_1m WHERE patient_id = %(patient_id)s AND kind_id = ANY(%(kinds)s)"
        " AND bucket >= %(start)s AND bucket < %(end)s AND count > 0 ORDER BY kind_id, bucket",
        {"worst": worst, "patient_id": patient_id, "kinds": list(kind_ids), "start": start, "end": end},
    )
    result: dict[str, list[MinuteValue]] = {}
    for kind_id, bucket, value in await cur.fetchall():
        result.setdefault(kind_by_wire_id(kind_id).name, []).append(MinuteValue(bucket, float(value)))
    return result


async def samples_page(
    conn: Conn, *, patient_id: str, kind_id: int, lower: dt.datetime | None, upper: dt.datetime | None,
    after: tuple[dt.datetime, str] | None, limit: int,
) -> list[SampleRow]:
    """Up to `limit` samples of one patient's kind in [lower, upper), in (time, device) order after `after`."""
    conditions = [sql.SQL("patient_id = %(patient_id)s AND kind_id = %(kind_id)s")]
    if lower is not None:
        conditions.append(sql.SQL("time >= %(lower)s"))
    if upper is not None:
        conditions.append(sql.SQL("time < %(upper)s"))
    if after is not None:
        # The plain `time >=` lets the index bound the scan; the row comparison breaks ties on device.
        conditions.append(sql.SQL(
            "time >= %(after_time)s AND (time, coalesce(device_id, '')) > (%(after_time)s, %(after_device)s)"
        ))
    query = sql.SQL(
        "SELECT patient_id, kind_id, time, value, device_id, quality FROM vitals WHERE {}"
        " ORDER BY time, coalesce(device_id, '') LIMIT %(limit)s"
    ).format(sql.SQL(" AND ").join(conditions))
    cur = conn.cursor(row_factory=class_row(SampleRow))
    await cur.execute(query, {
        "patient_id": patient_id, "kind_id": kind_id, "lower": lower, "upper": upper, "limit": limit,
        "after_time": after[0] if after else None, "after_device": after[1] if after else None,
    })
    return await cur.fetchall()


async def visible_device(conn: Conn, device_id: str, scope: SiteScope) -> DeviceRow | None:
    """A device in `scope` (devices without a site only for all-site scopes), with its current patient."""
    cur = conn.cursor(row_factory=class_row(DeviceRow))
    await cur.execute(
        "SELECT d.device_id, s.name AS site_name, d.device_type, d.model, d.battery_pct, d.state,"
        " (SELECT a.patient_id FROM device_assignments a WHERE a.device_id = d.device_id"
        "   AND a.unassigned_at IS NULL ORDER BY a.assigned_at DESC LIMIT 1) AS patient_id"
        " FROM devices d LEFT JOIN sites s USING (site_id)"
        " WHERE d.device_id = %(device_id)s AND " + scope_predicate("d.site_id"),
        {**scope.sql_params(), "device_id": device_id},
    )
    return await cur.fetchone()
