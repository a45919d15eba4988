"""`telemed-edge --simulate-ward` as a process against the real Mosquitto and an in-test acking cloud.

- The cloud receives vitals batches, device status events and alerts; /healthz, /metrics and the status page
  answer; SIGTERM stops the edge cleanly (exit 0) with every decoded reading either in the cloud or still in
  the outbox, which reopens intact.
- With the uplink down (the broker does not know the edge yet), a deteriorating patient raises alarms that
  reach the status page and a signed local webhook, /healthz turns 503; once the broker accepts the edge, the
  queued alerts reach the cloud before anything else.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.ports import free_loopback_port
from edge.alerting import OpenAlert, verify_signature
from edge.http import Health, HttpServer, StatusSnapshot
from edge.outbox import Lane, Outbox
from proto import envelope, keys, topics
from proto.envelope import Envelope, EnvelopeRejected, SignerKey
from proto.messages import Alert, Command, DicomManifest, EdgeStatus, Event
from proto.vitals import VitalsBatch
from tests.integration.test_uplink_cloud import FakeCloud

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SITE = "county-svc"
SECRET = "nurse-station-shared-secret"


class OrderedCloud(FakeCloud):
    """The fake cloud, also keeping every verified envelope in arrival order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: list[Envelope] = []

    def _receive(self, topic: str, raw: bytes) -> None:
        try:
            env = envelope.open_envelope(raw, topic=topic, keys=self.edges.get)
        except EnvelopeRejected:
            env = None
        if env is not None:
            with self.lock:
                self.arrivals.append(env)
        super()._receive(topic, raw)

    def stored(self, kind: type) -> list[Any]:
        with self.lock:
            return [e.payload for e in self.view.stored.values() if isinstance(e.payload, kind)]


@dataclass
class Hook:
    url: str = ""
    documents: list[dict[str, Any]] = field(default_factory=list)
    invalid: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def hook() -> Iterator[Hook]:
    sink = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = verify_signature(SECRET.encode(), dict(self.headers.items()), body, now=time.time())
            with sink.lock:
                if ok:
                    sink.documents.append(json.loads(body))
                else:
                    sink.invalid += 1
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/telemed"
    yield sink
    server.shutdown()
    server.server_close()


class EdgeProcess:
    """An edge config bundle in a temp dir and `python -m edge` running on it."""

    def __init__(self, bundle: Path, edge_id: str, *, host: str, port: int, password: str, cloud: Ed25519PrivateKey,
                 extra: str = "") -> None:
        self.bundle, self.edge_id = bundle, edge_id
        self.key = keys.generate()
        bundle.mkdir(parents=True, exist_ok=True)
        keys.write_private(bundle / "edge_ed25519.key", self.key)
        self.http_port, self.dicom_port = free_loopback_port(), free_loopback_port()
        (bundle / "edge.toml").write_text("\n".join((
            "[edge]", f'id = "{edge_id}"', f'site = "{SITE}"', 'name = "Integration county"',
            "[mqtt]", f'host = "{host}"', f"port = {port}", f'username = "{edge_id}"', f'password = "{password}"',
            "backoff_initial_s = 0.2", "backoff_max_s = 1.0", "heartbeat_s = 2.0",
            "[keys]", 'private_key_file = "edge_ed25519.key"',
            f'cloud_public_key = "{keys.public_to_text(cloud.public_key())}"',
            "[http]", f"port = {self.http_port}", "uplink_grace_s = 1.0",
            "[dicom]", f"port = {self.dicom_port}", "study_complete_timeout_s = 1.0",
            extra, "")))
        self.logs: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *args: str) -> EdgeProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "--config", str(self.bundle / "edge.toml"), *args],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=os.environ | {"PYTHONUNBUFFERED": "1"})
        threading.Thread(target=self._read, daemon=True).start()
        wait_until(lambda: self.logged("service.started") or self.proc.poll() is not None,  # type: ignore[union-attr]
                   60, "the edge to start")
        assert self.proc.poll() is None, f"the edge exited: {self.logs[-5:]}"
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.logs.append(json.loads(line))
            except json.JSONDecodeError:
                self.logs.append({"event": "unparsed", "line": line})

    def logged(self, event: str) -> dict[str, Any] | None:
        return next((entry for entry in list(self.logs) if entry.get("event") == event), None)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def outbox_envelopes(self) -> list[Envelope]:
        """What the stopped edge left queued (opening the outbox also proves its lock was released)."""
        lookup = {self.edge_id: SignerKey(self.key.public_key(), site=SITE)}.get
        out = []
        with Outbox(self.bundle / "outbox.sqlite3", edge_id=self.edge_id, signer=self.key) as box:
            for lane in Lane:
                for message in box.pending(lane, limit=100_000).messages:
                    topic = topics.build(SITE, self.edge_id, message.stream)
                    out.append(envelope.open_envelope(message.envelope, topic=topic, keys=lookup))
        return out


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def start_cloud(mosquitto: Any, edge: EdgeProcess, cloud_key: Ed25519PrivateKey) -> OrderedCloud:
    registry = {edge.edge_id: SignerKey(edge.key.public_key(), site=SITE)}
    return OrderedCloud(mosquitto.host, mosquitto.port, mosquitto.cloud.username, mosquitto.cloud.password,
                        cloud_key=cloud_key, edges=registry).start()  # type: ignore[return-value]


