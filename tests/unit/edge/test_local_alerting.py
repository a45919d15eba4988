"""Local alerting with the uplink down: a deteriorating simulated patient raises alarms that reach the status page,
a signed local webhook and the outbox's alerts lane; state survives a restart; the cloud's configure applies."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from devices.sim.artefacts import ArtefactProfile
from devices.sim.devices import WARD_DEVICES
from devices.sim.sensors import CHEST_PATCH, HEART_RATE_MONITOR, PULSE_OXIMETER
from edge.alerting import (
    AlertingStore,
    LocalAlerting,
    LocalAlertingConfig,
    WebhookConfig,
    WebhookNotifier,
    signature,
    verify_signature,
)
from edge.alerting.commands import register_alerting_commands
from edge.collector import Collector, CollectorConfig, DeviceRegistry, SimulatedWard, TimePolicy, WardOptions
from edge.http import Health, StatusSnapshot, render_status_page
from edge.outbox import Evicted, EvictionReport, Lane, Outbox
from edge.uplink import CommandRegistry, VitalsBatcher
from proto import envelope, keys, topics
from proto.envelope import SignerKey
from proto.messages import Alert, Command
from proto.quality import Quality
from proto.vitals import VitalSample

CST = dt.timezone(dt.timedelta(hours=8))
START = dt.datetime(2026, 3, 2, 8, tzinfo=CST)
SECRET = "s3cret-for-the-nurse-station"
EDGE = {"id": "edge-t", "site": "county-t", "name": "Test county"}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    valid: bool


@dataclass
class WebhookSink:
    """An in-test HTTP receiver that checks the HMAC of every request; `fail_first` answers 500 that often."""

    fail_first: int = 0
    status: int = 200
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def documents(self) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(r.body) for r in self.received if r.valid]


@pytest.fixture
def webhook() -> Iterator[WebhookSink]:
    sink = WebhookSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = {k: v for k, v in self.headers.items()}
            valid = verify_signature(SECRET.encode(), headers, body, now=time.time())
            with sink.lock:
                sink.received.append(Received(headers, body, valid))
                failing = sink.fail_first > 0
                sink.fail_first -= 1
            self.send_response(500 if failing else sink.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/alarms"
    yield sink
    server.shutdown()
    server.server_close()


class AlertingRig:
    """Outbox + batcher + local alerting (+ webhook) in front of a simulated ward's collector."""

    def __init__(self, tmp_path: Path, *, uplink_up: Callable[[], bool], webhook_url: str | None,
                 notify_when: str = "offline", patients: int = 1, scenario: str = "acute_hypoxia",
                 time_scale: float = 0.05, devices: tuple[str, ...] = (PULSE_OXIMETER, HEART_RATE_MONITOR,
                                                                       CHEST_PATCH)) -> None:
        self.edge_key = keys.generate()
        self.outbox = Outbox(tmp_path / "outbox.sqlite3", edge_id=EDGE["id"], signer=self.edge_key)
        self.batcher = VitalsBatcher(self.outbox.enqueue, max_samples=2000, max_age_s=3600.0)
        self.sim = SimulatedWard(WardOptions(patients, scenario=scenario, time_scale=time_scale, seed=2, speed="max",
                                             devices=devices,
                                             artefacts=ArtefactProfile.clean()), patient_prefix="e1", start=START)
        self.notifier = None if webhook_url is None else WebhookNotifier(
            WebhookConfig(url=webhook_url, secret=SECRET, backoff_initial_s=0.05, backoff_max_s=0.2))
        if self.notifier is not None:
            self.notifier.start()
        self.store = AlertingStore(tmp_path / "alerting.sqlite3")
        self.alerting = self.local_alerting(uplink_up, notify_when)
        self.registry = DeviceRegistry(tmp_path / "devices.sqlite3")
        self.registry.seed(self.sim.records())
        self.collector = self.new_collector()

    def new_collector(self) -> Collector:
        return Collector(self.sim.transport, self.registry, on_sample=self.batcher.add_sample,
                         observer=self.alerting.observe, on_status=lambda _s, _at: None, clock=self.sim.clock,
                         config=CollectorConfig(time_policy=TimePolicy(CST)))

    def local_alerting(self, uplink_up: Callable[[], bool], notify_when: str = "offline") -> LocalAlerting:
        alerting = LocalAlerting(store=self.store, enqueue=self.outbox.enqueue, uplink_connected=uplink_up,
                                 clock=self.sim.clock.now, edge=EDGE, notifier=self.notifier,
                                 config=LocalAlertingConfig(notify_when=notify_when))  # type: ignore[arg-type]
        alerting.start()
        return alerting

    async def run(self, seconds: int, step: int = 5) -> None:
        """Run the ward, evaluating as the service does (here every `step` simulated seconds)."""
        if not self.collector.devices():
            await self.collector.start()
        for _ in range(seconds // step):
            await self.sim.ward.run(step)
            self.sim.chart(self.chart)  # the nurse charts consciousness and oxygen
            self.alerting.evaluate()

    def chart(self, sample: VitalSample) -> None:
        self.batcher.add_sample(sample)
        self.alerting.observe(sample)

    def queued_alerts(self) -> list[Alert]:
        self.outbox.flush(timeout=30)  # enqueue only hands the alert to the group-commit writer
        page = self.outbox.pending(Lane.ALERTS, limit=1000)
        topic = topics.build(EDGE["site"], EDGE["id"], "alerts")
        lookup = {EDGE["id"]: SignerKey(self.edge_key.public_key(), site=EDGE["site"])}.get
        return [envelope.open_envelope(m.envelope, topic=topic, keys=lookup).payload  # type: ignore[misc]
                for m in page.messages]

    async def close(self) -> None:
        await self.collector.stop()
        await self.sim.aclose()
        self.batcher.stop()
        self.alerting.close()
        if self.notifier is not None:
            self.notifier.stop()
        self.outbox.close()
        self.store.close()
        self.registry.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_hypoxia_with_the_uplink_down_alarms_locally_and_queues_for_the_cloud(
        tmp_path: Path, webhook: WebhookSink) -> None:
    rig = AlertingRig(tmp_path, uplink_up=lambda: False, webhook_url=webhook.url)
    webhook.fail_first = 1  # the nurse station's gateway hiccups once: the webhook retries

    async def scenario() -> None:
        await rig.run(240)  # SpO2 falls to ~84 % by 90 s (30 min x 0.05)
        open_alerts = rig.alerting.active()
        desaturation = [a for a in open_alerts if a.alert.rule == "spo2_low"]
        assert [(a.alert.patient_id, a.alert.priority, a.alert.category) for a in desaturation] == [
            ("e1-P001", "high", "clinical")]
        assert desaturation[0].notified_locally
        assert desaturation[0].alert.value is not None and desaturation[0].alert.value < 90

        # The status page lists it, most urgent first.
        page = render_status_page(StatusSnapshot(
            edge_id="edge-t", site="county-t", name="Test county", now=START, uptime_s=1.0,
            health=Health(False, "disconnected", 300.0, {}, 3, 3), alerts=tuple(open_alerts)), "en")
        assert "spo2_low" in page and 'class="p-high"' in page and "Cloud unreachable" in page

        # The cloud will get every change, from the alerts lane.
        queued = rig.queued_alerts()
        assert any(a.rule == "spo2_low" and a.state == "active" and a.priority == "high" for a in queued)
        assert {a.alert_id for a in queued} >= {a.alert.alert_id for a in open_alerts}

        # The local webhook got the same, signed.
        wait_for(lambda: any(d["alert"]["rule"] == "spo2_low" for d in webhook.documents()))
        document = next(d for d in webhook.documents() if d["alert"]["rule"] == "spo2_low")
        assert document["type"] == "telemed.alert" and document["uplink"] == "down"
        assert document["edge"] == EDGE and document["change"] in ("raised", "escalated")
        assert document["alert"]["alert_id"] == str(desaturation[0].alert.alert_id)
        assert all(r.valid for r in webhook.received)
        retried = [r for r in webhook.received if r.headers["X-Telemed-Delivery"] ==
                   webhook.received[0].headers["X-Telemed-Delivery"]]
        assert len(retried) == 2  # the first attempt got 500, the retry went through
        await rig.close()

    asyncio.run(scenario())


def test_a_septic_patients_news2_alarm_escalates_as_one_incident(tmp_path: Path, webhook: WebhookSink) -> None:
    rig = AlertingRig(tmp_path, uplink_up=lambda: False, webhook_url=webhook.url, scenario="sepsis",
                      time_scale=0.03, devices=WARD_DEVICES)  # the 12 h course in 22 minutes

    async def scenario() -> None:
        await rig.run(1100, step=10)
        news2 = [a for a in rig.queued_alerts() if a.rule == "news2"]
        assert [(a.priority, a.state) for a in news2][:2] == [("medium", "active"), ("high", "active")]
        assert len({a.alert_id for a in news2}) == 1  # escalated, not a second incident
        assert news2[-1].news2_total is not None and news2[-1].news2_total >= 7
        wait_for(lambda: any(d["alert"]["rule"] == "news2" and d["change"] == "escalated"
                             for d in webhook.documents()))
        escalation = next(d for d in webhook.documents() if d["change"] == "escalated")
        assert escalation["previous_priority"] == "medium" and escalation["news2"]["total"] >= 7
        await rig.close()

    asyncio.run(scenario())


def test_with_the_uplink_up_alarms_go_to_the_cloud_only(tmp_path: Path, webhook: WebhookSink) -> None:
    rig = AlertingRig(tmp_path, uplink_up=lambda: True, webhook_url=webhook.url)

    async def scenario() -> None:
        await rig.run(200)
        assert any(a.alert.rule == "spo2_low" and not a.notified_locally for a in rig.alerting.active())
        assert any(a.rule == "spo2_low" for a in rig.queued_alerts())
        await rig.close()

    asyncio.run(scenario())
    assert webhook.received == []


def test_open_incidents_and_engine_state_survive_a_restart(tmp_path: Path) -> None:
    rig = AlertingRig(tmp_path, uplink_up=lambda: False, webhook_url=None)

    async def scenario() -> None:
        await rig.run(200)
        before = {a.alert.alert_id: a.alert.rule for a in rig.alerting.active()}
        assert "spo2_low" in before.values()
        rig.alerting.save()

        # A new process: the same store, the same rules, a new collector feeding the restored engine.
        await rig.collector.stop()
        rig.alerting = rig.local_alerting(lambda: False)
        assert {a.alert.alert_id: a.alert.rule for a in rig.alerting.active()} == before
        rig.collector = rig.new_collector()
        queued_before = len(rig.queued_alerts())
        await rig.run(20)
        assert not [a for a in rig.queued_alerts()[queued_before:] if a.rule == "spo2_low" and a.state == "active"
                    and a.alert_id not in before]  # the incident carries on, no duplicate raise
        await rig.close()

    asyncio.run(scenario())


def test_the_clouds_configure_command_changes_a_patients_rules(tmp_path: Path) -> None:
    rig = AlertingRig(tmp_path, uplink_up=lambda: True, webhook_url=None)
    commands = CommandRegistry()
    register_alerting_commands(commands, rig.alerting)

    async def scenario() -> None:
        await rig.run(200)
        (incident,) = [a.alert for a in rig.alerting.active() if a.alert.rule == "spo2_low"]

        bad = Command(command_id=uuid.uuid4(), name="configure",
                      args={"alerting": {"thresholds": {"spo2_low": {"levels": "lots"}}}, "patient_id": "e1-P001"})
        assert not commands.dispatch(bad)
        assert incident.alert_id in {a.alert.alert_id for a in rig.alerting.active()}

        # A patient with chronic hypoxaemia: the doctor drops the SpO2 alarm for them.
        drop = Command(command_id=uuid.uuid4(), name="configure",
                       args={"alerting": {"thresholds": {"spo2_low": None}}, "patient_id": "e1-P001"})
        assert commands.dispatch(drop)
        assert incident.alert_id not in {a.alert.alert_id for a in rig.alerting.active()}
        cleared = [a for a in rig.queued_alerts() if a.alert_id == incident.alert_id and a.state == "cleared"]
        assert len(cleared) == 1
        await rig.run(30)
        assert not [a for a in rig.alerting.active() if a.alert.rule == "spo2_low"]
        await rig.close()

    asyncio.run(scenario())


def test_artefacts_raise_technical_alarms_only() -> None:
    """Motion-flagged desaturation is a technical condition (IEC 60601-1-8), never a clinical page."""
    clock = [START.timestamp()]
    queued: list[Alert] = []

    def enqueue(alert: Alert) -> Any:
        queued.append(alert)
        from concurrent.futures import Future
        done: Future[None] = Future()
        done.set_result(None)
        return done

    class MemoryStore(AlertingStore):
        def __init__(self) -> None:
            pass

        def load(self) -> Any:
            from edge.alerting import SavedState
            return SavedState()

        def save(self, state: Any) -> None:
            pass

    alerting = LocalAlerting(store=MemoryStore(), enqueue=enqueue, uplink_connected=lambda: False,
                             clock=lambda: clock[0], edge=EDGE)
    alerting.start()
    for second in range(120):
        when = START + dt.timedelta(seconds=second)
        alerting.observe(VitalSample(when, "pt-9", "spo2", 80.0, "plx-9", Quality.SIGNAL_QUESTIONABLE))
        clock[0] = when.timestamp()
        alerting.evaluate()
    assert queued and {a.category for a in queued} == {"technical"}
    assert {a.category for a in (o.alert for o in alerting.active())} == {"technical"}


def test_an_outbox_eviction_is_a_local_notice_and_a_webhook(tmp_path: Path, webhook: WebhookSink) -> None:
    rig = AlertingRig(tmp_path, uplink_up=lambda: True, webhook_url=webhook.url)
    report = EvictionReport(at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC), budget_bytes=1 << 20,
                            evicted=(Evicted(Lane.VITALS, 120, 900_000, 1_700_000_000_000_000),), cloud_alert_id=None)
    rig.alerting.outbox_evicted(report)
    assert [n.message for n in rig.alerting.notices()] == ["outbox over its 1048576 byte budget: dropped 120 vitals"]
    wait_for(lambda: bool(webhook.documents()))
    assert webhook.documents()[0]["type"] == "telemed.outbox_eviction"
    asyncio.run(rig.close())


def test_webhook_signatures_detect_tampering_and_replays() -> None:
    body = b'{"type":"telemed.alert"}'
    now = 1_767_225_600
    headers = {"X-Telemed-Timestamp": str(now), "X-Telemed-Signature": signature(SECRET.encode(), str(now), body)}
    assert verify_signature(SECRET.encode(), headers, body, now=now + 10)
    assert not verify_signature(SECRET.encode(), headers, body + b" ", now=now)
    assert not verify_signature(b"another key", headers, body, now=now)
    assert not verify_signature(SECRET.encode(), headers, body, now=now + 3600)  # replayed an hour later


def test_a_webhook_the_receiver_refuses_is_not_retried(webhook: WebhookSink) -> None:
    webhook.status = 400
    notifier = WebhookNotifier(WebhookConfig(url=webhook.url, secret=SECRET, backoff_initial_s=0.01))
    notifier.start()
    notifier.notify({"n": 1})
    wait_for(lambda: notifier.pending() == 0 and len(webhook.received) == 1)
    time.sleep(0.1)
    notifier.stop()
    assert len(webhook.received) == 1
