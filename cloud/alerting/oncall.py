"""On-call schedules (pure): departments, rotations with handoffs, overrides, and who is on call now and next.

A site (county hospital) has departments; a department has a head and covers some wards (the default
department covers the rest). Each department has a rotation per tier (primary, secondary): members take turns
daily or weekly, handing over at a local wall-clock time (08:00 in the site's zone, Asia/Shanghai by default;
zoneinfo keeps it right across daylight-saving changes for sites that have them). An override puts someone
else on call for a window (sick leave, a swap) and wins over the rotation while it lasts.

    book = OnCallBook(departments, rotations, overrides)
    book.on_call("anxian", "icu", "primary", now)      -> Shift(user_id, starts_at, ends_at, source) | None
    book.next_shift("anxian", "icu", "primary", now)   -> the shift after the current one (another person
                                                          when the rota has one)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.alerting.errors import ScheduleError

RotaTier = Literal["primary", "secondary"]
ROTA_TIERS: Final[tuple[RotaTier, ...]] = get_args(RotaTier)
Period = Literal["daily", "weekly"]
DEFAULT_TIMEZONE: Final = "Asia/Shanghai"
_PERIOD_DAYS: Final[dict[str, int]] = {"daily": 1, "weekly": 7}
# How many shifts `next_shift` looks ahead for a different person before settling for the next shift.
_LOOKAHEAD: Final = 16


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ScheduleError when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {name!r}") from None


def _aware(when: dt.datetime, what: str) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ScheduleError(f"{what} must be timezone-aware, got {when!r}")


@dataclass(frozen=True, slots=True)
class Department:
    """A department of a site: its head (the last escalation tier) and the wards it covers."""

    site_id: str
    department_id: str
    name: str
    name_zh: str | None = None
    head_user_id: uuid.UUID | None = None
    wards: tuple[str, ...] = ()
    is_default: bool = False


def department_for(departments: Iterable[Department], site_id: str, ward: str | None) -> Department | None:
    """The department that covers `ward` at `site_id`, else the site's default department (else None)."""
    default = None
    for department in departments:
        if department.site_id != site_id:
            continue
        if ward is not None and ward in department.wards:
            return department
        if department.is_default and default is None:
            default = department
    return default


@dataclass(frozen=True, slots=True)
class Shift:
    """Someone on call for a tier of a department from `starts_at` to `ends_at` (UTC)."""

    user_id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    source: Literal["rotation", "override"]
    source_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Rotation:
    """Members taking turns at a tier: member 0 takes the shift that starts at `anchor`'s handoff.

    Daily shifts start every day at `handoff` local time; weekly shifts start at `handoff` on
    `handoff_weekday` (0 = Monday). The member of a shift is members[shifts since the anchor mod len].
    """

    rotation_id: uuid.UUID
    site_id: str
    department_id: str
    tier: RotaTier
    members: tuple[uuid.UUID, ...]
    period: Period = "daily"
    handoff: dt.time = dt.time(8, 0)
    handoff_weekday: int = 0
    anchor: dt.date = dt.date(2026, 1, 5)  # a Monday
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        if not self.members:
            raise ScheduleError("a rotation needs at least one member")
        if self.tier not in ROTA_TIERS:
            raise ScheduleError(f"unknown tier {self.tier!r}: use {', '.join(ROTA_TIERS)}")
        if self.period not in _PERIOD_DAYS:
            raise ScheduleError(f"unknown period {self.period!r}: use daily or weekly")
        if not 0 <= self.handoff_weekday <= 6:
            raise ScheduleError(f"handoff_weekday must be 0 (Monday) .. 6, got {self.handoff_weekday}")
        if self.handoff.tzinfo is not None:
            raise ScheduleError("handoff is a local wall-clock time: give it without a zone")
        zone(self.timezone)

    def _first_start_date(self) -> dt.date:
        """The local date of the first shift start on or after the anchor."""
        if self.period == "daily":
            return self.anchor
        return self.anchor + dt.timedelta(days=(self.handoff_weekday - self.anchor.weekday()) % 7)

    def _start(self, day: dt.date) -> dt.datetime:
        """The UTC instant of the handoff on local date `day` (a nonexistent local time resolves forward)."""
        local = dt.datetime.combine(day, self.handoff, tzinfo=zone(self.timezone))
        return local.astimezone(dt.UTC)

    def shift_at(self, when: dt.datetime) -> Shift:
        """The rotation's shift that covers `when`."""
        _aware(when, "when")
        days = _PERIOD_DAYS[self.period]
        local_day = when.astimezone(zone(self.timezone)).date()
        first = self._first_start_date()
        index = (local_day - first).days // days
        start_day = first + dt.timedelta(days=index * days)
        if self._start(start_day) > when:  # before today's (this week's) handoff: the previous shift
            index -= 1
            start_day -= dt.timedelta(days=days)
        end_day = start_day + dt.timedelta(days=days)
        member = self.members[index % len(self.members)]
        return Shift(member, self._start(start_day), self._start(end_day), "rotation", self.rotation_id)


