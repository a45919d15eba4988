"""One patient's rule evaluation, sample by sample: the exact semantics both engine paths share.

A sample advances only the rules it feeds (the thresholds and rates of its kind, NEWS2 if it is a NEWS2
input, the technical rules of its device); a tick advances everything. Incidents exist only while a rule
is active or has a timer pending, so an idle patient costs no per-rule memory.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from proto.alerting.config import NEWS2_RULE
from proto.alerting.incident import AlarmChange, Context, Incident, RuleSpec
from proto.alerting.news2_bands import NEWS2_WIRE_IDS, cell_of, score_latest
from proto.alerting.rules import CompiledConfig, CompiledNews2
from proto.alerting.streams import NONE, StreamTable
from proto.alerting.tracker import INF_US
from proto.news2 import News2Score
from proto.vocabulary import BY_WIRE_ID, VOCABULARY

IncidentKey = tuple[str, str]  # (rule name, device id; "" for clinical rules)
History = deque[tuple[int, float]]  # completed buckets: (bucket index, mean)
_NEWS2_KEY: IncidentKey = (NEWS2_RULE, "")
_NEWS2_SET = frozenset(NEWS2_WIRE_IDS)


class PatientState:
    __slots__ = ("compiled", "histories", "incidents", "news2_expiry_bound", "patient_id", "slot")

    def __init__(self, patient_id: str, slot: int, compiled: CompiledConfig) -> None:
        self.patient_id = patient_id
        self.slot = slot
        self.compiled = compiled
        self.incidents: dict[IncidentKey, Incident] = {}
        self.histories: dict[int, History] = {}
        self.news2_expiry_bound = -INF_US  # no NEWS2 input expires before this (see _expiries)

    @property
    def busy(self) -> bool:
        return bool(self.incidents)

    # --- samples -------------------------------------------------------------------------------------

    def observe_untrusted(self, table: StreamTable, kind_id: int, t: int, flags: int, device: str) -> list[AlarmChange]:
        """An artefact-flagged or implausible sample: evidence for the device's technical rules only."""
        cfg = self.compiled
        last = table.last_trusted_time(self.slot)
        monitored = last != NONE and last >= t - cfg.monitored_within_us
        context = Context(kind_id=kind_id, device=device, flags=flags)
        changes: list[AlarmChange] = []
        for rule in cfg.technical:
            beyond, clear = rule.evidence(flags, monitored)
            changes += self._feed((rule.name, device), rule, t, beyond, clear, cfg.hold_us[kind_id], context)
        return changes

    def observe_trusted(self, table: StreamTable, kind_id: int, value: float, t: int,
                        device: str) -> list[AlarmChange] | None:
        """A trusted sample; None when it is older than the latest of its kind (late: ignored)."""
        slot, cfg = self.slot, self.compiled
        prev_t: int = table.latest_t.item(slot, kind_id)
        if prev_t != NONE and t < prev_t:
            return None
        prev_v: float = table.latest_v.item(slot, kind_id)
        changes: list[AlarmChange] = []
        news2 = cfg.news2 if kind_id in _NEWS2_SET else None
        if news2 is not None and _NEWS2_KEY in self.incidents:
            changes += self._advance_news2(table, news2, t)  # inputs expiring before t, with the old latest
        table.latest_t[slot, kind_id] = t
        table.latest_v[slot, kind_id] = value
        if news2 is not None:
            self.news2_expiry_bound = min(self.news2_expiry_bound, t + cfg.recency_us[kind_id] + 1)

        if self.incidents:
            clear_context = Context(kind_id=kind_id, device=device)
            for tech in cfg.technical:
                if (tech.name, device) in self.incidents:
                    changes += self._feed((tech.name, device), tech, t, [False] * len(tech.timings),
                                          [True] * len(tech.timings), cfg.hold_us[kind_id], clear_context)
        thresholds = cfg.thresholds.get(kind_id)
        if thresholds:
            context = Context(value=value, kind_id=kind_id, device=device)
            for rule in thresholds:
                beyond, clear = rule.evidence(value)
                changes += self._feed((rule.name, ""), rule, t, beyond, clear, rule.hold_us, context)
        if kind_id in cfg.rates:
            changes += self._history(table, kind_id, value, t)
        if news2 is not None:
            # The score can only change if this input returns after its recency window or changes cell;
            # otherwise it is the score last evaluated (expiries were applied above).
            scale = cfg.config.news2.spo2_scale
            if prev_t == NONE or t - prev_t > cfg.recency_us[kind_id] or \
                    cell_of(scale, kind_id, value) != cell_of(scale, kind_id, prev_v):
                changes += self._news2_evaluate(table, news2, t)
        return changes

    # --- time ----------------------------------------------------------------------------------------

    def advance(self, table: StreamTable, now: int) -> list[AlarmChange]:
        """Everything time-driven up to `now`: history buckets ending, inputs expiring, timers maturing."""
        changes: list[AlarmChange] = []
        cfg, slot = self.compiled, self.slot
        for kind_id in cfg.rates:
            bucket: int = table.acc_bucket.item(slot, kind_id)
            if bucket != NONE and (bucket + 1) * cfg.bucket_us[kind_id] <= now:
                changes += self._complete_bucket(table, kind_id)
        for key in list(self.incidents):
            incident = self.incidents.get(key)
            if incident is None:
                continue
            if key == _NEWS2_KEY and cfg.news2 is not None:
                changes += self._advance_news2(table, cfg.news2, now)
                continue
            changes += incident.advance(now, self.rule(key[0]), self.patient_id)
            if incident.idle:
                del self.incidents[key]
        return changes

    def close_all(self, at: int, names: set[str] | None = None) -> list[AlarmChange]:
        """Close incidents (all, or those of the named rules) now: rule changed, patient removed."""
        changes: list[AlarmChange] = []
        for key, incident in list(self.incidents.items()):
            if names is None or key[0] in names:
                changes += incident.close(at, self.rule(key[0]), self.patient_id)
                del self.incidents[key]
        return changes

    def rule(self, name: str) -> RuleSpec:
        return self.compiled.by_name[name]

    # --- internals -----------------------------------------------------------------------------------

    def _feed(self, key: IncidentKey, rule: RuleSpec, at: int, beyond: list[bool], clear: list[bool],
              hold_us: int | None, context: Context) -> list[AlarmChange]:
        incident = self.incidents.get(key)
        if incident is None:
            if not any(beyond):
                return []
            incident = self.incidents[key] = Incident(len(rule.timings))
        changes = incident.evidence(at, beyond, clear, hold_us, context, rule, self.patient_id)
        if incident.idle:
            del self.incidents[key]
        return changes

    def _history(self, table: StreamTable, kind_id: int, value: float, t: int) -> list[AlarmChange]:
        cfg, slot = self.compiled, self.slot
        bucket = t // cfg.bucket_us[kind_id]
        changes: list[AlarmChange] = []
        open_bucket: int = table.acc_bucket.item(slot, kind_id)
        if open_bucket != NONE and bucket > open_bucket:
            changes += self._complete_bucket(table, kind_id)
            open_bucket = NONE
        history = self._history_of(kind_id)
        if open_bucket == NONE and history and bucket <= history[-1][0]:
            return changes  # its bucket was already closed by a tick: too late for the history
        count: int = table.acc_n.item(slot, kind_id)
        total: float = table.acc_sum.item(slot, kind_id)
        for rate in cfg.rates[kind_id]:
            if not rate.rule.per_sample:
                continue
            reference = [m for i, m in history if i >= bucket - rate.window_buckets]
            if count:
                reference.append(total / count)
            delta = rate.change(value, reference)
            beyond, clear = rate.evidence(delta)
            changes += self._feed((rate.name, ""), rate, t, beyond, clear, rate.hold_us,
                                  Context(value=value, kind_id=kind_id, delta=delta))
        if open_bucket == NONE:
            table.acc_bucket[slot, kind_id] = bucket
            table.acc_sum[slot, kind_id] = value
            table.acc_n[slot, kind_id] = 1
        else:
            table.acc_sum[slot, kind_id] = total + value
            table.acc_n[slot, kind_id] = count + 1
        return changes

    def _complete_bucket(self, table: StreamTable, kind_id: int) -> list[AlarmChange]:
        cfg, slot = self.compiled, self.slot
        bucket: int = table.acc_bucket.item(slot, kind_id)
        mean: float = table.acc_sum.item(slot, kind_id) / table.acc_n.item(slot, kind_id)
        end = (bucket + 1) * cfg.bucket_us[kind_id]
        history = self._history_of(kind_id)
        changes: list[AlarmChange] = []
        for rate in cfg.rates[kind_id]:
            if rate.rule.per_sample:
                continue
            reference = [m for i, m in history if bucket - rate.window_buckets <= i < bucket]
            delta = rate.change(mean, reference)
            beyond, clear = rate.evidence(delta)
            changes += self._feed((rate.name, ""), rate, end, beyond, clear, rate.hold_us,
                                  Context(value=mean, kind_id=kind_id, delta=delta))
        history.append((bucket, mean))
        table.acc_bucket[slot, kind_id] = NONE
        table.acc_sum[slot, kind_id] = 0.0
        table.acc_n[slot, kind_id] = 0
        return changes

    def _history_of(self, kind_id: int) -> History:
        history = self.histories.get(kind_id)
        if history is None:
            history = self.histories[kind_id] = deque(maxlen=self.compiled.history_len[kind_id])
        return history

    def news2_score(self, table: StreamTable, at: int) -> News2Score:
        """NEWS2 from the latest trusted inputs still within their recency windows at `at`."""
        cfg, slot = self.compiled, self.slot
        values: dict[int, float] = {}
        times, latest, recency = table.latest_t, table.latest_v, cfg.recency_us
        for wire_id in NEWS2_WIRE_IDS:
            t: int = times.item(slot, wire_id)
            if t != NONE and t + recency[wire_id] >= at:
                values[wire_id] = latest.item(slot, wire_id)
        return score_latest(values, cfg.config.news2.spo2_scale)

    def _news2_evaluate(self, table: StreamTable, news2: CompiledNews2, t: int) -> list[AlarmChange]:
        incident = self.incidents.get(_NEWS2_KEY)
        at = t if incident is None else max(t, incident.tracker.time)
        score = self.news2_score(table, at)
        beyond, clear = news2.evidence(score)
        self.news2_expiry_bound = -INF_US  # recomputed on the next advance
        return self._feed(_NEWS2_KEY, news2, at, beyond, clear, None, Context(news2=score))

    def _expiries(self, table: StreamTable, after: int, until: int) -> list[int]:
        """When NEWS2 inputs stop counting, in (after, until]; also refreshes the next-expiry bound."""
        cfg, slot, times = self.compiled, self.slot, table.latest_t
        due: set[int] = set()
        upcoming = INF_US
        for wire_id in NEWS2_WIRE_IDS:
            t: int = times.item(slot, wire_id)
            if t != NONE:
                gone = t + cfg.recency_us[wire_id] + 1  # first instant the input no longer counts
                if after < gone <= until:
                    due.add(gone)
                elif gone > until:
                    upcoming = min(upcoming, gone)
        # Newer samples only push expiries later, so this stays a safe lower bound until recomputed.
        self.news2_expiry_bound = upcoming
        return sorted(due)

    def _advance_news2(self, table: StreamTable, news2: CompiledNews2, until: int) -> list[AlarmChange]:
        changes: list[AlarmChange] = []
        incident = self.incidents.get(_NEWS2_KEY)
        if incident is None:
            return changes
        due = self._expiries(table, incident.tracker.time, until) if until >= self.news2_expiry_bound else []
        for gone in due:
            score = self.news2_score(table, gone)
            beyond, clear = news2.evidence(score)
            changes += incident.evidence(gone, beyond, clear, None, Context(news2=score), news2, self.patient_id)
            if incident.idle:
                del self.incidents[_NEWS2_KEY]
                return changes
        changes += incident.advance(until, news2, self.patient_id)
        if incident.idle:
            del self.incidents[_NEWS2_KEY]
        return changes

    # --- persistence ---------------------------------------------------------------------------------

    def to_dict(self, table: StreamTable) -> dict[str, Any]:
        slot = self.slot
        latest = {BY_WIRE_ID[w].name: [table.latest_t.item(slot, w), table.latest_v.item(slot, w)]
                  for w in BY_WIRE_ID if table.latest_t[slot, w] != NONE}
        buckets = {BY_WIRE_ID[w].name: [table.acc_bucket.item(slot, w), table.acc_sum.item(slot, w),
                                        table.acc_n.item(slot, w)]
                   for w in BY_WIRE_ID if table.acc_bucket[slot, w] != NONE}
        return {
            "latest": latest, "open_buckets": buckets,
            "history": {BY_WIRE_ID[w].name: [[i, m] for i, m in h] for w, h in self.histories.items() if h},
            "incidents": [{"rule": name, "device": device, **incident.to_dict()}
                          for (name, device), incident in self.incidents.items()],
        }

    def load(self, table: StreamTable, data: dict[str, Any]) -> None:
        """Restore what to_dict wrote (the slot's table row and config are already set)."""
        slot = self.slot
        for name, (t, v) in data["latest"].items():
            wire_id = VOCABULARY[name].wire_id
            table.latest_t[slot, wire_id] = int(t)
            table.latest_v[slot, wire_id] = float(v)
        for name, (bucket, total, count) in data["open_buckets"].items():
            wire_id = VOCABULARY[name].wire_id
            if wire_id not in self.compiled.rates:
                raise ValueError(f"open history bucket for {name!r}, which has no rate rule")
            table.acc_bucket[slot, wire_id] = int(bucket)
            table.acc_sum[slot, wire_id] = float(total)
            table.acc_n[slot, wire_id] = int(count)
        for name, entries in data["history"].items():
            wire_id = VOCABULARY[name].wire_id
            if wire_id not in self.compiled.rates:
                raise ValueError(f"history for {name!r}, which has no rate rule")
            history = self._history_of(wire_id)
            history.extend((int(i), float(m)) for i, m in entries)
        for entry in data["incidents"]:
            rule = self.compiled.by_name.get(entry["rule"])
            if rule is None:
                raise ValueError(f"incident of unknown rule {entry['rule']!r}")
            self.incidents[(entry["rule"], str(entry["device"]))] = Incident.from_dict(entry, len(rule.timings))
