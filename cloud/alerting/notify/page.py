"""A page: one notification to one person about one incident, and its plain-text rendering (zh and en).

Pages name patients only by their pseudonymous id, ward and bed: never a name or a national id, whatever
the channel (a WeCom group is not a clinical record).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proto.schema import format_time

PRIORITY_ZH: Final = {"high": "高", "medium": "中", "low": "低"}
TIER_ZH: Final = {"primary": "一线值班", "secondary": "二线值班", "department_head": "科室主任"}
STATE_ZH: Final = {"triggered": "待处理", "acknowledged": "已确认", "resolved": "已解决"}


@dataclass(frozen=True, slots=True)
class Page:
    """Everything a channel needs to tell someone about an incident (stored with the delivery as JSON)."""

    delivery_id: uuid.UUID
    incident_id: uuid.UUID
    site_id: str
    patient_id: str
    rule: str
    category: str
    priority: str
    state: str
    alarm_state: str
    message: str
    raised_at: dt.datetime
    step: int
    round: int
    tier: str
    recipient_user_id: uuid.UUID
    recipient_username: str
    recipient_name: str
    site_name: str | None = None
    timezone: str = "Asia/Shanghai"
    department: str | None = None
    ward: str | None = None
    bed: str | None = None
    kind: str | None = None
    value: float | None = None
    news2_total: int | None = None
    link: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["delivery_id"] = str(self.delivery_id)
        data["incident_id"] = str(self.incident_id)
        data["recipient_user_id"] = str(self.recipient_user_id)
        data["raised_at"] = format_time(self.raised_at)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Page:
        fields = dict(data)
        for key in ("delivery_id", "incident_id", "recipient_user_id"):
            fields[key] = uuid.UUID(str(fields[key]))
        fields["raised_at"] = dt.datetime.fromisoformat(str(fields["raised_at"]))
        return cls(**fields)

    @property
    def where(self) -> str:
        """Site, ward and bed in one line."""
        parts = [self.site_name or self.site_id]
        if self.ward:
            parts.append(self.ward)
        if self.bed:
            parts.append(f"{self.bed}床 bed {self.bed}")
        return " · ".join(parts)

    def local_time(self) -> str:
        """When the alarm was raised, in the site's zone."""
        try:
            local = self.raised_at.astimezone(ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            local = self.raised_at
        return local.strftime("%Y-%m-%d %H:%M:%S %Z")

    def title(self) -> str:
        """A short subject line."""
        return (f"[{self.priority.upper()} {PRIORITY_ZH.get(self.priority, '')}] {self.rule} · {self.where} · "
                f"{self.patient_id}")

    def lines(self) -> list[str]:
        """The body as labelled lines (zh / en labels)."""
        lines = [
            f"优先级 Priority: {PRIORITY_ZH.get(self.priority, self.priority)} / {self.priority}",
            f"规则 Rule: {self.rule} ({self.category})",
            f"医院 Site: {self.where}",
            f"患者 Patient: {self.patient_id}",
            f"内容 Alarm: {self.message}",
            f"发生时间 Raised: {self.local_time()}",
            f"升级 Escalation: {TIER_ZH.get(self.tier, self.tier)} / {self.tier}, step {self.step + 1}",
            f"状态 State: {STATE_ZH.get(self.state, self.state)} / {self.state}",
        ]
        if self.news2_total is not None:
            lines.insert(4, f"NEWS2: {self.news2_total}")
        if self.link:
            lines.append(f"处理 Open: {self.link}")
        return lines

    def text(self) -> str:
        return "\n".join([self.title(), "", *self.lines(), "", f"incident {self.incident_id}"])
