"""The alerting service: the streaming evaluator, incident timers and paging, composed (`telemed-cloud alerting`).

    MQTT up/vitals, up/alerts --feed (verify)--> evaluator (an AlarmEngine per edge, ticked in edge time)
        --> workflow.apply_alarms: incidents opened/merged/updated (one transaction: rows, timeline, audit,
            pg_notify for the dashboard)
        --> workflow.sweep: auto-resolve, acknowledgement timeouts, escalation steps -> pending deliveries
        --> dispatcher: webhook / WeCom / DingTalk / e-mail, retried, logged
    every few seconds: the sweep (timers fire without messages), the on-call directory refresh, the engines'
    state saved to the database; every minute: personal anomaly baselines (advisories, never pages).

Edge alerts (up/alerts) and the cloud's own alarm changes carry the same deterministic alert ids, so they
become one incident and page once, whichever arrives first. A restart resumes: the engines' saved state is
loaded, the broker kept the messages of the persistent session meanwhile, and pending deliveries are resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from cloud.alerting import store
from cloud.alerting.anomaly import FEATURES, AnomalyDetector, MinuteMean
from cloud.alerting.config import AlertingSettings
from cloud.alerting.errors import AnomalyError
from cloud.alerting.evaluator import EdgeEngines, SavedEngine, encode
from cloud.alerting.feed import FeedConfig, Inbound, MqttFeed
from cloud.alerting.notify.channels import build_channel
from cloud.alerting.notify.dispatcher import ChannelFactory, Dispatcher
from cloud.alerting.workflow import AlarmInput, Directory, Outcome, apply_alarms, load_directory, sweep
from cloud.db.pool import connect, create_async_pool
from cloud.edges import store as edge_store
from cloud.edges.registry import EdgeRecord, EdgeRegistry
from cloud.identity.keys import KeySource
from cloud.identity.keystore import VerifiedKeys
from cloud.settings import CloudSettings
from proto.alerting import AlarmChange, AlertingError
from proto.messages import Alert
from proto.vitals import VitalsBatch
from proto.vocabulary import BY_WIRE_ID, kind

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
Pool = AsyncConnectionPool[AsyncConnection[Any]]
_FEATURE_IDS = tuple(kind(name).wire_id for name in FEATURES)
_RETRY_DB_S = 1.0
_STOP_GRACE_S = 10.0
_SLOW_S = 0.25  # a job or batch taking longer than this delays pages: say so
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)
_RECENT = dt.timedelta(minutes=15)  # scored every minute: a quarter hour covers a few missed rounds
_SWEEP_LIMIT = 200


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EdgeSource:
    """The edge registry's source: every edge, read on a dedicated synchronous connection (paho's thread).

    When the database is unreachable the last list read stands, so verification keeps working on what was
    known rather than rejecting every message.
    """

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings
        self._conn: psycopg.Connection[Any] | None = None
        self._last: list[EdgeRecord] = []

    def __call__(self) -> list[EdgeRecord]:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._settings.database, autocommit=True, application_name="telemed-alerting")
            self._last = edge_store.list_edges(self._conn)
        except (psycopg.Error, OSError) as exc:
            log.warning("alerting.edges_unavailable error=%s", str(exc).strip())
            if self._conn is not None:
                self._conn.close()
            self._conn = None
        return self._last

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def feed_config(settings: CloudSettings, config: AlertingSettings) -> FeedConfig:
    mqtt = settings.mqtt
    return FeedConfig(host=mqtt.host, port=mqtt.port, username=mqtt.username, password=mqtt.password,
                      client_id=config.client_id, tls=mqtt.tls, cafile=mqtt.cafile, keepalive_s=mqtt.keepalive_s,
                      session_expiry_s=config.session_expiry_s, receive_maximum=config.receive_maximum,
                      queue_size=config.queue_size)


class AlertingService:
    """Evaluates, tracks incidents and pages until stopped. `use_feed=False` leaves out MQTT (tests feed
    `process` directly)."""

    def __init__(self, settings: CloudSettings, config: AlertingSettings | None = None, *, clock: Clock = utc_now,
                 channel_factory: ChannelFactory = build_channel, use_feed: bool = True,
                 detector: AnomalyDetector | None = None) -> None:
        self.settings = settings
        self.config = config or AlertingSettings()
        self.clock = clock
        self.pool: Pool = create_async_pool(settings.database, name="telemed-alerting",
                                            application_name="telemed-alerting")
        self.engines = EdgeEngines()
        self.detector = detector or AnomalyDetector()
        self.directory = Directory(link_base=self.config.link_base or None)
        self.dispatcher = Dispatcher(self.pool, retry=self.config.retry, concurrency=self.config.delivery_concurrency,
                                     channel_factory=channel_factory, clock=clock,
                                     keys=VerifiedKeys(KeySource.from_settings(settings)))
        self._use_feed = use_feed
        self._edges: EdgeSource | None = None
        self.feed: MqttFeed | None = None
        self._pending: list[AlarmInput] = []
        # The engines are touched by this one thread only (evaluation, snapshots), never by the event loop.
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerting-engine")
        self._fit_tried: dict[str, dt.datetime] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.samples = 0

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool, restore the engines, resume deliveries, subscribe and start the loops."""
        await self.pool.open(wait=True, timeout=self.settings.database.connect_timeout_s)
        await self.refresh_directory()
        await self._restore()
        await self.dispatcher.resume()
        if self._use_feed:
            self._edges = EdgeSource(self.settings)
            registry = EdgeRegistry(self._edges, ttl_s=self.config.edge_cache_ttl_s)
            self.feed = MqttFeed(feed_config(self.settings, self.config), registry, clock=self.clock)
            await asyncio.to_thread(self.feed.start)
            self._tasks.append(asyncio.create_task(self._consume(), name="alerting-consume"))
        self._tasks.append(asyncio.create_task(self._timers(), name="alerting-timers"))
        self.started.set()
        log.info("alerting.started edges=%d feed=%s", len(self.engines.edges), self._use_feed)

    async def stop(self, *, drain_s: float = 5.0) -> None:
        """Stop consuming, evaluate what was already received, save the engines, let deliveries finish."""
        self._stop.set()
        if self.feed is not None:
            await asyncio.to_thread(self.feed.stop)
        if self._tasks:  # the loops see the stop event and finish their current job
            _, late = await asyncio.wait(self._tasks, timeout=_STOP_GRACE_S)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._tasks.clear()
        if self.feed is not None:
            leftover = self.feed.get_batch(self.config.queue_size, 0.0)
            while leftover:  # auto-acknowledged by the broker already: evaluate rather than lose them
                await self.process(leftover)
                leftover = self.feed.get_batch(self.config.queue_size, 0.0)
        with contextlib.suppress(psycopg.Error):
            await self._flush_pending()
            await self.save_state(only_dirty=True)
        await self.dispatcher.drain(drain_s)
        await self.dispatcher.close()
        if self._edges is not None:
            self._edges.close()
        await self.pool.close()
        self._engine_thread.shutdown(wait=True)
        log.info("alerting.stopped samples=%d", self.samples)

    async def run(self) -> None:
        """Start, run until `request_stop`, stop."""
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()

    def request_stop(self) -> None:
        self._stop.set()

    # --- evaluation ---------------------------------------------------------------------------------------------

    def evaluate(self, items: Sequence[Inbound]) -> list[AlarmInput]:
        """The alarm messages of received messages: the cloud's own evaluation of vitals, the edges' alerts."""
        inputs: list[AlarmInput] = []
        for item in items:
            if isinstance(item.payload, VitalsBatch):
                try:
                    changes: list[AlarmChange] = self.engines.observe(item.edge_id, item.site_id, item.payload)
                except AlertingError as exc:  # one malformed batch must not stop the evaluation of the rest
                    log.error("alerting.batch_skipped edge=%s error=%s", item.edge_id, exc)
                    continue
                self.samples += len(item.payload)
                inputs += [AlarmInput(c.alert, "cloud", item.site_id, item.edge_id) for c in changes]
            elif isinstance(item.payload, Alert):
                inputs.append(AlarmInput(item.payload, "edge", item.site_id, item.edge_id))
        return inputs

    async def process(self, items: Sequence[Inbound]) -> Outcome:
        """Evaluate received messages (edge alerts first) and apply their alarms as soon as a message
        produces any, so a page never waits for the rest of the batch; pages that became due go out at once.

        The engines run on their own worker thread: the event loop stays free for the database and the
        deliveries while a large batch is evaluated.
        """
        loop = asyncio.get_running_loop()
        total = Outcome()
        for item in sorted(items, key=lambda i: not isinstance(i.payload, Alert)):
            self._pending += await loop.run_in_executor(self._engine_thread, self.evaluate, [item])
            if not self._pending:
                continue
            outcome = await self._flush_pending()
            total.changed.update(outcome.changed)
            total.transitions += outcome.transitions
            now = self.clock()
            if any(i.next_page_at is not None and i.next_page_at <= now for i in outcome.changed.values()):
                await self.sweep()
        if self._pending:  # left by a database failure: retried with the next batch
            await self._flush_pending()
        return total

    async def apply(self, inputs: Sequence[AlarmInput]) -> Outcome:
        """Apply alarm messages (from any evaluator) in one transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            return await apply_alarms(conn, inputs, now=self.clock(), ctx=self.directory)

    async def _flush_pending(self) -> Outcome:
        if not self._pending:
            return Outcome()
        inputs, self._pending = self._pending, []
        try:
            return await self.apply(inputs)
        except psycopg.OperationalError:
            self._pending = inputs + self._pending  # computed once from the engine: never drop them
            raise

    async def sweep(self) -> Outcome:
        """Fire the timers due now (repeatedly while a full page of incidents was due) and send the pages."""
        total = Outcome()
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                outcome = await sweep(conn, now=self.clock(), ctx=self.directory, limit=_SWEEP_LIMIT)
            self.dispatcher.submit(outcome.deliveries)
            total.changed.update(outcome.changed)
            total.transitions += outcome.transitions
            total.deliveries += outcome.deliveries
            if len(outcome.changed) < _SWEEP_LIMIT:
                return total

    # --- periodic work ---------------------------------------------------------------------------------------------

    async def refresh_directory(self) -> None:
        async with self.pool.connection() as conn:
            self.directory = await load_directory(conn, now=self.clock(), default_policy=self.directory.default_policy,
                                                  link_base=self.directory.link_base)

    async def save_state(self, *, only_dirty: bool = True) -> int:
        """Save the engines that changed (all with `only_dirty=False`); how many.

        One edge at a time, encoded in a worker thread, so a large ward's state does not hold up the
        evaluation of the messages arriving meanwhile.
        """
        edges = self.engines.dirty() if only_dirty else list(self.engines.edges)
        saved = 0
        for edge_id in edges:
            if self.engines.watermark(edge_id) is None:
                continue
            snapshot = await asyncio.get_running_loop().run_in_executor(self._engine_thread, self.engines.snapshot,
                                                                        edge_id)
            entry = await asyncio.to_thread(encode, snapshot)
            async with self.pool.connection() as conn, conn.transaction():
                await store.save_engine_states(conn, [store.EngineState(entry.edge_id, entry.site_id,
                                                                        entry.watermark, entry.state)])
            saved += 1
        return saved

    async def _restore(self) -> None:
        async with self.pool.connection() as conn:
            rows = await store.load_engine_states(conn)
        unreadable = self.engines.restore(SavedEngine(r.edge_id, r.site_id, r.watermark, r.state) for r in rows)
        for edge_id in unreadable:
            log.error("alerting.state_unreadable edge=%s action=start_afresh", edge_id)
        if rows:
            log.info("alerting.state_restored edges=%d", len(rows) - len(unreadable))

    async def anomaly_round(self) -> Outcome:
        """Refit the baselines that are due (a bounded number per round), score the newest minutes of the
        patients that have one, and apply the advisories."""
        now = self.clock()
        patients = await asyncio.get_running_loop().run_in_executor(self._engine_thread, self.engines.patients)
        if not patients:
            return Outcome()
        async with self.pool.connection() as conn:
            fits = 0
            for patient_id in sorted(patients, key=lambda p: self._fit_tried.get(p, _NEVER)):
                tried = self._fit_tried.get(patient_id)
                if not self.detector.due_for_fit(patient_id, now) or (
                        tried is not None and now - tried < self.detector.config.refit_every / 6):
                    continue
                if fits >= self.config.anomaly_fits_per_round:
                    break
                fits += 1
                self._fit_tried[patient_id] = now
                start, end = self.detector.baseline_window(now)
                history = await store.minute_means(conn, [patient_id], since=start, until=end, kinds=_FEATURE_IDS)
                try:
                    await asyncio.to_thread(self.detector.fit, patient_id, _minute_rows(history.get(patient_id, [])),
                                            now)
                except AnomalyError as exc:
                    log.debug("alerting.baseline_not_fitted patient=%s reason=%s", patient_id, exc)
            scored = sorted(p for p in patients if self.detector.baseline(p) is not None)
            recent = await self._recent_minutes(conn, scored, now)
        inputs = []
        for patient_id in scored:
            site_id, edge_id = patients[patient_id]
            for alert in self.detector.evaluate(patient_id, _minute_rows(recent.get(patient_id, []))):
                inputs.append(AlarmInput(alert, "cloud", site_id, edge_id))
        return await self.apply(inputs) if inputs else Outcome()

    async def _recent_minutes(self, conn: AsyncConnection[Any], patients: Sequence[str], now: dt.datetime
                              ) -> dict[str, list[tuple[dt.datetime, int, float]]]:
        """The minutes a round scores: the last quarter hour of the continuous kinds, and as far back as the
        intermittent ones are carried (a cuff reading stands for an hour)."""
        until = now + dt.timedelta(minutes=1)
        carry = self.detector.config.carry
        continuous = tuple(kind(n).wire_id for n in FEATURES if n not in carry)
        out = await store.minute_means(conn, patients, since=now - _RECENT, until=until, kinds=continuous)
        for name, span in carry.items():
            carried = await store.minute_means(conn, patients, since=now - span - _RECENT, until=until,
                                               kinds=(kind(name).wire_id,))
            for patient_id, found in carried.items():
                out.setdefault(patient_id, []).extend(found)
        return out

    async def _consume(self) -> None:
        feed = self.feed
        assert feed is not None
        while not self._stop.is_set():
            items = await asyncio.to_thread(feed.get_batch, self.config.batch_max_messages, 0.2)
            if not items and not self._pending:
                continue
            began = time.monotonic()
            try:
                await self.process(items)
            except psycopg.OperationalError as exc:
                log.warning("alerting.database_unavailable error=%s retry_in_s=%.1f", str(exc).strip(), _RETRY_DB_S)
                await self._pause(_RETRY_DB_S)
            took = time.monotonic() - began
            if took > _SLOW_S:
                log.warning("alerting.slow_batch messages=%d ms=%.0f backlog=%d", len(items), took * 1000,
                            feed.backlog)

    async def _timers(self) -> None:
        cfg = self.config
        due = {"sweep": 0.0, "save": time.monotonic() + cfg.state_save_interval_s,
               "directory": time.monotonic() + cfg.directory_refresh_s,
               "anomaly": time.monotonic() + cfg.anomaly_interval_s}
        jobs: dict[str, tuple[float, Callable[[], Any]]] = {
            "sweep": (cfg.sweep_interval_s, self.sweep),
            "save": (cfg.state_save_interval_s, self.save_state),
            "directory": (cfg.directory_refresh_s, self.refresh_directory),
        }
        if cfg.anomaly_enabled:
            jobs["anomaly"] = (cfg.anomaly_interval_s, self.anomaly_round)
        while not self._stop.is_set():
            now = time.monotonic()
            for name, (interval, job) in jobs.items():
                if due[name] > now:
                    continue
                due[name] = now + interval
                try:
                    await job()
                except (psycopg.Error, OSError) as exc:  # log and carry on: the next round retries
                    log.warning("alerting.%s_failed error=%s", name, str(exc).strip())
                took = time.monotonic() - now
                if took > _SLOW_S:
                    log.warning("alerting.slow_job job=%s ms=%.0f", name, took * 1000)
            await self._pause(min(due[name] for name in jobs) - time.monotonic())

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake up at once when a stop is requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, seconds))


def _minute_rows(rows: Sequence[tuple[dt.datetime, int, float]]) -> list[MinuteMean]:
    return [MinuteMean(bucket, BY_WIRE_ID[kind_id].name, mean) for bucket, kind_id, mean in rows]


def run(settings: CloudSettings, config: AlertingSettings) -> int:
    """Run the service in the foreground until SIGINT or SIGTERM."""

    async def main() -> None:
        service = AlertingService(settings, config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.request_stop)
        await service.run()

    asyncio.run(main())
    return 0
