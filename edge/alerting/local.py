"""Local alerting: the shared alarm engine (proto.alerting) run at the edge on live samples.

Why at the edge: when the county hospital's uplink is down, nobody in the cloud sees the ward, so the edge
must raise the alarm itself. The same engine runs in the cloud on ingest; alert ids are deterministic
(proto.alerting.incident), so the edge's incidents and the cloud's merge once the uplink is back.

- `observe(sample)` buffers samples (the collector calls it for every stored sample);
- `evaluate()` (every `evaluate_interval_s` on the service's loop) runs the buffer through
  `observe_batch` and then `tick(now)` with now = the collector's clock, so no buffered sample is ever
  older than the watermark;
- every AlarmChange goes to the outbox, whose alerts lane is published first and never evicted;
- while the uplink is down (or always, by configuration), it is also posted to the local webhook, and the
  status page lists every open incident; an incident local staff were told of is followed to its clearing;
- the engine's state, the cloud's rule overrides and the open incidents are saved (edge.alerting.state)
  after changes and periodically, and restored at start.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from edge.alerting.state import AlertingStateError, AlertingStore, OpenAlert, SavedState
from edge.alerting.webhook import WebhookNotifier
from edge.metrics import Registry
from edge.outbox import EvictionReport, OutboxError
from proto.alerting import AlarmChange, AlarmEngine, AlertingError, RuleConfig, StateFormatError, default_config
from proto.alerting.config import PRIORITY_RANK
from proto.messages import Alert
from proto.schema import ValidationError, to_wire
from proto.vitals import VitalSample, VitalsBatchBuilder, from_micros, to_micros

log = logging.getLogger(__name__)

AlertSink = Callable[[Alert], "Future[Any]"]
NotifyWhen = Literal["offline", "always"]
# How many outbox eviction notices the status page keeps.
_NOTICES_KEPT: Final = 20


@dataclass(frozen=True, slots=True)
class LocalAlertingConfig:
    """The site's rules: the defaults with the [alerting] NEWS2 thresholds (RCP 2017 chart 3: 5 medium, 7 high)."""

    news2_medium: int = 5
    news2_high: int = 7
    notify_when: NotifyWhen = "offline"

    def base_rules(self) -> RuleConfig:
        return default_config().overridden({"news2": {"medium_total": self.news2_medium,
                                                      "high_total": self.news2_high}})


@dataclass(frozen=True, slots=True)
class EdgeNotice:
    """An edge-level local alarm shown on the status page (the outbox dropped data under its disk budget)."""

    at: dt.datetime
    message: str


