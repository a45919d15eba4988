"""Alarm rule configuration: rules as data, validated, serialisable and overridable per site and per patient.

A `RuleConfig` is plain data. The defaults live in proto.alerting.defaults; a site (or one patient) changes
them with `config.overridden({...})`, the same JSON-shaped mapping the cloud's `configure` command carries,
so the edge and the cloud build identical configurations from identical overrides.

Override mapping (every key optional):

    {"thresholds": {"spo2_low": {"levels": [...]}, "hr_low": None, "new_rule": {...complete rule...}},
     "rates": {...same shape...},
     "news2": {"spo2_scale": 2},
     "technical": {"monitored_within_s": 300, "rules": {"signal_artefact": {"delay_s": 30}}},
     "timing": {"heart_rate": {"recency_s": 600}},
     "history_bucket_s": {"heart_rate": 60}}

A rule given as None is removed; a mapping is merged field by field into the existing rule of that name
(a new name needs every field). Lists (levels, flags) are replaced whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal, cast, get_args

from proto.alerting.errors import RuleConfigError
from proto.messages import Priority
from proto.quality import ARTEFACT, Quality
from proto.vocabulary import VOCABULARY

Op = Literal["<", "<=", ">", ">="]
Direction = Literal["rise", "drop"]

BELOW_OPS: frozenset[str] = frozenset({"<", "<="})
# IEC 60601-1-8: high = immediate response, medium = prompt response, low = delayed response / awareness.
PRIORITY_RANK: Mapping[str, int] = MappingProxyType({"high": 0, "medium": 1, "low": 2})
# Flags a technical rule may react to: the artefact mask plus failed plausibility.
TECHNICAL_FLAGS = int(ARTEFACT | Quality.IMPLAUSIBLE)
RULE_NAME = re.compile(r"^[a-z0-9_.:-]{1,64}$")
NEWS2_RULE = "news2"


def _check(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise RuleConfigError(f"{where}: {problem}")


def _check_seconds(value: float, where: str) -> None:
    _check(isinstance(value, int | float) and math.isfinite(value) and value >= 0, where,
           f"must be a finite number of seconds >= 0, got {value!r}")


def _check_name(name: str, where: str) -> None:
    _check(isinstance(name, str) and bool(RULE_NAME.match(name)), where, f"invalid rule name {name!r}")


def _check_priority(priority: str, where: str) -> None:
    _check(priority in PRIORITY_RANK, where, f"priority must be high, medium or low, got {priority!r}")


def _check_kind(kind: str, where: str) -> None:
    _check(kind in VOCABULARY, where, f"unknown vital-sign kind {kind!r}")


@dataclass(frozen=True, slots=True)
class ThresholdLevel:
    """One severity level of a threshold rule.

    The condition is `value <op> threshold`; it must hold for `delay_s` (IEC 60601-1-8 alarm condition
    delay) before the level is raised, and it clears only once the value is back past `clear_at` (the
    hysteresis margin; None means "not beyond the threshold") for `clear_delay_s`.
    """

    priority: Priority
    threshold: float
    delay_s: float = 0.0
    clear_at: float | None = None
    clear_delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    """An absolute limit on one vital sign, with one or more levels, the most severe first."""

    name: str
    kind: str
    op: Op
    levels: tuple[ThresholdLevel, ...]
    label: str = ""

    def validate(self) -> None:
        where = f"threshold rule {self.name!r}"
        _check_name(self.name, where)
        _check_kind(self.kind, where)
        _check(self.op in get_args(Op), where, f"op must be one of < <= > >=, got {self.op!r}")
        _check(bool(self.levels), where, "needs at least one level")
        below = self.op in BELOW_OPS
        previous: ThresholdLevel | None = None
        for i, level in enumerate(self.levels):
            at = f"{where} level {i}"
            _check_priority(level.priority, at)
            _check(math.isfinite(level.threshold), at, "threshold must be finite")
            _check_seconds(level.delay_s, f"{at} delay_s")
            _check_seconds(level.clear_delay_s, f"{at} clear_delay_s")
            if level.clear_at is not None:
                # The clear band must lie wholly inside the non-alarm side, or the level could clear while beyond.
                inside = (level.clear_at >= level.threshold if self.op == "<" else
                          level.clear_at > level.threshold if self.op == "<=" else
                          level.clear_at <= level.threshold if self.op == ">" else
                          level.clear_at < level.threshold)
                _check(math.isfinite(level.clear_at) and inside, at,
                       f"clear_at {level.clear_at} is not on the safe side of {self.op} {level.threshold}")
            if previous is not None:
                _check(PRIORITY_RANK[level.priority] > PRIORITY_RANK[previous.priority], at,
                       "levels must be listed most severe first, one per priority")
                # A more severe level must imply the less severe one (so a raise can latch the lower levels).
                nested = level.threshold >= previous.threshold if below else level.threshold <= previous.threshold
                _check(nested, at, "a less severe level must have a less extreme threshold")
            previous = level


@dataclass(frozen=True, slots=True)
class RateRule:
    """A change of one vital sign over a time window, computed on bucketed per-patient history.

    `rise`: current minus the lowest bucket mean in the window; `drop`: the highest minus current. The
    current value is the mean of the bucket just completed, or with `per_sample` each sample itself
    (for intermittent measurements such as a cuff blood pressure, where every reading counts).
    """

    name: str
    kind: str
    direction: Direction
    delta: float
    window_s: float
    priority: Priority = "medium"
    clear_delta: float | None = None
    delay_s: float = 0.0
    clear_delay_s: float = 0.0
    per_sample: bool = False
    label: str = ""

    def validate(self) -> None:
        where = f"rate rule {self.name!r}"
        _check_name(self.name, where)
        _check_kind(self.kind, where)
        _check(self.direction in get_args(Direction), where, f"direction must be rise or drop, got {self.direction!r}")
        _check_priority(self.priority, where)
        _check(math.isfinite(self.delta) and self.delta > 0, where, "delta must be positive")
        _check(self.clear_delta is None or (math.isfinite(self.clear_delta) and self.clear_delta <= self.delta),
               where, "clear_delta must not exceed delta")
        _check(math.isfinite(self.window_s) and self.window_s > 0, where, "window_s must be positive")
        _check_seconds(self.delay_s, f"{where} delay_s")
        _check_seconds(self.clear_delay_s, f"{where} clear_delay_s")


@dataclass(frozen=True, slots=True)
class News2Config:
    """NEWS2 risk alarms (RCP 2017 chart 3): aggregate 5-6 medium, 7+ high, a single parameter scoring 3 medium."""

    enabled: bool = True
    spo2_scale: int = 1
    medium_total: int = 5
    high_total: int = 7
    single_parameter_medium: bool = True
    delay_s: float = 60.0
    clear_delay_s: float = 300.0

    def validate(self) -> None:
        where = "news2"
        _check(self.spo2_scale in (1, 2), where, f"spo2_scale must be 1 or 2, got {self.spo2_scale!r}")
        _check(0 < self.medium_total <= self.high_total <= 20, where, "need 0 < medium_total <= high_total <= 20")
        _check_seconds(self.delay_s, f"{where} delay_s")
        _check_seconds(self.clear_delay_s, f"{where} clear_delay_s")


@dataclass(frozen=True, slots=True)
class TechnicalRule:
    """A technical alarm condition (IEC 60601-1-8) raised per device by samples carrying any of `flags`.

    Low priority after `delay_s`; medium after `escalate_after_s` when the patient is monitored (had a
    trusted sample within the technical config's `monitored_within_s`). Clears after `clear_delay_s` of
    trusted samples from the device, or after `silence_clear_s` without any sample from it.
    """

    name: str
    flags: int
    delay_s: float
    clear_delay_s: float
    escalate_after_s: float | None = None
    silence_clear_s: float = 600.0
    label: str = ""

    def validate(self) -> None:
        where = f"technical rule {self.name!r}"
        _check_name(self.name, where)
        _check(self.flags != 0 and self.flags & ~TECHNICAL_FLAGS == 0, where,
               "flags must be a non-empty subset of the artefact flags and implausible")
        _check_seconds(self.delay_s, f"{where} delay_s")
        _check_seconds(self.clear_delay_s, f"{where} clear_delay_s")
        _check(math.isfinite(self.silence_clear_s) and self.silence_clear_s > 0, where, "silence_clear_s must be > 0")
        if self.escalate_after_s is not None:
            _check_seconds(self.escalate_after_s, f"{where} escalate_after_s")


@dataclass(frozen=True, slots=True)
class TechnicalConfig:
    rules: tuple[TechnicalRule, ...]
    monitored_within_s: float = 600.0

    def validate(self) -> None:
        _check(math.isfinite(self.monitored_within_s) and self.monitored_within_s > 0, "technical",
               "monitored_within_s must be > 0")
        for rule in self.rules:
            rule.validate()


@dataclass(frozen=True, slots=True)
class KindTiming:
    """How long one sample of a kind stands for the patient's value.

    `hold_s`: a sample vouches for its value this long (a gap longer than this breaks a persistence timer).
    `recency_s`: the latest value counts for NEWS2 this long, and an open alarm on the kind is closed as
    stale when no trusted sample arrives for this long.
    """

    hold_s: float
    recency_s: float

    def validate(self, where: str) -> None:
        _check_seconds(self.hold_s, f"{where} hold_s")
        _check(math.isfinite(self.recency_s) and self.recency_s > 0, where, "recency_s must be > 0")


DEFAULT_TIMING = KindTiming(hold_s=10.0, recency_s=300.0)


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """The complete rule set one patient is evaluated with."""

    thresholds: tuple[ThresholdRule, ...]
    rates: tuple[RateRule, ...]
    news2: News2Config
    technical: TechnicalConfig
    timing: Mapping[str, KindTiming] = field(default_factory=dict)
    history_bucket_s: Mapping[str, float] = field(default_factory=dict)

    def timing_of(self, kind: str) -> KindTiming:
        return self.timing.get(kind, DEFAULT_TIMING)

    def validate(self) -> RuleConfig:
        """Check the whole configuration; returns self so it chains. Raises RuleConfigError."""
        names: set[str] = {NEWS2_RULE}
        rules: tuple[ThresholdRule | RateRule | TechnicalRule, ...] = (
            *self.thresholds, *self.rates, *self.technical.rules)
        for rule in rules:
            rule.validate()
            _check(rule.name not in names, f"rule {rule.name!r}", "duplicate rule name")
            names.add(rule.name)
        self.news2.validate()
        self.technical.validate()
        for kind, timing in self.timing.items():
            _check_kind(kind, f"timing {kind!r}")
            timing.validate(f"timing {kind!r}")
        for kind, bucket in self.history_bucket_s.items():
            _check_kind(kind, f"history_bucket_s {kind!r}")
            _check(math.isfinite(bucket) and bucket > 0, f"history_bucket_s {kind!r}", "must be > 0 seconds")
        for rate in self.rates:
            bucket_s = self.history_bucket_s.get(rate.kind)
            _check(bucket_s is not None, f"rate rule {rate.name!r}", f"no history_bucket_s for {rate.kind!r}")
            assert bucket_s is not None
            _check(rate.window_s >= bucket_s, f"rate rule {rate.name!r}", "window_s shorter than one bucket")
        return self

    # --- serialisation -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible mapping (rules keyed by name, flags by name) that from_dict reads back."""
        return {
            "thresholds": {r.name: _threshold_to_dict(r) for r in self.thresholds},
            "rates": {r.name: _plain(r, skip=("name",)) for r in self.rates},
            "news2": _plain(self.news2),
            "technical": {
                "monitored_within_s": self.technical.monitored_within_s,
                "rules": {r.name: _technical_to_dict(r) for r in self.technical.rules},
            },
            "timing": {k: _plain(t) for k, t in sorted(self.timing.items())},
            "history_bucket_s": dict(sorted(self.history_bucket_s.items())),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleConfig:
        """Parse and validate a mapping produced by to_dict (or written by hand in the same shape)."""
        try:
            technical = data["technical"]
            config = cls(
                thresholds=tuple(_threshold_from_dict(n, d) for n, d in data["thresholds"].items()),
                rates=tuple(_build(RateRule, {**d, "name": n}) for n, d in data["rates"].items()),
                news2=_build(News2Config, data["news2"]),
                technical=TechnicalConfig(
                    rules=tuple(_technical_from_dict(n, d) for n, d in technical["rules"].items()),
                    monitored_within_s=float(technical.get("monitored_within_s", 600.0)),
                ),
                timing={k: _build(KindTiming, t) for k, t in data.get("timing", {}).items()},
                history_bucket_s={k: float(v) for k, v in data.get("history_bucket_s", {}).items()},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, RuleConfigError):
                raise
            raise RuleConfigError(f"malformed rule configuration: {exc!r}") from None
        return config.validate()

    def overridden(self, overrides: Mapping[str, Any] | None) -> RuleConfig:
        """This configuration with site or patient overrides applied (see the module docstring)."""
        if not overrides:
            return self
        unknown = set(overrides) - {"thresholds", "rates", "news2", "technical", "timing", "history_bucket_s"}
        _check(not unknown, "overrides", f"unknown sections {sorted(unknown)}")
        base = self.to_dict()
        merged = dict(base)
        for section in ("thresholds", "rates"):
            if section in overrides:
                merged[section] = _merge_named(base[section], overrides[section], section)
        if "news2" in overrides:
            merged["news2"] = {**base["news2"], **_mapping(overrides["news2"], "news2")}
        if "technical" in overrides:
            tech = _mapping(overrides["technical"], "technical")
            merged["technical"] = {**base["technical"], **{k: v for k, v in tech.items() if k != "rules"}}
            if "rules" in tech:
                merged["technical"]["rules"] = _merge_named(base["technical"]["rules"], tech["rules"], "technical")
        if "timing" in overrides:
            timing = dict(base["timing"])
            for kind, patch in _mapping(overrides["timing"], "timing").items():
                current = timing.get(kind, _plain(DEFAULT_TIMING))
                timing[kind] = {**current, **_mapping(patch, f"timing {kind}")}
            merged["timing"] = timing
        if "history_bucket_s" in overrides:
            merged["history_bucket_s"] = {**base["history_bucket_s"],
                                          **_mapping(overrides["history_bucket_s"], "history_bucket_s")}
        return RuleConfig.from_dict(merged)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    _check(isinstance(value, Mapping), where, "override must be a mapping")
    return cast(Mapping[str, Any], value)


def _merge_named(base: Mapping[str, Any], patch: Any, where: str) -> dict[str, Any]:
    merged = dict(base)
    for name, rule_patch in _mapping(patch, where).items():
        if rule_patch is None:
            merged.pop(name, None)
        else:
            merged[name] = {**merged.get(name, {}), **_mapping(rule_patch, f"{where} {name}")}
    return merged


def _plain(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in skip}


def _build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise RuleConfigError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    return cls(**data)


def _threshold_to_dict(rule: ThresholdRule) -> dict[str, Any]:
    return {"kind": rule.kind, "op": rule.op, "label": rule.label, "levels": [_plain(lv) for lv in rule.levels]}


def _threshold_from_dict(name: str, data: Mapping[str, Any]) -> ThresholdRule:
    body = dict(data)
    levels = tuple(_build(ThresholdLevel, lv) for lv in body.pop("levels"))
    return cast(ThresholdRule, _build(ThresholdRule, {**body, "name": name, "levels": levels}))


def flag_names(flags: int) -> list[str]:
    """Quality bit names, lowercase, in bit order."""
    return [f.name.lower() for f in Quality if f and f.name and int(f) & flags]


def _technical_to_dict(rule: TechnicalRule) -> dict[str, Any]:
    return {**_plain(rule, skip=("name", "flags")), "flags": flag_names(rule.flags)}


def _technical_from_dict(name: str, data: Mapping[str, Any]) -> TechnicalRule:
    body = dict(data)
    flags = 0
    for flag in body.pop("flags"):
        try:
            flags |= int(Quality[str(flag).upper()])
        except KeyError:
            raise RuleConfigError(f"technical rule {name!r}: unknown quality flag {flag!r}") from None
    return cast(TechnicalRule, _build(TechnicalRule, {**body, "name": name, "flags": flags}))
