"""Read-only queries behind the dashboard's admin pages: edges, devices and daily statistics.

Edges: the registry (`edges`) with the last status message each edge sent (`edge_status`: online/offline and
its outbox lanes, proto.messages.EdgeStatus). Devices: `devices` with the current assignment, or else the
patient of their latest sample. Statistics: consultations created per day, their response times (offer to
acceptance) against the SLA of their urgency (cloud/consult/sla.py), and alert incidents per priority.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from typing import Any, Final

from cloud.api.auth.store import Conn
from cloud.consult.sla import SlaPolicy
from cloud.triage.lexicon import Urgency
from cloud.web.schemas import (
    AdminDeviceOut,
    DayCount,
    EdgeOut,
    LaneOut,
    PriorityDay,
    ResponseDay,
    StatsOut,
)

MAX_DAYS: Final = 366

_EDGES: Final = """
SELECT e.edge_id, e.site_id, s.name, s.name_zh, e.name, e.status, e.last_seen_at, st.state, st.at, st.body
  FROM edges e JOIN sites s USING (site_id) LEFT JOIN edge_status st USING (edge_id)
 ORDER BY e.site_id, e.edge_id
"""
_DEVICES: Final = """
SELECT d.device_id, d.site_id, s.name, d.device_type, d.model, d.state, d.battery_pct, d.last_seen_at,
       coalesce(a.patient_id, v.patient_id), a.assigned_at
  FROM devices d LEFT JOIN sites s USING (site_id)
  LEFT JOIN LATERAL (SELECT patient_id, assigned_at FROM device_assignments
                      WHERE device_id = d.device_id AND unassigned_at IS NULL
                      ORDER BY assigned_at DESC LIMIT 1) a ON true
  LEFT JOIN LATERAL (SELECT patient_id FROM vitals
                      WHERE device_id = d.device_id AND time > now() - interval '1 day' AND a.patient_id IS NULL
                      ORDER BY time DESC LIMIT 1) v ON true
 ORDER BY d.site_id NULLS LAST, d.device_id
"""
_CONSULTATIONS: Final = """
SELECT (created_at AT TIME ZONE %(tz)s)::date AS day, count(*) FROM consultations
 WHERE created_at >= %(since)s GROUP BY 1 ORDER BY 1
"""
_RESPONSES: Final = """
SELECT (c.accepted_at AT TIME ZONE %(tz)s)::date AS day, c.urgency,
       extract(epoch FROM o.responded_at - o.offered_at) AS response_s
  FROM consultations c JOIN consultation_offers o
    ON o.consultation_id = c.consultation_id AND o.outcome = 'accepted'
 WHERE c.accepted_at >= %(since)s
"""
_ALERTS: Final = """
SELECT (opened_at AT TIME ZONE %(tz)s)::date AS day, priority, count(*) FROM incidents
 WHERE opened_at >= %(since)s AND category <> 'advisory' GROUP BY 1, 2 ORDER BY 1
"""


def edge_out(row: tuple[Any, ...]) -> EdgeOut:
    """An edge row with its last status body (proto EdgeStatus wire JSON) unpacked."""
    edge_id, site_id, site_name, site_name_zh, name, status, last_seen, state, status_at, body = row
    body = body if isinstance(body, Mapping) else {}
    raw_lanes = body.get("outbox")
    lanes: Mapping[str, Any] = raw_lanes if isinstance(raw_lanes, Mapping) else {}
    outbox = {
        str(lane): LaneOut(depth=int(v.get("depth", 0)), bytes=int(v.get("bytes", 0)),
                           oldest_age_s=v.get("oldest_age_s"))
        for lane, v in lanes.items() if isinstance(v, Mapping)
    }
    connected = body.get("devices_connected")
    return EdgeOut(
        edge_id=edge_id, site_id=site_id, site_name=site_name, site_name_zh=site_name_zh, name=name, status=status,
        last_seen_at=last_seen,
        online=None if state is None else state == "online", status_at=status_at,
        software_version=body.get("software_version") if isinstance(body.get("software_version"), str) else None,
        devices_connected=connected if isinstance(connected, int) else None,
        outbox_depth=sum(lane.depth for lane in outbox.values()) if state is not None else None, outbox=outbox,
    )


async def edges(conn: Conn) -> list[EdgeOut]:
    cur = await conn.execute(_EDGES)
    return [edge_out(row) for row in await cur.fetchall()]


async def devices(conn: Conn) -> list[AdminDeviceOut]:
    cur = await conn.execute(_DEVICES)
    return [
        AdminDeviceOut(device_id=r[0], site_id=r[1], site_name=r[2], device_type=r[3], model=r[4], state=r[5],
                       battery_pct=r[6], last_seen_at=r[7], patient_id=r[8], assigned_at=r[9])
        for r in await cur.fetchall()
    ]


def day_range(days: int, tz: zoneinfo.ZoneInfo, now: dt.datetime) -> list[dt.date]:
    """The last `days` calendar days in `tz`, oldest first, ending today."""
    today = now.astimezone(tz).date()
    return [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]


def response_days(rows: list[tuple[dt.date, str, float]], days: list[dt.date], sla: SlaPolicy) -> list[ResponseDay]:
    """Per day: accepted offers, their median response time and how many met their urgency's SLA."""
    by_day: dict[dt.date, list[tuple[str, float]]] = {}
    for day, urgency, seconds in rows:
        by_day.setdefault(day, []).append((urgency, float(seconds)))
    out = []
    for day in days:
        items = by_day.get(day, [])
        times = sorted(s for _, s in items)
        median = None
        if times:
            mid = len(times) // 2
            median = times[mid] if len(times) % 2 else (times[mid - 1] + times[mid]) / 2
        within = sum(1 for urgency, s in items if s <= sla.response_s(Urgency(urgency)))
        out.append(ResponseDay(day=day, accepted=len(items), median_response_s=median, within_sla=within))
    return out


async def stats(conn: Conn, *, days: int, timezone: str, now: dt.datetime, sla: SlaPolicy) -> StatsOut:
    """Daily consultation volume, response times against the SLA, and alert incidents by priority."""
    tz = zoneinfo.ZoneInfo(timezone)
    calendar = day_range(days, tz, now)
    since = dt.datetime.combine(calendar[0], dt.time(), tzinfo=tz)
    params = {"tz": timezone, "since": since}
    counts = dict(await (await conn.execute(_CONSULTATIONS, params)).fetchall())
    responses = [(r[0], r[1], float(r[2])) for r in await (await conn.execute(_RESPONSES, params)).fetchall()
                 if r[2] is not None]
    alerts: dict[dt.date, dict[str, int]] = {}
    for day, priority, count in await (await conn.execute(_ALERTS, params)).fetchall():
        alerts.setdefault(day, {})[priority] = int(count)
    return StatsOut(
        days=days, timezone=timezone,
        consultations=[DayCount(day=d, count=int(counts.get(d, 0))) for d in calendar],
        responses=response_days(responses, calendar, sla),
        alerts=[PriorityDay(day=d, high=alerts.get(d, {}).get("high", 0), medium=alerts.get(d, {}).get("medium", 0),
                            low=alerts.get(d, {}).get("low", 0)) for d in calendar],
    )
