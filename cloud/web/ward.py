"""The ward overview: every visible patient's latest vitals, NEWS2 and device status, highest risk first.

It reads what a tile shows and nothing more: the latest sample of the kinds on a tile and those NEWS2 needs,
in one indexed read of vitals_latest (kept by the ingest writer, migration 0008), then the raw data only for
the few kinds whose newest sample is an artefact (NEWS2 takes the latest clean one). NEWS2 is the vitals API's
current score (`cloud.api.news2_history.score_now`, the same recency windows over artefact-free samples), so a
tile and GET /api/patients agree. Patients are recorded in the audit log once per session and window
(cloud/web/audit_window.py), before the data is returned.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from typing import Any, Final

import pydantic_core
from psycopg.rows import class_row

from cloud.api import queries
from cloud.api.audit import audit_many
from cloud.api.auth.models import User
from cloud.api.auth.scoping import SiteScope, scope_predicate
from cloud.api.auth.store import Conn
from cloud.api.fhir_resources import PatientRow
from cloud.api.news2_history import PARAMETER_KINDS, MinuteValue, score_now
from cloud.api.schemas import News2Out
from cloud.api.vitals_service import current_news2_inputs, news2_out
from cloud.web.audit_window import AuditWindow
from cloud.web.schemas import DeviceOut, SiteOut
from proto.quality import ARTEFACT, Quality
from proto.vocabulary import kind, kind_by_wire_id

AUDIT_EVENT: Final = "ward.overview"
# RCP NEWS2 clinical risk bands, most urgent first in the overview.
RISK_RANK: Final = {"high": 4, "medium": 3, "low-medium": 2, "low": 1}
LOW_BATTERY_PCT: Final = 20.0  # below this a device tile warns (a wearable then has hours, not a shift, left)
TILE_KINDS: Final = ("heart_rate", "spo2", "respiratory_rate", "systolic_bp", "diastolic_bp", "body_temperature",
                     "consciousness", "on_oxygen")
NEWS2_KINDS: Final = frozenset(PARAMETER_KINDS.values())
# Tiles show what was measured in the last day (older values are history, on the patient page).
WARD_LOOKBACK: Final = dt.timedelta(days=1)
WARD_KIND_IDS: Final = tuple(sorted({kind(name).wire_id for name in (*TILE_KINDS, *NEWS2_KINDS)}))
_ARTEFACT: Final = int(ARTEFACT)

# The answer in WardOut's shape as plain data, serialised as it is (render_json): the overview refreshes on
# every live update, and validating it into a thousand model instances per refresh cost more than its queries
# and kept the garbage collector busy (full collections of the API process, ~100 ms each). Everything in it
# comes from typed rows and our own models; tests check that the JSON validates as WardOut.
WardAnswer = dict[str, Any]

_PATIENTS: Final = (
    "SELECT p.patient_id, p.site_id, s.name AS site_name, p.ward, p.bed FROM patients p JOIN sites s USING (site_id)"
    " WHERE " + scope_predicate("p.site_id", patient_column="p.patient_id")
    + " AND (%(site)s::text IS NULL OR p.site_id = %(site)s)"
)
_DEVICES: Final = """
SELECT x.patient_id, d.device_id, d.device_type, d.model, d.state, d.battery_pct, d.last_seen_at
  FROM (SELECT a.patient_id, a.device_id FROM device_assignments a
         WHERE a.patient_id = ANY(%(patients)s::text[]) AND a.unassigned_at IS NULL
        UNION
        SELECT * FROM unnest(%(seen_patients)s::text[], %(seen_devices)s::text[])) AS x (patient_id, device_id)
  JOIN devices d ON d.device_id = x.device_id
 ORDER BY x.patient_id, d.device_id
"""


def render_json(answer: WardAnswer) -> bytes:
    """The answer's JSON, as pydantic renders WardOut (UTC times with Z, models by their own serialisers)."""
    return pydantic_core.to_json(answer)


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


async def scoped_patients(conn: Conn, scope: SiteScope, site_id: str | None = None) -> list[PatientRow]:
    """The patients in `scope` (of one site when `site_id` is given)."""
    cur = conn.cursor(row_factory=class_row(PatientRow))
    await cur.execute(_PATIENTS + " ORDER BY p.site_id, p.ward NULLS LAST, p.bed NULLS LAST, p.patient_id",
                      {**scope.sql_params(), "site": site_id})
    return await cur.fetchall()


async def latest_for_ward(conn: Conn, patient_ids: Sequence[str], *, now: dt.datetime
                          ) -> tuple[list[queries.LatestSample], dict[str, dict[str, MinuteValue]]]:
    """The latest sample of each ward kind, and the NEWS2 inputs (artefact-free, within the recency windows)."""
    latest = await queries.latest_samples(conn, patient_ids, lookback=WARD_LOOKBACK, kind_ids=WARD_KIND_IDS)
    return latest, await current_news2_inputs(conn, latest, now=now)


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
    """The WardVitalOut fields of a sample as a plain dict."""
    vital = kind_by_wire_id(sample.kind_id)
    return {"kind": vital.name, "time": sample.time, "value": sample.value, "unit": vital.unit,
            "quality": sample.quality, "quality_names": quality_names(sample.quality)}


def sort_key(tile: dict[str, Any]) -> tuple[int, int, str, str, str, str]:
    """Highest risk and score first, then by site, ward, bed and id."""
    news2 = tile["news2"]
    total = news2.total if news2 is not None else -1
    return (-tile["risk_rank"], -total, tile["site_id"], tile["ward"] or "", tile["bed"] or "", tile["patient_id"])


async def ward_overview(conn: Conn, *, user: User, session: bytes, scope: SiteScope, site_id: str | None, ip: str,
                        seen: AuditWindow, now: dt.datetime | None = None) -> WardAnswer:
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
    return {"generated_at": now, "sites": sites, "patients": tiles}
