"""Escalation policies: who is paged next about an unacknowledged incident, and when."""

from __future__ import annotations

import datetime as dt

import pytest

from cloud.alerting.errors import PolicyError
from cloud.alerting.escalation import EscalationPolicy, Progress, due_step, next_step

T0 = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def walk(policy: EscalationPolicy, priority: str, *, until_s: float, step_s: float = 1.0) -> list[tuple[str, float]]:
    """Take every step as soon as it is due, checking once a second: (tier, seconds after start)."""
    progress = Progress.start(T0)
    taken: list[tuple[str, float]] = []
    t = 0.0
    while t <= until_s:
        step = due_step(policy, priority, progress, at(t))  # type: ignore[arg-type]
        if step is not None:
            taken.append((step.tier, t))
            progress = progress.taken(at(t))
            continue
        t += step_s
    return taken


def test_high_priority_walks_primary_secondary_head_two_minutes_apart_then_repeats() -> None:
    taken = walk(EscalationPolicy(), "high", until_s=3600)
    assert taken == [("primary", 0), ("secondary", 120), ("department_head", 240),
                     ("primary", 360), ("secondary", 480), ("department_head", 600)]


def test_medium_priority_waits_ten_minutes_between_steps() -> None:
    taken = walk(EscalationPolicy(repeat=1), "medium", until_s=7200)
    assert taken == [("primary", 0), ("secondary", 600), ("department_head", 1200)]


def test_low_priority_and_technical_or_advisory_alarms_do_not_page() -> None:
    policy = EscalationPolicy()
    assert policy.pages("clinical", "high") and policy.pages("clinical", "medium")
    assert not policy.pages("clinical", "low")
    assert not policy.pages("technical", "high")
    assert not policy.pages("advisory", "low")


def test_a_priority_change_applies_from_the_next_step() -> None:
    policy = EscalationPolicy()
    progress = Progress.start(T0).taken(T0)  # primary paged at medium
    step = next_step(policy, "medium", progress)
    assert step is not None and step.tier == "secondary" and step.due_at == at(600)
    step = next_step(policy, "high", progress)  # it became high meanwhile
    assert step is not None and step.due_at == at(120)


def test_a_tier_with_nobody_on_call_is_skipped_and_the_next_takes_its_slot() -> None:
    policy = EscalationPolicy()
    progress = Progress.start(T0).taken(T0)
    secondary = due_step(policy, "high", progress, at(120))
    assert secondary is not None and secondary.tier == "secondary"
    progress = progress.skip()  # no secondary on the rota
    head = due_step(policy, "high", progress, at(120))
    assert head is not None and head.tier == "department_head" and head.due_at == at(120)


def test_nothing_is_due_before_its_time_and_nothing_after_the_last_round() -> None:
    policy = EscalationPolicy(steps=("primary",), repeat=2)
    progress = Progress.start(T0).taken(T0)
    assert due_step(policy, "high", progress, at(119)) is None
    progress = progress.taken(at(120))
    assert next_step(policy, "high", progress) is None


@pytest.mark.parametrize("bad", [
    {"steps": ()}, {"steps": ("nurse",)}, {"repeat": 0}, {"repeat": 11}, {"delays_s": {"high": 0}},
    {"delays_s": {"urgent": 60}}, {"ack_timeout_s": {"high": -1}}, {"resolve_hold_s": -5},
])
def test_malformed_policies_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(PolicyError):
        EscalationPolicy(**bad)  # type: ignore[arg-type]


def test_policy_round_trips_through_json_and_defaults_missing_fields() -> None:
    policy = EscalationPolicy(steps=("primary", "department_head"), delays_s={"high": 60.0}, repeat=3,
                              ack_timeout_s={"high": 300.0}, resolve_hold_s=120.0)
    assert EscalationPolicy.from_dict(policy.to_dict()) == policy
    assert EscalationPolicy.from_dict({"repeat": 1}) == EscalationPolicy(repeat=1)
    with pytest.raises(PolicyError):
        EscalationPolicy.from_dict({"repeat": "often"})
