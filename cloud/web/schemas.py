"""Wire shapes of the dashboard's own read APIs (ward overview, admin tables and statistics)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from cloud.api.schemas import News2Out


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DeviceOut(_Out):
    """A device with its last reported state (connected, disconnected, reconnecting, lost) and battery."""

    device_id: str
    device_type: str | None
    model: str | None
    state: str | None
    battery_pct: float | None
    last_seen_at: dt.datetime | None
    low_battery: bool


class WardVitalOut(_Out):
    """A tile's latest value of one kind (display names come from the dashboard's catalogues)."""

    kind: str
    time: dt.datetime
    value: float
    unit: str
    quality: int
    quality_names: list[str]


class WardPatientOut(_Out):
    """One tile of the ward overview."""

    patient_id: str
    site_id: str
    site_name: str
    ward: str | None
    bed: str | None
    latest: list[WardVitalOut]
    news2: News2Out | None
    devices: list[DeviceOut]
    artefact: bool  # a latest sample carries an artefact flag (IEC 60601-1-8 technical condition)
    risk_rank: int  # 4 high, 3 medium, 2 low-medium, 1 low, 0 no score


class SiteOut(_Out):
    site_id: str
    name: str
    name_zh: str | None


class WardOut(_Out):
    """GET /api/ward/overview: patients in scope, highest risk first."""

    generated_at: dt.datetime
    sites: list[SiteOut]
    patients: list[WardPatientOut]


class LaneOut(_Out):
    depth: int
    bytes: int
    oldest_age_s: float | None


class EdgeOut(_Out):
    """An edge node: registration, last heartbeat and outbox backlog."""

    edge_id: str
    site_id: str
    site_name: str
    site_name_zh: str | None
    name: str | None
    status: str  # active or revoked
    last_seen_at: dt.datetime | None
    online: bool | None  # the last status message (None: never reported)
    status_at: dt.datetime | None
    software_version: str | None
    devices_connected: int | None
    outbox_depth: int | None
    outbox: dict[str, LaneOut]


class EdgesOut(_Out):
    edges: list[EdgeOut]


class AdminDeviceOut(_Out):
    """A device with its site and the patient it is assigned to (or last measured)."""

    device_id: str
    site_id: str | None
    site_name: str | None
    device_type: str | None
    model: str | None
    state: str | None
    battery_pct: float | None
    last_seen_at: dt.datetime | None
    patient_id: str | None
    assigned_at: dt.datetime | None


class DevicesOut(_Out):
    devices: list[AdminDeviceOut]


class DayCount(_Out):
    day: dt.date
    count: int


class PriorityDay(_Out):
    day: dt.date
    high: int
    medium: int
    low: int


class ResponseDay(_Out):
    day: dt.date
    accepted: int
    median_response_s: float | None
    within_sla: int


class StatsOut(_Out):
    """GET /api/admin/stats: daily series over the last `days` days (in the given time zone)."""

    days: int
    timezone: str
    consultations: list[DayCount]
    responses: list[ResponseDay]
    alerts: list[PriorityDay]
