"""Escalation policies (pure): who is paged next about an unacknowledged incident, and when.

A policy walks its tiers in order (primary -> secondary -> department head by default), waiting a delay that
depends on the alarm priority between steps (high: 2 min, medium: 10 min by default: IEC 60601-1-8 asks a
high priority alarm for an immediate response and a medium one for a prompt response), and walks them again
`repeat` times in all. Only clinical incidents of a priority that has a delay page anyone: low-priority and
technical alarms go to the dashboard, advisory signals never page on their own.

The delay is counted from the previous step actually taken, so a priority change takes effect at the next
step and a service that was down resumes one step at a time instead of paging every tier at once:

    step 0 is due when paging starts; step k+1 is due at (time step k was taken) + delay(priority)

A tier with nobody on call is skipped: the next tier takes its slot (`skip`), so a gap in the rota never
stops the escalation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from cloud.alerting.errors import PolicyError
from proto.messages import AlertCategory, Priority

Tier = Literal["primary", "secondary", "department_head"]
TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
PRIORITIES: Final[tuple[Priority, ...]] = get_args(Priority)

DEFAULT_DELAYS_S: Final[Mapping[Priority, float]] = MappingProxyType({"high": 120.0, "medium": 600.0})
# How long an acknowledgement holds before the incident pages again if it is still open.
DEFAULT_ACK_TIMEOUT_S: Final[Mapping[Priority, float]] = MappingProxyType(
    {"high": 900.0, "medium": 1800.0, "low": 3600.0})
# How long an alarm must stay back in range (after the engine cleared it) before the incident resolves itself.
DEFAULT_RESOLVE_HOLD_S: Final = 300.0


def _frozen(mapping: Mapping[Priority, float]) -> Mapping[Priority, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Tiers, per-priority delays and repeats for a site (or one department of it), plus the incident timers.

    `ack_timeout_s` (per priority) and `resolve_hold_s` drive the incident lifecycle (incidents.py); they
    live here because an admin sets them together with the paging rules.
    """

    steps: tuple[Tier, ...] = ("primary", "secondary", "department_head")
    delays_s: Mapping[Priority, float] = field(default_factory=lambda: DEFAULT_DELAYS_S)
    repeat: int = 2
    ack_timeout_s: Mapping[Priority, float] = field(default_factory=lambda: DEFAULT_ACK_TIMEOUT_S)
    resolve_hold_s: float = DEFAULT_RESOLVE_HOLD_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "delays_s", _frozen(self.delays_s))
        object.__setattr__(self, "ack_timeout_s", _frozen(self.ack_timeout_s))
        self.validate()

    def validate(self) -> None:
        if not self.steps:
            raise PolicyError("a policy has at least one step")
        unknown = [s for s in self.steps if s not in TIERS]
        if unknown:
            raise PolicyError(f"unknown tier(s) {unknown}: use {', '.join(TIERS)}")
        if not 1 <= self.repeat <= 10:
            raise PolicyError(f"repeat must be 1..10, got {self.repeat}")
        for name, table in (("delays_s", self.delays_s), ("ack_timeout_s", self.ack_timeout_s)):
            for priority, seconds in table.items():
                if priority not in PRIORITIES:
                    raise PolicyError(f"{name}: unknown priority {priority!r}")
                if not 0 < seconds <= 86_400:
                    raise PolicyError(f"{name}[{priority}] must be in (0, 86400] s, got {seconds}")
        if not 0 <= self.resolve_hold_s <= 86_400:
            raise PolicyError(f"resolve_hold_s must be in [0, 86400] s, got {self.resolve_hold_s}")

    def pages(self, category: AlertCategory, priority: Priority) -> bool:
        """Whether an incident of this category and priority pages people (clinical, with a delay set)."""
        return category == "clinical" and priority in self.delays_s

    def delay(self, priority: Priority) -> dt.timedelta:
        """The wait between steps at `priority` (the shortest configured delay for a priority without one)."""
        seconds = self.delays_s.get(priority, min(self.delays_s.values(), default=DEFAULT_DELAYS_S["high"]))
        return dt.timedelta(seconds=seconds)

    def ack_timeout(self, priority: Priority) -> dt.timedelta:
        return dt.timedelta(seconds=self.ack_timeout_s.get(priority, DEFAULT_ACK_TIMEOUT_S["low"]))

    @property
    def resolve_hold(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.resolve_hold_s)

    @property
    def total_steps(self) -> int:
        return len(self.steps) * self.repeat

    def to_dict(self) -> dict[str, Any]:
        return {"steps": list(self.steps), "delays_s": dict(self.delays_s), "repeat": self.repeat,
                "ack_timeout_s": dict(self.ack_timeout_s), "resolve_hold_s": self.resolve_hold_s}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EscalationPolicy:
        """A policy from its JSON form (missing keys take the defaults); PolicyError when malformed."""
        try:
            defaults = cls()
            return cls(
                steps=tuple(data.get("steps", defaults.steps)),
                delays_s={k: float(v) for k, v in dict(data.get("delays_s", defaults.delays_s)).items()},
                repeat=int(data.get("repeat", defaults.repeat)),
                ack_timeout_s={k: float(v) for k, v in dict(data.get("ack_timeout_s", defaults.ack_timeout_s)).items()},
                resolve_hold_s=float(data.get("resolve_hold_s", defaults.resolve_hold_s)),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, PolicyError):
                raise
            raise PolicyError(f"malformed escalation policy: {exc}") from None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far the escalation of one incident has got: started at, steps taken, when the last was taken."""

    started_at: dt.datetime
    steps_taken: int = 0
    last_step_at: dt.datetime | None = None

    @classmethod
    def start(cls, at: dt.datetime) -> Progress:
        return cls(started_at=at)

    def taken(self, at: dt.datetime) -> Progress:
        """The progress after a step was taken (someone was paged) at `at`."""
        return replace(self, steps_taken=self.steps_taken + 1, last_step_at=at)

    def skip(self) -> Progress:
        """The progress after a step found nobody to page: the next tier takes its slot."""
        return replace(self, steps_taken=self.steps_taken + 1)


@dataclass(frozen=True, slots=True)
class Step:
    """The next step of an escalation: overall number, round, tier, and when it is due."""

    number: int
    round: int
    tier: Tier
    due_at: dt.datetime


def next_step(policy: EscalationPolicy, priority: Priority, progress: Progress) -> Step | None:
    """The next step to take, or None once every step of every round has been taken."""
    n = progress.steps_taken
    if n >= policy.total_steps:
        return None
    due = progress.started_at if progress.last_step_at is None else progress.last_step_at + policy.delay(priority)
    round_, index = divmod(n, len(policy.steps))
    return Step(number=n, round=round_, tier=policy.steps[index], due_at=due)


def due_step(policy: EscalationPolicy, priority: Priority, progress: Progress, now: dt.datetime) -> Step | None:
    """The next step if it is due at `now`."""
    step = next_step(policy, priority, progress)
    return step if step is not None and step.due_at <= now else None