class LocalAlerting:
    """The edge's alarm engine with its side effects. Thread-safe: one lock around the engine."""

    def __init__(
        self, *, store: AlertingStore, enqueue: AlertSink, uplink_connected: Callable[[], bool],
        clock: Callable[[], float], edge: Mapping[str, str], config: LocalAlertingConfig | None = None,
        notifier: WebhookNotifier | None = None, metrics: Registry | None = None,
    ) -> None:
        self.config = config or LocalAlertingConfig()
        self._store = store
        self._enqueue = enqueue
        self._uplink_connected = uplink_connected
        self._clock = clock
        self._edge = dict(edge)
        self._notifier = notifier
        self._lock = threading.RLock()
        self._base = self.config.base_rules()
        self._site_overrides: dict[str, Any] = {}
        self._patient_overrides: dict[str, dict[str, Any]] = {}
        self._engine = AlarmEngine(self._base)
        self._buffer = VitalsBatchBuilder()
        self._active: dict[Any, OpenAlert] = {}
        self._notices: collections.deque[EdgeNotice] = collections.deque(maxlen=_NOTICES_KEPT)
        self._watermark_us: int | None = None
        self._dirty = False
        registry = metrics or Registry()
        self._m_changes = registry.counter("telemed_alert_changes_total", "Local alarm changes by type and category",
                                           ("change", "category"))
        self._m_samples = registry.counter("telemed_alerting_samples_total", "Samples evaluated by the local engine")
        self._m_failures = registry.counter("telemed_alerting_failures_total",
                                            "Evaluation, enqueue or save failures", ("stage",))
        active = registry.gauge("telemed_alerts_active", "Open local alarm incidents", ("priority", "category"))

        def collect() -> None:
            counts: collections.Counter[tuple[str, str]] = collections.Counter(
                (a.alert.priority, a.alert.category) for a in self.active())
            for priority in PRIORITY_RANK:
                for category in ("clinical", "technical", "advisory"):
                    active.set(counts.get((priority, category), 0), priority=priority, category=category)

        registry.add_collector(collect)

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> list[AlarmChange]:
        """Restore the saved state; incidents that cannot carry on (rules changed, state lost) are cleared."""
        at = self._now()
        try:
            saved = self._store.load()
        except AlertingStateError as exc:
            log.error("alerting.state_unreadable", extra={"error": str(exc)})
            saved = SavedState()
        with self._lock:
            self._site_overrides = saved.site_overrides
            self._patient_overrides = saved.patient_overrides
            self._active = {a.alert.alert_id: a for a in saved.active}
            try:
                site = self._base.overridden(self._site_overrides)
            except AlertingError as exc:
                log.error("alerting.saved_overrides_invalid", extra={"error": str(exc)})
                self._site_overrides, site = {}, self._base
            changes: list[AlarmChange] = []
            restored = self._restore(saved.engine)
            if restored is not None and restored.config == site:
                self._engine = restored
            else:
                if restored is not None:
                    log.warning("alerting.rules_changed", extra={"patients": len(restored.patients)})
                    for patient in restored.patients:
                        changes += restored.remove_patient(patient, at=at)
                self._engine = AlarmEngine(site)
                self._reapply_patients(at)
            self._apply(changes)
            if restored is None and self._active:
                # The engine's memory is gone: close what it can no longer follow, so nothing stays open forever.
                self._close_orphans(list(self._active.values()), at)
        log.info("alerting.started", extra={"patients": len(self._engine.patients), "open": len(self._active)})
        self.save()
        return changes

    def close(self) -> None:
        """Evaluate what is buffered, then save."""
        self.evaluate()
        self.save()

    # --- samples and time -------------------------------------------------------------------------------

    def observe(self, sample: VitalSample) -> None:
        """Buffer one sample for the next evaluation (the collector's observer)."""
        with self._lock:
            self._buffer.add(sample.time, sample.patient_id, sample.kind, sample.value, device_id=sample.device_id,
                             quality=int(sample.quality))

    def evaluate(self) -> list[AlarmChange]:
        """Evaluate the buffered samples, then let time pass to now; apply and return the changes."""
        now_us = to_micros(dt.datetime.fromtimestamp(self._now_s(), dt.UTC))
        with self._lock:
            changes: list[AlarmChange] = []
            if len(self._buffer):
                try:
                    batch = self._buffer.build()
                    self._m_samples.inc(len(batch))
                    changes += self._engine.observe_batch(batch)
                except (ValidationError, AlertingError, ValueError) as exc:
                    self._m_failures.inc(stage="evaluate")
                    log.error("alerting.batch_failed", extra={"error": str(exc)})
                    self._buffer = VitalsBatchBuilder()
            if self._watermark_us is None or now_us > self._watermark_us:
                self._watermark_us = now_us
                changes += self._engine.tick(from_micros(now_us))
            self._apply(changes)
        return changes

    # --- configuration (the cloud's `configure` command) ---------------------------------------------

    def configure(self, overrides: Mapping[str, Any] | None, *, patient_id: str | None = None) -> list[AlarmChange]:
        """Apply rule overrides for the site, or for one patient (None: back to the site's rules).

        Raises proto.alerting.RuleConfigError for overrides that do not validate, before anything changes.
        Changing the site's rules closes every open incident and starts evaluation afresh.
        """
        at = self._now()
        with self._lock:
            self.evaluate()
            if patient_id is None:
                site_overrides = dict(overrides or {})
                site = self._base.overridden(site_overrides)
                for patch in self._patient_overrides.values():
                    site.overridden(patch)  # a patient's overrides must still apply on the new site rules
                changes: list[AlarmChange] = []
                for patient in self._engine.patients:
                    changes += self._engine.remove_patient(patient, at=at)
                self._site_overrides = site_overrides
                self._engine = AlarmEngine(site)
                self._reapply_patients(at)
                log.info("alerting.site_configured", extra={"sections": sorted(site_overrides)})
            else:
                config = None if overrides is None else self._engine.config.overridden(dict(overrides))
                changes = self._engine.configure_patient(patient_id, config, at=at)
                if overrides is None:
                    self._patient_overrides.pop(patient_id, None)
                else:
                    self._patient_overrides[patient_id] = dict(overrides)
                log.info("alerting.patient_configured", extra={"patient_id": patient_id,
                                                               "sections": sorted(overrides or {})})
            self._apply(changes)
        self.save()
        return changes

    # --- what the status page shows ----------------------------------------------------------------------

    def active(self) -> list[OpenAlert]:
        """Open incidents, most urgent first (clinical before technical), then oldest first."""
        with self._lock:
            items = list(self._active.values())
        return sorted(items, key=lambda a: (PRIORITY_RANK[a.alert.priority], a.alert.category != "clinical",
                                            a.alert.raised_at))

    def notices(self) -> list[EdgeNotice]:
        with self._lock:
            return list(self._notices)

    def site_rules(self) -> RuleConfig:
        with self._lock:
            return self._engine.config

    # --- the outbox's disk budget -----------------------------------------------------------------------

    def outbox_evicted(self, report: EvictionReport) -> None:
        """A local alarm: the outbox dropped queued data to stay within its disk budget (docs/edge-outbox.md)."""
        parts = ", ".join(f"{e.messages} {e.lane.label}" for e in report.evicted)
        notice = EdgeNotice(report.at, f"outbox over its {report.budget_bytes} byte budget: dropped {parts}")
        with self._lock:
            self._notices.append(notice)
        log.error("alerting.outbox_eviction", extra={"messages": report.messages, "bytes": report.bytes})
        if self._notifier is not None:
            self._notifier.notify({"type": "telemed.outbox_eviction", "edge": self._edge,
                                   "at": notice.at.isoformat(), "message": notice.message,
                                   "messages": report.messages, "bytes": report.bytes})

    # --- persistence -------------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the engine's state, the overrides and the open incidents (one transaction)."""
        with self._lock:
            state = SavedState(engine=self._engine.to_dict(), site_overrides=dict(self._site_overrides),
                               patient_overrides=dict(self._patient_overrides), active=tuple(self._active.values()))
            self._dirty = False
        try:
            self._store.save(state)
        except AlertingStateError as exc:
            self._m_failures.inc(stage="save")
            log.error("alerting.save_failed", extra={"error": str(exc)})

    @property
    def dirty(self) -> bool:
        """Whether something changed since the last save (the service saves soon after changes)."""
        return self._dirty

    # --- internals ----------------------------------------------------------------------------------------

    def _now_s(self) -> float:
        return self._clock()

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)

    def _restore(self, data: dict[str, Any] | None) -> AlarmEngine | None:
        if data is None:
            return None
        try:
            return AlarmEngine.from_dict(data)
        except (StateFormatError, AlertingError) as exc:
            log.error("alerting.state_discarded", extra={"error": str(exc)})
            return None

    def _reapply_patients(self, at: dt.datetime) -> None:
        for patient, patch in list(self._patient_overrides.items()):
            try:
                self._engine.configure_patient(patient, self._engine.config.overridden(patch), at=at)
            except AlertingError as exc:
                log.error("alerting.patient_overrides_dropped", extra={"patient_id": patient, "error": str(exc)})
                del self._patient_overrides[patient]

    def _close_orphans(self, orphans: list[OpenAlert], at: dt.datetime) -> None:
        changes = [AlarmChange("cleared", replace(
            o.alert, state="cleared", raised_at=at,
            message=f"{o.alert.message} (closed: the edge restarted without its alarm state)"[:500]),
            o.alert.priority) for o in orphans]
        self._apply(changes)

    def _apply(self, changes: list[AlarmChange]) -> None:
        """Queue each change for the cloud, keep the open list, tell local staff when due (lock held)."""
        if not changes:
            return
        uplink_up = self._uplink_connected()
        for change in changes:
            alert = change.alert
            self._m_changes.inc(change=change.change, category=alert.category)
            try:
                self._enqueue(alert).add_done_callback(_log_enqueue_failure)
            except (OutboxError, ValidationError) as exc:
                self._m_failures.inc(stage="enqueue")
                log.error("alerting.enqueue_failed", extra={"alert_id": str(alert.alert_id), "error": str(exc)})
            previous = self._active.get(alert.alert_id)
            told_before = previous is not None and previous.notified_locally
            tell = self._notifier is not None and (self.config.notify_when == "always" or not uplink_up or told_before)
            if alert.state == "cleared":
                self._active.pop(alert.alert_id, None)
            else:
                self._active[alert.alert_id] = OpenAlert(alert, told_before or tell)
            if tell and self._notifier is not None:
                self._notifier.notify(self._document(change, uplink_up))
            log.info("alerting.change", extra={
                "change": change.change, "alert_id": str(alert.alert_id), "patient_id": alert.patient_id,
                "rule": alert.rule, "priority": alert.priority, "category": alert.category,
                "device_id": alert.device_id, "uplink": "up" if uplink_up else "down", "local_notify": tell})
        self._dirty = True

    def _document(self, change: AlarmChange, uplink_up: bool) -> dict[str, Any]:
        news2 = change.news2
        return {
            "type": "telemed.alert", "change": change.change, "previous_priority": change.previous_priority,
            "edge": self._edge, "uplink": "up" if uplink_up else "down", "alert": to_wire(change.alert),
            "news2": None if news2 is None else {"total": news2.total, "subscores": dict(news2.subscores),
                                                 "risk": news2.risk, "missing": list(news2.missing)},
        }


def _log_enqueue_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("alerting.enqueue_failed", extra={"error": str(exc)})
