"""The ward overview: every visible patient's latest vitals, NEWS2 and device status, highest risk first.

It reads what a tile shows and nothing more: the latest sample of the kinds on a tile and those NEWS2 needs
(one index probe per patient and kind, rather than every kind of the vocabulary), then the latest clean
sample only for the few kinds whose newest one is an artefact. NEWS2 is the vitals API's current score
(`cloud.api.news2_history.score_now`, the same recency windows over artefact-free samples), so a tile and
GET /api/patients agree. Patients are recorded in the audit log once per session and window
(cloud/web/audit_window.py), before the data is returned.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from typing import Any, Final

from psycopg.rows import class_row

from cloud.api import queries
from cloud.api.audit import audit_many
from cloud.api.auth.models import User
from cloud.api.auth.scoping import SiteScope, scope_predicate
from cloud.api.auth.store import Conn
from cloud.api.fhir_resources import PatientRow
from cloud.api.news2_history import LONGEST_RECENCY, PARAMETER_KINDS, MinuteValue, score_now
from cloud.api.schemas import News2Out
from cloud.api.vitals_service import news2_out
from cloud.web.audit_window import AuditWindow
from cloud.web.schemas import DeviceOut, SiteOut, WardOut
from proto.quality import ARTEFACT, Quality
from proto.vocabulary import kind, kind_by_wire_id

AUDIT_EVENT: Final = "ward.overview"
# RCP NEWS2 clinical risk bands, most urgent first in the overview.
RISK_RANK: Final = {"high": 4, "medium": 3, "low-medium": 2, "low": 1}
LOW_BATTERY_PCT: Final = 20.0  # below this a device tile warns (a wearable then has hours, not a shift, left)
TILE_KINDS: Final = ("heart_rate", "spo2", "respiratory_rate", "systolic_bp", "diastolic_bp", "body_temperature",
                     "consciousness", "on_oxygen")
NEWS2_KINDS: Final = frozenset(PARAMETER_KINDS.values())
# Tiles show what was measured in the last day (older values are history, on the patient page); a day also
# bounds how many daily partitions each probe visits.
WARD_LOOKBACK: Final = dt.timedelta(days=1)
RECENT: Final = dt.timedelta(hours=1)
CLOCK_SKEW: Final = dt.timedelta(minutes=5)  # samples stamped slightly ahead by an edge's clock still count
WARD_KIND_IDS: Final = tuple(sorted({kind(name).wire_id for name in (*TILE_KINDS, *NEWS2_KINDS)}))
NEWS2_KIND_NAMES: Final = {kind(name).wire_id: name for name in NEWS2_KINDS}
_ARTEFACT: Final = int(ARTEFACT)

_PATIENTS: Final = (
    "SELECT p.patient_id, p.site_id, s.name AS site_name, p.ward, p.bed FROM patients p JOIN sites s USING (site_id)"
    " WHERE " + scope_predicate("p.site_id", patient_column="p.patient_id")
    + " AND (%(site)s::text IS NULL OR p.site_id = %(site)s)"
)
_LATEST: Final = """
SELECT x.patient_id, x.kind_id, v.time, v.value, v.quality, v.device_id
  FROM unnest(%(patients)s::text[], %(kinds)s::smallint[]) AS x (patient_id, kind_id)
 CROSS JOIN LATERAL (
       SELECT time, value, quality, device_id FROM vitals
        WHERE patient_id = x.patient_id AND kind_id = x.kind_id
          AND time > now() - %(lookback)s AND time <= now() + %(skew)s
        ORDER BY time DESC LIMIT 1) AS v
 ORDER BY x.patient_id, x.kind_id
"""
_DEVICES: Final = """
SELECT x.patient_id, d.device_id, d.device_type, d.model, d.state, d.battery_pct, d.last_seen_at
  FROM (SELECT a.patient_id, a.device_id FROM device_assignments a
         WHERE a.patient_id = ANY(%(patients)s::text[]) AND a.unassigned_at IS NULL
        UNION
        SELECT * FROM unnest(%(seen_patients)s::text[], %(seen_devices)s::text[])) AS x (patient_id, device_id)
  JOIN devices d ON d.device_id = x.device_id
 ORDER BY x.patient_id, d.device_id
