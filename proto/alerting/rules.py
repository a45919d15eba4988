"""Rules compiled for evaluation: times in microseconds, levels as timings, evidence and message functions.

Each compiled rule turns what a patient's data shows into evidence for its LevelTracker (per level: beyond
the threshold? inside the clear band?) and writes the alert text. `CompiledConfig` gathers them by vital
kind, with the per-kind arrays the batched path needs to decide, in numpy, which samples are quiet.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from proto.alerting.config import (
    BELOW_OPS,
    NEWS2_RULE,
    News2Config,
    RateRule,
    RuleConfig,
    TechnicalRule,
    ThresholdRule,
    flag_names,
)
from proto.alerting.incident import ChangeType, Context, RuleSpec
from proto.alerting.tracker import Cause, LevelTiming
from proto.messages import AlertCategory, Priority
from proto.news2 import News2Score
from proto.units import print_symbol
from proto.vocabulary import BY_WIRE_ID, VOCABULARY

KIND_COLUMNS = max(BY_WIRE_ID) + 1  # dense per-kind arrays are indexed by vocabulary wire id
US = 1_000_000


def _us(seconds: float) -> int:
    return round(seconds * US)


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.4g}"


def _display(kind_id: int | None) -> tuple[str, str]:
    if kind_id is None:
        return "", ""
    vk = BY_WIRE_ID[kind_id]
    unit = "" if vk.unit.startswith("{") else f" {print_symbol(vk.unit)}"
    return vk.display_en, unit


def _cleared_text(label: str, context: Context, cause: Cause, stale_us: int | None) -> str:
    display, unit = _display(context.kind_id)
    if cause == "stale":
        minutes = (stale_us or 0) / (60 * US)
        return f"{label} cleared: no trusted {display or 'data'} for {minutes:g} min"
    return f"{label} cleared: {display} {_fmt(context.value)}{unit}".rstrip()


@dataclass(frozen=True, slots=True)
class CompiledThreshold:
    rule: ThresholdRule
    kind_id: int
    below: bool
    strict: bool
    thresholds: tuple[float, ...]
    clear_at: tuple[float | None, ...]
    timings: tuple[LevelTiming, ...]
    priorities: tuple[Priority, ...]
    hold_us: int
    stale_us: int | None
    category: AlertCategory = "clinical"
    per_device: bool = False

    @classmethod
    def compile(cls, rule: ThresholdRule, config: RuleConfig) -> CompiledThreshold:
        timing = config.timing_of(rule.kind)
        return cls(
            rule=rule, kind_id=VOCABULARY[rule.kind].wire_id, below=rule.op in BELOW_OPS,
            strict=rule.op in ("<", ">"), thresholds=tuple(lv.threshold for lv in rule.levels),
            clear_at=tuple(lv.clear_at for lv in rule.levels),
            timings=tuple(LevelTiming(_us(lv.delay_s), _us(lv.clear_delay_s)) for lv in rule.levels),
            priorities=tuple(lv.priority for lv in rule.levels),
            hold_us=_us(timing.hold_s), stale_us=_us(timing.recency_s),
        )

    @property
    def name(self) -> str:
        return self.rule.name

    def beyond(self, value: float) -> list[bool]:
        if self.below:
            return [value < t if self.strict else value <= t for t in self.thresholds]
        return [value > t if self.strict else value >= t for t in self.thresholds]

    def evidence(self, value: float) -> tuple[list[bool], list[bool]]:
        beyond = self.beyond(value)
        clear = [
            (not b) if c is None else (value >= c if self.below else value <= c)
            for b, c in zip(beyond, self.clear_at, strict=True)
        ]
        return beyond, clear

    def quiet_band(self) -> tuple[float, float]:
        """The closed range of values for which no level's condition holds."""
        if self.below:
            edge = max(self.thresholds)
            return (edge if self.strict else math.nextafter(edge, math.inf)), math.inf
        edge = min(self.thresholds)
        return -math.inf, (edge if self.strict else math.nextafter(edge, -math.inf))

    def message(self, change: ChangeType, priority: Priority, context: Context, cause: Cause) -> str:
        label = self.rule.label or self.rule.name
        if change == "cleared":
            return _cleared_text(label, context, cause, self.stale_us)
        display, unit = _display(self.kind_id)
        level = self.priorities.index(priority)
        delay = self.timings[level].delay_us / US
        held = f" for {delay:g} s" if delay else ""
        return (f"{label}: {display} {_fmt(context.value)}{unit} "
                f"({self.rule.op} {_fmt(self.thresholds[level])}{unit}{held})")