WARD = ("--simulate-ward", "3", "--scenario", "acute_hypoxia", "--time-scale", "0.05", "--speed", "20",
        "--seed", "4")


def test_the_edge_delivers_a_simulated_ward_and_stops_cleanly(mosquitto: Any, tmp_path: Path) -> None:
    edge_id = "edge-svc-1"
    creds = mosquitto.add_edge(edge_id)
    cloud_key = keys.generate()
    edge = EdgeProcess(tmp_path / "bundle", edge_id, host=mosquitto.host, port=mosquitto.port,
                       password=creds.password, cloud=cloud_key)
    cloud = start_cloud(mosquitto, edge, cloud_key)
    try:
        edge.start(*WARD)
        assert cloud.wait_for(lambda v: any(isinstance(e.payload, Alert) and e.payload.rule == "spo2_low"
                                            for e in v.stored.values()), 60), "no SpO2 alarm reached the cloud"
        assert cloud.wait_for(lambda v: edge_id in v.status and v.status[edge_id].state == "online", 20)
        batches = cloud.stored(VitalsBatch)
        statuses = [e.device_status for e in cloud.stored(Event) if e.device_status is not None]
        assert batches and sum(len(b) for b in batches) > 100
        assert {p for b in batches for p in b.patients} == {f"{edge_id}-P00{i}" for i in (1, 2, 3)}
        assert {s.state for s in statuses} == {"connected"} and len({s.device_id for s in statuses}) == 18
        assert all(s.patient_id and s.patient_id.startswith(edge_id) and s.battery_pct is not None for s in statuses)
        assert cloud.view.status[edge_id].devices_connected == 18

        status, body = edge.get("/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["uplink"] == "connected"
        assert health["devices_connected"] == 18
        status, body = edge.get("/metrics")
        metrics = body.decode()
        assert status == 200
        for line in ("telemed_uplink_connected 1", "telemed_devices_connected 18",
                     'telemed_outbox_depth{lane="alerts"}',
                     'telemed_collector_readings_decoded_total{device_type="pulse_oximeter"}',
                     'telemed_alerts_active{priority="high",category="clinical"}',
                     'telemed_uplink_acked_total{outcome="committed"}'):
            assert line in metrics, line
        status, body = edge.get("/?lang=en")
        assert status == 200 and b"Integration county" in body and b"spo2_low" in body

        # A modality sends a CT study: its manifest reaches the cloud, the page lists it.
        sent = subprocess.run([sys.executable, "-m", "devices.cli", "modality", "--host", "127.0.0.1", "--port",
                               str(edge.dicom_port), "--aet", "TELEMED_EDGE", "--study", "ct", "--slices", "4",
                               "--rows", "64", "--columns", "64", "--quiet"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert cloud.wait_for(lambda v: any(isinstance(e.payload, DicomManifest) and e.payload.instance_count == 4
                                            for e in v.stored.values()), 30), "no study manifest reached the cloud"
        studies = json.loads(edge.get("/api/status")[1])["studies"]
        assert [(st["instances"], st["state"]) for st in studies] == [(4, "complete")]
        assert "telemed_dicom_store_requests_total{status=" in edge.get("/metrics")[1].decode()

        # The cloud takes a device off its patient: the edge lets it go and says so.
        gone = statuses[0].device_id
        command = Command(command_id=uuid.uuid4(), name="unassign_device", args={"device_id": gone})
        cloud.client.publish(topics.build(SITE, edge_id, "cmd"),
                             envelope.seal(command, edge_id=edge_id, sequence=1, signer=cloud_key), qos=1)
        assert cloud.wait_for(lambda v: any(isinstance(e.payload, Event) and e.payload.device_status is not None
                                            and e.payload.device_status.device_id == gone
                                            and e.payload.device_status.state == "disconnected"
                                            for e in v.stored.values()), 20), "the unassigned device was not let go"
        wait_until(lambda: json.loads(edge.get("/healthz")[1])["devices_connected"] == 17, 10, "17 devices")

        assert edge.terminate() == 0
        stopped = edge.logged("service.stopped")
        assert stopped is not None
        left = edge.outbox_envelopes()
        assert stopped["outbox_depth"] == len(left)
        # Every sample the batcher closed is in the cloud or still queued: nothing decoded was lost.
        batches_by_id = {e.message_id: e.payload for e in list(cloud.view.stored.values()) + left
                         if isinstance(e.payload, VitalsBatch)}
        assert sum(len(b) for b in batches_by_id.values()) == stopped["samples_batched"]
        final = [e.payload.device_status for e in list(cloud.view.stored.values()) + left
                 if isinstance(e.payload, Event) and e.payload.device_status is not None
                 and e.payload.device_status.state == "disconnected"]
        assert len({s.device_id for s in final}) == 18  # each let go: one when unassigned, the rest at shutdown
    finally:
        edge.kill()
        cloud.stop()


def test_offline_alarms_are_local_then_reach_the_cloud_first(mosquitto: Any, tmp_path: Path, hook: Hook) -> None:
    edge_id = "edge-svc-2"
    password = secrets.token_urlsafe(16)  # the broker learns it only later: the uplink is refused until then
    cloud_key = keys.generate()
    edge = EdgeProcess(tmp_path / "bundle", edge_id, host=mosquitto.host, port=mosquitto.port, password=password,
                       cloud=cloud_key,
                       extra=f'[alerting]\nwebhook_url = "{hook.url}"\nwebhook_secret = "{SECRET}"\n'
                             "evaluate_interval_s = 0.5")
    cloud = start_cloud(mosquitto, edge, cloud_key)
    try:
        edge.start(*WARD)
        wait_until(lambda: any(d["alert"]["rule"] == "spo2_low" for d in list(hook.documents)
                               if d["type"] == "telemed.alert"), 60, "the local webhook to hear of the SpO2 alarm")
        assert hook.invalid == 0
        assert all(d["uplink"] == "down" and d["edge"]["id"] == edge_id for d in hook.documents)

        status, body = edge.get("/api/status")
        page = json.loads(body)
        local = [a for a in page["alerts"] if a["alert"]["rule"] == "spo2_low"]
        assert local and all(a["notified_locally"] for a in local)
        status, body = edge.get("/healthz")
        assert status == 503 and json.loads(body)["uplink"] != "connected"
        assert json.loads(body)["outbox"]["alerts"] >= len(hook.documents)
        assert cloud.stored(Alert) == []

        told = {(d["alert"]["alert_id"], d["alert"]["state"], d["alert"]["priority"]) for d in list(hook.documents)}
        mosquitto.add_user(edge_id, password)  # the uplink comes back
        assert cloud.wait_for(lambda v: len([e for e in v.stored.values() if isinstance(e.payload, Alert)])
                              >= len(told), 60), "the queued alerts did not reach the cloud"
        with cloud.lock:
            order = [e.payload for e in cloud.arrivals if not isinstance(e.payload, EdgeStatus)]
        leading = []
        for payload in order:
            if not isinstance(payload, Alert):
                break
            leading.append((str(payload.alert_id), payload.state, payload.priority))
        assert told <= set(leading), "alerts queued while offline must arrive before any other message"
        wait_until(lambda: edge.get("/healthz")[0] == 200, 20, "/healthz to recover")
        assert edge.terminate() == 0
    finally:
        edge.kill()
        cloud.stop()


class FakeStatus:
    """A StatusSource with fixed answers, for the endpoint's routing and escaping."""

    def __init__(self, healthy: bool, alerts: tuple[OpenAlert, ...] = ()) -> None:
        self._health = Health(healthy, "connected" if healthy else "disconnected", None if healthy else 90.0,
                              {"alerts": 2}, 5, 6, () if healthy else ("uplink down for 90 s",))
        self._alerts = alerts

    def health(self) -> Health:
        return self._health

    def snapshot(self) -> StatusSnapshot:
        return StatusSnapshot(edge_id="e1", site="s1", name="县医院", now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
                              uptime_s=3.0, health=self._health, alerts=self._alerts)

    def metrics_text(self) -> str:
        return "telemed_devices_connected 5\n"


def test_the_http_endpoint_routes_answers_and_escapes() -> None:
    alert = Alert(alert_id=uuid.uuid4(), patient_id="pt-1", rule="spo2_low", priority="high", category="clinical",
                  state="active", raised_at=dt.datetime(2026, 3, 2, tzinfo=dt.UTC), message="<script>x</script>")
    server = HttpServer(FakeStatus(False, (OpenAlert(alert, True),)), host="127.0.0.1", port=0)

    status, headers, body = server.respond(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 503 and json.loads(body)["problems"] == ["uplink down for 90 s"]
    status, headers, page = server.respond(b"GET / HTTP/1.1\r\nAccept-Language: en-GB,en;q=0.8\r\n\r\n")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"Edge node status" in page and b"<script>" not in page and b"&lt;script&gt;" in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, _, head_body = server.respond(b"HEAD / HTTP/1.1\r\n\r\n")
    assert status == 200 and head_body == b""
    assert server.respond(b"GET /metrics HTTP/1.1\r\n\r\n")[2] == b"telemed_devices_connected 5\n"
    status, headers, _ = server.respond(b"DELETE / HTTP/1.1\r\n\r\n")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert server.respond(b"nonsense\r\n\r\n")[0] == 400
    assert server.respond(b"GET /etc/passwd HTTP/1.1\r\n\r\n")[0] == 404
    healthy = HttpServer(FakeStatus(True), host="127.0.0.1", port=0)
    assert healthy.respond(b"GET /healthz HTTP/1.1\r\n\r\n")[0] == 200
