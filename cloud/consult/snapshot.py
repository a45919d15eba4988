"""The clinical picture frozen into a consultation when it is requested: the latest vitals of each kind and
the NEWS2 at that moment (proto.news2 through cloud.api.news2_history, the dashboard's scoring), and the
urgency NEWS2 calls for (RCP 2017 chart 3: a high score needs an emergency response, a medium score or a
single red parameter an urgent one)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cloud.api import queries
from cloud.api.auth.store import Conn
from cloud.api.news2_history import LONGEST_RECENCY, PARAMETER_KINDS, MinuteValue, score_now
from cloud.triage.lexicon import Urgency
from proto.quality import Quality
from proto.vocabulary import kind, kind_by_wire_id

# How far back the snapshot looks: spot measurements (weight, glucose) of the last week still inform.
SNAPSHOT_LOOKBACK = dt.timedelta(days=7)
_NEWS2_KIND_IDS = tuple(sorted(kind(name).wire_id for name in PARAMETER_KINDS.values()))
_RISK_URGENCY: dict[str, Urgency] = {
    "low": Urgency.ROUTINE, "low-medium": Urgency.URGENT, "medium": Urgency.URGENT, "high": Urgency.EMERGENCY,
}


async def vitals_snapshot(conn: Conn, patient_id: str, *, now: dt.datetime) -> dict[str, Any]:
    """{"taken_at", "vitals": {kind: {time, value, unit, quality, quality_names, display_zh, display_en}}}."""
    samples = await queries.latest_samples(conn, [patient_id], lookback=SNAPSHOT_LOOKBACK)
    vitals: dict[str, Any] = {}
    for sample in samples:
        vital = kind_by_wire_id(sample.kind_id)
        vitals[vital.name] = {
            "time": sample.time.isoformat(), "value": sample.value, "unit": vital.unit, "quality": sample.quality,
            "quality_names": list(Quality(sample.quality).names), "display_zh": vital.display_zh,
            "display_en": vital.display_en,
        }
    return {"taken_at": now.isoformat(), "vitals": vitals}


async def news2_at(conn: Conn, patient_id: str, *, now: dt.datetime) -> dict[str, Any] | None:
    """NEWS2 from the latest artefact-free samples within their recency windows, or None without any."""
    clean = await queries.latest_samples(conn, [patient_id], lookback=LONGEST_RECENCY, kind_ids=_NEWS2_KIND_IDS,
                                         clean_only=True)
    latest = {kind_by_wire_id(s.kind_id).name: MinuteValue(s.time, s.value) for s in clean}
    point = score_now(latest, now=now)
    if point is None:
        return None
    score = point.score
    return {"as_of": now.isoformat(), "total": score.total, "risk": score.risk, "subscores": dict(score.subscores),
            "complete": score.complete, "missing": list(score.missing)}


def news2_urgency(news2: dict[str, Any] | None) -> Urgency:
    """The urgency a NEWS2 snapshot calls for (routine without one)."""
    if news2 is None:
        return Urgency.ROUTINE
    return _RISK_URGENCY.get(str(news2.get("risk")), Urgency.ROUTINE)