@dataclass(frozen=True, slots=True)
class CompiledRate:
    rule: RateRule
    kind_id: int
    rise: bool
    delta: float
    clear_delta: float
    bucket_us: int
    window_buckets: int
    timings: tuple[LevelTiming, ...]
    priorities: tuple[Priority, ...]
    hold_us: int
    stale_us: int | None
    category: AlertCategory = "clinical"
    per_device: bool = False

    @classmethod
    def compile(cls, rule: RateRule, config: RuleConfig) -> CompiledRate:
        bucket_us = _us(config.history_bucket_s[rule.kind])
        timing = config.timing_of(rule.kind)
        return cls(
            rule=rule, kind_id=VOCABULARY[rule.kind].wire_id, rise=rule.direction == "rise", delta=rule.delta,
            clear_delta=rule.delta if rule.clear_delta is None else rule.clear_delta, bucket_us=bucket_us,
            window_buckets=max(1, math.ceil(_us(rule.window_s) / bucket_us)),
            timings=(LevelTiming(_us(rule.delay_s), _us(rule.clear_delay_s)),), priorities=(rule.priority,),
            # Bucket evaluations come once per bucket: evidence holds across one missed bucket.
            hold_us=_us(timing.hold_s) if rule.per_sample else 2 * bucket_us,
            stale_us=max(_us(timing.recency_s), 2 * bucket_us),
        )

    @property
    def name(self) -> str:
        return self.rule.name

    def change(self, current: float, reference: Sequence[float]) -> float | None:
        """How far `current` rose above the window's lowest (or fell below its highest) bucket mean."""
        if not reference:
            return None
        return current - min(reference) if self.rise else max(reference) - current

    def evidence(self, change: float | None) -> tuple[list[bool], list[bool]]:
        if change is None:
            return [False], [True]
        return [change > self.delta], [change <= self.clear_delta]

    def message(self, change: ChangeType, priority: Priority, context: Context, cause: Cause) -> str:
        label = self.rule.label or self.rule.name
        if change == "cleared":
            return _cleared_text(label, context, cause, self.stale_us)
        display, unit = _display(self.kind_id)
        verb = "rose" if self.rise else "fell"
        return (f"{label}: {display} {verb} {_fmt(context.delta)}{unit} within {self.rule.window_s / 60:g} min "
                f"(now {_fmt(context.value)}{unit}; limit {_fmt(self.delta)}{unit})")


_RISK_TEXT: Mapping[str, str] = MappingProxyType({
    # RCP 2017 chart 3, clinical response to NEWS2 thresholds.
    "high": "high clinical risk, emergency response",
    "medium": "medium clinical risk, urgent response",
    "low-medium": "a single parameter scored 3, urgent ward-based review",
    "low": "low clinical risk",
})
_PARAM_LABEL: Mapping[str, str] = MappingProxyType({
    "respiratory_rate": "RR", "spo2": "SpO2", "air_or_oxygen": "O2", "systolic_bp": "SBP", "heart_rate": "HR",
    "consciousness": "ACVPU", "temperature": "temp",
})


@dataclass(frozen=True, slots=True)
class CompiledNews2:
    config: News2Config
    timings: tuple[LevelTiming, ...]
    priorities: tuple[Priority, ...] = ("high", "medium")
    stale_us: int | None = None  # a NEWS2 never goes stale: expiring inputs lower the score instead
    name: str = NEWS2_RULE
    category: AlertCategory = "clinical"
    per_device: bool = False

    @classmethod
    def compile(cls, config: News2Config) -> CompiledNews2:
        timing = LevelTiming(_us(config.delay_s), _us(config.clear_delay_s))
        return cls(config=config, timings=(timing, timing))

    def evidence(self, score: News2Score) -> tuple[list[bool], list[bool]]:
        high = score.total >= self.config.high_total
        medium = high or score.total >= self.config.medium_total or (
            self.config.single_parameter_medium and 3 in score.subscores.values())
        return [high, medium], [not high, not medium]

    def message(self, change: ChangeType, priority: Priority, context: Context, cause: Cause) -> str:
        score = context.news2
        if score is None:
            return "NEWS2"
        risk = _RISK_TEXT[score.risk]
        prefix = "NEWS2 alarm cleared: " if change == "cleared" else ""
        parts = [f"{_PARAM_LABEL[p]} {n}" for p, n in score.subscores.items() if n]
        text = f"{prefix}NEWS2 {score.total} ({risk})"
        if parts:
            text += f": {', '.join(parts)}"
        if score.missing:
            text += f"; incomplete, missing {', '.join(score.missing)}"
        return text