@dataclass(frozen=True, slots=True)
class Override:
    """`user_id` is on call for a tier of a department from `starts_at` until `ends_at`, whatever the rota says."""

    override_id: uuid.UUID
    site_id: str
    department_id: str
    tier: RotaTier
    user_id: uuid.UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str | None = None

    def __post_init__(self) -> None:
        _aware(self.starts_at, "starts_at")
        _aware(self.ends_at, "ends_at")
        if self.ends_at <= self.starts_at:
            raise ScheduleError("an override must end after it starts")
        if self.tier not in ROTA_TIERS:
            raise ScheduleError(f"unknown tier {self.tier!r}: use {', '.join(ROTA_TIERS)}")

    def covers(self, when: dt.datetime) -> bool:
        return self.starts_at <= when < self.ends_at


@dataclass(frozen=True, slots=True)
class OnCall:
    """Now and next for one tier of a department."""

    tier: RotaTier
    now: Shift | None
    next: Shift | None


class OnCallBook:
    """Everything needed to answer "who is on call": departments, rotations and overrides of some sites."""

    def __init__(self, departments: Sequence[Department] = (), rotations: Sequence[Rotation] = (),
                 overrides: Sequence[Override] = ()) -> None:
        self.departments = tuple(departments)
        self._rotations: dict[tuple[str, str, str], Rotation] = {}
        for rotation in sorted(rotations, key=lambda r: str(r.rotation_id)):
            self._rotations.setdefault((rotation.site_id, rotation.department_id, rotation.tier), rotation)
        self._overrides: dict[tuple[str, str, str], list[Override]] = {}
        for override in overrides:
            self._overrides.setdefault((override.site_id, override.department_id, override.tier), []).append(override)
        for found in self._overrides.values():
            found.sort(key=lambda o: (o.starts_at, str(o.override_id)))

    def department(self, site_id: str, department_id: str | None) -> Department | None:
        for department in self.departments:
            if department.site_id == site_id and department.department_id == department_id:
                return department
        return None

    def department_for(self, site_id: str, ward: str | None) -> Department | None:
        return department_for(self.departments, site_id, ward)

    def site_departments(self, site_id: str) -> list[Department]:
        return [d for d in self.departments if d.site_id == site_id]

    def on_call(self, site_id: str, department_id: str, tier: RotaTier, when: dt.datetime) -> Shift | None:
        """Who covers `tier` at `when`: an override covering it (the latest starting wins), else the rotation."""
        _aware(when, "when")
        key = (site_id, department_id, tier)
        overrides = self._overrides.get(key, [])
        active = [o for o in overrides if o.covers(when)]
        if active:
            o = active[-1]
            return Shift(o.user_id, o.starts_at, o.ends_at, "override", o.override_id)
        rotation = self._rotations.get(key)
        if rotation is None:
            return None
        shift = rotation.shift_at(when)
        # The rotation's shift is cut short by the overrides around `when`.
        starts, ends = shift.starts_at, shift.ends_at
        for o in overrides:
            if o.ends_at <= when:
                starts = max(starts, o.ends_at)
            elif o.starts_at > when:
                ends = min(ends, o.starts_at)
        return Shift(shift.user_id, starts, ends, "rotation", shift.source_id)

    def next_shift(self, site_id: str, department_id: str, tier: RotaTier, when: dt.datetime) -> Shift | None:
        """The shift after the one covering `when`: the first with another person within a few shifts, else
        simply the next one (a rota of one)."""
        current = self.on_call(site_id, department_id, tier, when)
        if current is None:
            upcoming = [o for o in self._overrides.get((site_id, department_id, tier), []) if o.starts_at > when]
            if not upcoming:
                return None
            o = upcoming[0]
            return Shift(o.user_id, o.starts_at, o.ends_at, "override", o.override_id)
        first_after: Shift | None = None
        cursor = current
        for _ in range(_LOOKAHEAD):
            following = self.on_call(site_id, department_id, tier, cursor.ends_at)
            if following is None:
                return first_after
            if first_after is None:
                first_after = following
            if following.user_id != current.user_id:
                return following
            cursor = following
        return first_after

    def who(self, site_id: str, department_id: str, tier: RotaTier, when: dt.datetime) -> OnCall:
        return OnCall(tier, self.on_call(site_id, department_id, tier, when),
                      self.next_shift(site_id, department_id, tier, when))