"""


def risk_rank(news2: News2Out | None) -> int:
    """4 high, 3 medium, 2 low-medium, 1 low, 0 without a score."""
    return RISK_RANK.get(news2.risk, 0) if news2 is not None else 0


def device_out(row: Sequence[object]) -> DeviceOut:
    _, device_id, device_type, model, state, battery, last_seen = row
    battery_pct = float(battery) if isinstance(battery, int | float) else None
    return DeviceOut(device_id=str(device_id), device_type=device_type if isinstance(device_type, str) else None,
                     model=model if isinstance(model, str) else None, state=state if isinstance(state, str) else None,
                     battery_pct=battery_pct,
                     last_seen_at=last_seen if isinstance(last_seen, dt.datetime) else None,
                     low_battery=battery_pct is not None and battery_pct < LOW_BATTERY_PCT)


def news2_inputs(samples: Iterable[queries.LatestSample]) -> dict[str, dict[str, MinuteValue]]:
    """Per patient, the artefact-free latest value of each NEWS2 kind (the input of `score_now`)."""
    inputs: dict[str, dict[str, MinuteValue]] = {}
    for sample in samples:
        name = NEWS2_KIND_NAMES.get(sample.kind_id)
        if name is not None and not sample.quality & _ARTEFACT:
            inputs.setdefault(sample.patient_id, {})[name] = MinuteValue(sample.time, sample.value)
    return inputs


async def scoped_patients(conn: Conn, scope: SiteScope, site_id: str | None = None) -> list[PatientRow]:
    """The patients in `scope` (of one site when `site_id` is given)."""
    cur = conn.cursor(row_factory=class_row(PatientRow))
    await cur.execute(_PATIENTS + " ORDER BY p.site_id, p.ward NULLS LAST, p.bed NULLS LAST, p.patient_id",
                      {**scope.sql_params(), "site": site_id})
    return await cur.fetchall()


async def latest_samples(conn: Conn, pairs: Sequence[tuple[str, int]], *, lookback: dt.timedelta
                         ) -> list[queries.LatestSample]:
    """The latest sample of each (patient, kind) within `lookback`: one index probe per pair. The upper bound
    lets run-time partition pruning skip the partitions created ahead (PostgreSQL prunes on stable
    expressions such as now() at executor start)."""
    cur = conn.cursor(row_factory=class_row(queries.LatestSample))
    await cur.execute(_LATEST, {"patients": [p for p, _ in pairs], "kinds": [k for _, k in pairs],
                                "lookback": lookback, "skew": CLOCK_SKEW})
    return await cur.fetchall()


async def latest_for_ward(conn: Conn, patient_ids: Sequence[str], *, now: dt.datetime
                          ) -> tuple[list[queries.LatestSample], dict[str, dict[str, MinuteValue]]]:
    """The latest sample of each ward kind, and the NEWS2 inputs (artefact-free, within the recency windows)."""
    # Monitored kinds almost always have a sample in the last hour, whose probes touch one daily partition;
    # only the pairs without one (spot measurements) look back the whole day.
    pairs = [(pid, k) for pid in patient_ids for k in WARD_KIND_IDS]
    latest = await latest_samples(conn, pairs, lookback=RECENT)
    found = {(s.patient_id, s.kind_id) for s in latest}
    missing = [pair for pair in pairs if pair not in found]
    if missing:
        latest += await latest_samples(conn, missing, lookback=WARD_LOOKBACK)
    inputs = news2_inputs(s for s in latest if now - s.time <= LONGEST_RECENCY)
    flagged = [s for s in latest if s.quality & _ARTEFACT and s.kind_id in NEWS2_KIND_NAMES]
    if flagged:  # only these need a second look for an older clean sample
        clean = await queries.latest_samples(
            conn, sorted({s.patient_id for s in flagged}), lookback=LONGEST_RECENCY,
            kind_ids=sorted({s.kind_id for s in flagged}), clean_only=True)
        wanted = {(s.patient_id, s.kind_id) for s in flagged}
        for patient_id, values in news2_inputs(c for c in clean if (c.patient_id, c.kind_id) in wanted).items():
            inputs.setdefault(patient_id, {}).update(values)
    return latest, inputs


async def patient_devices(conn: Conn, patient_ids: Sequence[str], latest: Iterable[queries.LatestSample]
                          ) -> dict[str, list[DeviceOut]]:
    """Devices per patient: current assignments and the devices of their latest samples."""
    seen = sorted({(s.patient_id, s.device_id) for s in latest if s.device_id})
    cur = await conn.execute(_DEVICES, {
        "patients": list(patient_ids),
        "seen_patients": [pid for pid, _ in seen], "seen_devices": [did for _, did in seen],
    })
    result: dict[str, list[DeviceOut]] = {}
    for row in await cur.fetchall():
        result.setdefault(str(row[0]), []).append(device_out(row))
    return result


async def visible_sites(conn: Conn, scope: SiteScope) -> list[SiteOut]:
    cur = await conn.execute("SELECT site_id, name, name_zh FROM sites WHERE " + scope_predicate("site_id")
                             + " ORDER BY site_id", scope.sql_params())
    return [SiteOut(site_id=r[0], name=r[1], name_zh=r[2]) for r in await cur.fetchall()]


@functools.lru_cache(maxsize=1024)
def quality_names(quality: int) -> tuple[str, ...]:
    return Quality(quality).names


def sample_dict(sample: queries.LatestSample) -> dict[str, Any]:
    """The WardVitalOut fields of a sample as a plain dict (validated with the whole answer at once: a
    thousand model constructions cost more than the query)."""
    vital = kind_by_wire_id(sample.kind_id)
    return {"kind": vital.name, "time": sample.time, "value": sample.value, "unit": vital.unit,
            "quality": sample.quality, "quality_names": quality_names(sample.quality)}


def sort_key(tile: dict[str, Any]) -> tuple[int, int, str, str, str, str]:
    """Highest risk and score first, then by site, ward, bed and id."""
    news2 = tile["news2"]
    total = news2.total if news2 is not None else -1
    return (-tile["risk_rank"], -total, tile["site_id"], tile["ward"] or "", tile["bed"] or "", tile["patient_id"])


async def ward_overview(conn: Conn, *, user: User, session: bytes, scope: SiteScope, site_id: str | None, ip: str,
                        seen: AuditWindow, now: dt.datetime | None = None) -> WardOut:
    """The overview of the caller's sites (or one of them); patients not recorded for this session within the
    audit window are recorded first (event `ward.overview`)."""
    now = now or dt.datetime.now(dt.UTC)
    sites = await visible_sites(conn, scope)
    patients = await scoped_patients(conn, scope, site_id) if not scope.is_empty else []
    ids = [p.patient_id for p in patients]
    tiles: list[dict[str, Any]] = []
    if ids:
        latest, inputs = await latest_for_ward(conn, ids, now=now)
        devices = await patient_devices(conn, ids, latest)
        due = seen.due(session, ids, now)
        if due:
            await audit_many(conn, AUDIT_EVENT, user, due, ip=ip)
            seen.recorded(session, due, now)
        by_patient: dict[str, list[dict[str, Any]]] = {}
        flagged: set[str] = set()
        for sample in latest:
            by_patient.setdefault(sample.patient_id, []).append(sample_dict(sample))
            if sample.quality & _ARTEFACT:
                flagged.add(sample.patient_id)
        for p in patients:
            point = score_now(inputs.get(p.patient_id, {}), now=now)
            news2 = news2_out(point) if point is not None else None
            tiles.append({
                "patient_id": p.patient_id, "site_id": p.site_id, "site_name": p.site_name, "ward": p.ward,
                "bed": p.bed, "latest": by_patient.get(p.patient_id, []), "news2": news2,
                "devices": devices.get(p.patient_id, []), "artefact": p.patient_id in flagged,
                "risk_rank": risk_rank(news2),
            })
    tiles.sort(key=sort_key)
    return WardOut.model_validate({"generated_at": now, "sites": sites, "patients": tiles})