@dataclass(frozen=True, slots=True)
class CompiledTechnical:
    rule: TechnicalRule
    flags: int
    escalates: bool
    timings: tuple[LevelTiming, ...]
    priorities: tuple[Priority, ...]
    stale_us: int | None
    category: AlertCategory = "technical"
    per_device: bool = True

    @classmethod
    def compile(cls, rule: TechnicalRule) -> CompiledTechnical:
        low = LevelTiming(_us(rule.delay_s), _us(rule.clear_delay_s))
        if rule.escalate_after_s is None:
            return cls(rule=rule, flags=rule.flags, escalates=False, timings=(low,), priorities=("low",),
                       stale_us=_us(rule.silence_clear_s))
        medium = LevelTiming(_us(max(rule.escalate_after_s, rule.delay_s)), _us(rule.clear_delay_s))
        return cls(rule=rule, flags=rule.flags, escalates=True, timings=(medium, low), priorities=("medium", "low"),
                   stale_us=_us(rule.silence_clear_s))

    @property
    def name(self) -> str:
        return self.rule.name

    def evidence(self, flags: int, monitored: bool) -> tuple[list[bool], list[bool]]:
        hit = bool(flags & self.flags)
        if self.escalates:
            return [hit and monitored, hit], [not hit, not hit]
        return [hit], [not hit]

    def message(self, change: ChangeType, priority: Priority, context: Context, cause: Cause) -> str:
        label = self.rule.label or self.rule.name
        device = context.device or "manual entry"
        if change == "cleared":
            why = "no samples from the device" if cause == "stale" else "trusted samples again"
            return f"{label} cleared on {device}: {why}"
        display, _ = _display(context.kind_id)
        flags = ", ".join(flag_names(context.flags & self.flags)) or "untrusted"
        return f"{label} on {device}: {display} not evaluated ({flags})"


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    """One RuleConfig ready to evaluate, plus the per-kind arrays the batched path reads."""

    config: RuleConfig
    thresholds: Mapping[int, tuple[CompiledThreshold, ...]]
    rates: Mapping[int, tuple[CompiledRate, ...]]
    bucket_us: Mapping[int, int]
    history_len: Mapping[int, int]
    news2: CompiledNews2 | None
    technical: tuple[CompiledTechnical, ...]
    monitored_within_us: int
    hold_us: tuple[int, ...]
    recency_us: tuple[int, ...]
    quiet_lo: npt.NDArray[np.float64]
    quiet_hi: npt.NDArray[np.float64]
    per_sample_rate: npt.NDArray[np.bool_]
    by_name: Mapping[str, RuleSpec]

    @classmethod
    def compile(cls, config: RuleConfig) -> CompiledConfig:
        config.validate()
        thresholds: dict[int, list[CompiledThreshold]] = {}
        for rule in config.thresholds:
            compiled = CompiledThreshold.compile(rule, config)
            thresholds.setdefault(compiled.kind_id, []).append(compiled)
        rates: dict[int, list[CompiledRate]] = {}
        for rate in config.rates:
            compiled_rate = CompiledRate.compile(rate, config)
            rates.setdefault(compiled_rate.kind_id, []).append(compiled_rate)
        # Only kinds with a rate rule keep history (the batched path watches their bucket boundaries).
        bucket_us = {k: rs[0].bucket_us for k, rs in rates.items()}
        history_len = {k: max(r.window_buckets for r in rs) + 1 for k, rs in rates.items()}
        quiet_lo = np.full(KIND_COLUMNS, -np.inf)
        quiet_hi = np.full(KIND_COLUMNS, np.inf)
        for kind_id, rules in thresholds.items():
            for compiled in rules:
                lo, hi = compiled.quiet_band()
                quiet_lo[kind_id] = max(quiet_lo[kind_id], lo)
                quiet_hi[kind_id] = min(quiet_hi[kind_id], hi)
        per_sample = np.zeros(KIND_COLUMNS, dtype=np.bool_)
        for kind_id, rules_r in rates.items():
            per_sample[kind_id] = any(r.rule.per_sample for r in rules_r)
        timings = [config.timing_of(BY_WIRE_ID[w].name) if w in BY_WIRE_ID else None for w in range(KIND_COLUMNS)]
        for array in (quiet_lo, quiet_hi, per_sample):
            array.flags.writeable = False
        news2 = CompiledNews2.compile(config.news2) if config.news2.enabled else None
        technical = tuple(CompiledTechnical.compile(r) for r in config.technical.rules)
        by_name: dict[str, RuleSpec] = {r.name: r for group in thresholds.values() for r in group}
        by_name.update({r.name: r for group_r in rates.values() for r in group_r})
        by_name.update({r.name: r for r in technical})
        if news2 is not None:
            by_name[news2.name] = news2
        return cls(
            config=config,
            thresholds=MappingProxyType({k: tuple(v) for k, v in thresholds.items()}),
            rates=MappingProxyType({k: tuple(v) for k, v in rates.items()}),
            bucket_us=MappingProxyType(bucket_us), history_len=MappingProxyType(history_len),
            news2=news2, technical=technical,
            monitored_within_us=_us(config.technical.monitored_within_s),
            hold_us=tuple(_us(t.hold_s) if t else 0 for t in timings),
            recency_us=tuple(_us(t.recency_s) if t else 0 for t in timings),
            quiet_lo=quiet_lo, quiet_hi=quiet_hi, per_sample_rate=per_sample, by_name=MappingProxyType(by_name),
        )

    def rule_specs(self) -> dict[str, object]:
        """Each rule's definition by name: an incident survives a reconfiguration only if its rule is unchanged."""
        specs: dict[str, object] = {}
        for group in self.thresholds.values():
            for t in group:
                specs[t.name] = (t.rule, t.hold_us, t.stale_us)
        for rate_group in self.rates.values():
            for r in rate_group:
                specs[r.name] = (r.rule, r.bucket_us, r.hold_us, r.stale_us)
        if self.news2 is not None:
            specs[NEWS2_RULE] = self.news2.config
        for tech in self.technical:
            specs[tech.name] = (tech.rule, self.monitored_within_us)
        return specs
