"""The outbox and uplink against a real Mosquitto and an in-test cloud (tests/integration/test_uplink_cloud.py).

End to end, a message enqueued at the edge must reach the cloud's dedupe view exactly once and then leave
the outbox, whatever happens in between: the edge process killed with SIGKILL mid-stream, the broker down
for a while (TELEMED_LONG_OUTAGE=60 for a one-minute outage; 5 s by default), forged acks, the disk budget.

Run as a program (`python -m tests.integration.test_uplink ...`), this module is the edge process of the
kill -9 test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.metrics import Registry
from edge.outbox import EVICTION_RULE, EvictionReport, Lane, Outbox, OutboxPolicy
from edge.settings import EdgeIdentity, MqttSettings
from edge.uplink import CommandRegistry, LinkState, Uplink
from proto import keys
from proto.envelope import Payload, SignerKey
from proto.messages import AckEntry, Alert, Command, DeviceStatus, Event
from proto.vitals import VitalsBatchBuilder
from tests.integration.test_uplink_cloud import FakeCloud

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SITE = "county-it"
T0 = dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)
# The broker outage of the outage test; TELEMED_LONG_OUTAGE=60 runs the one-minute variant.
OUTAGE_S = float(os.environ.get("TELEMED_LONG_OUTAGE") or 5)
NAMESPACE = uuid.UUID("6f1c2a52-4a55-4d7e-9a3c-0c7f6f1f2b10")


def message_id(edge: str, i: int) -> uuid.UUID:
    """The known id of message `i` of a test stream (what the cloud must end up holding)."""
    return uuid.uuid5(NAMESPACE, f"{edge}/{i}")


def payload_for(i: int) -> Payload:
    """Message `i` of a realistic mix: an alert every 10th, a device event every 7th, otherwise vitals."""
    if i % 10 == 0:
        return Alert(alert_id=uuid.uuid4(), patient_id=f"pt-{i % 5}", rule="spo2_low", priority="high",
                     category="clinical", state="active", raised_at=T0, message="SpO2 88 %", kind="spo2", value=88.0)
    if i % 7 == 0:
        return Event(event_id=uuid.uuid4(), event_type="device_status", at=T0,
                     device_status=DeviceStatus(device_id=f"ox-{i % 3}", state="connected", battery_pct=50.0))
    builder = VitalsBatchBuilder()
    for n in range(20):
        builder.add(T0 + dt.timedelta(seconds=i, milliseconds=50 * n), f"pt-{n % 5}", "heart_rate", 60.0 + n,
                    device_id=f"hrm-{n % 5}")
    return builder.build()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class EdgeRig:
    """An outbox and an uplink for one edge, in this process."""

    def __init__(self, path: Path, edge: str, host: str, port: int, password: str, *, signer: Ed25519PrivateKey,
                 cloud_key: Ed25519PrivateKey, policy: OutboxPolicy | None = None,
                 on_eviction: Callable[[EvictionReport], None] | None = None, **mqtt: object) -> None:
        self.edge = edge
        self.metrics = Registry()
        self.commands = CommandRegistry()
        self.outbox = Outbox(path, edge_id=edge, signer=signer, policy=policy, on_eviction=on_eviction)
        tunables: dict[str, object] = {"heartbeat_s": 1.0, "backoff_initial_s": 0.2, "backoff_max_s": 2.0,
                                      "ack_timeout_s": 5.0} | mqtt
        settings = MqttSettings(host=host, port=port, username=edge, password=password,
                                **tunables)  # type: ignore[arg-type]
        self.uplink = Uplink(identity=EdgeIdentity(edge, SITE), mqtt_settings=settings, outbox=self.outbox,
                             signer=signer, cloud_key=cloud_key.public_key(), commands=self.commands,
                             metrics=self.metrics)

    def counter(self, name: str, **labels: str) -> float:
        return self.metrics.counter(name, "", tuple(labels)).value(**labels)

    def close(self) -> None:
        self.uplink.stop()
        self.outbox.close()


@pytest.fixture
def edge_key() -> Ed25519PrivateKey:
    return keys.generate()


@pytest.fixture
def cloud_key() -> Ed25519PrivateKey:
    return keys.generate()


def start_cloud(host: str, port: int, login: tuple[str, str], edges: dict[str, Ed25519PrivateKey],
                cloud_key: Ed25519PrivateKey, **options: object) -> FakeCloud:
    registry = {edge: SignerKey(key.public_key(), site=SITE) for edge, key in edges.items()}
    return FakeCloud(host, port, *login, cloud_key=cloud_key, edges=registry, **options).start()  # type: ignore[arg-type]


# --- kill -9 of the edge ----------------------------------------------------------------------------------


def run_edge_process(args: argparse.Namespace) -> None:
    """The edge of the kill -9 test: enqueue messages start..start+count-1, print each once durable, drain."""
    signer = keys.read_private(Path(args.key))
    outbox = Outbox(Path(args.outbox), edge_id=args.edge, signer=signer)
    settings = MqttSettings(host=args.host, port=args.port, username=args.edge, password=args.password,
                            heartbeat_s=1.0, backoff_initial_s=0.2, backoff_max_s=1.0, ack_timeout_s=5.0)
    uplink = Uplink(identity=EdgeIdentity(args.edge, SITE), mqtt_settings=settings, outbox=outbox, signer=signer,
                    cloud_key=keys.public_from_text(args.cloud_key))
    uplink.start()
    for i in range(args.start, args.start + args.count):
        mid = message_id(args.edge, i)
        if not outbox.contains(mid):  # durable but unreported before a crash: it is already queued
            outbox.enqueue(payload_for(i), message_id=mid).result(30)
        print(f"durable {i} {mid}", flush=True)
        time.sleep(args.interval)
    deadline = time.monotonic() + 120
    while outbox.depth() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("drained" if outbox.depth() == 0 else f"stuck {outbox.depth()}", flush=True)
    uplink.stop()
    outbox.close()


def spawn_edge(path: Path, edge: str, broker_port: int, password: str, key_file: Path, cloud_key: str, start: int,
               count: int, interval: float) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.integration.test_uplink", "--outbox", str(path), "--edge", edge,
               "--host", "127.0.0.1", "--port", str(broker_port), "--password", password, "--key", str(key_file),
               "--cloud-key", cloud_key, "--start", str(start), "--count", str(count), "--interval", str(interval)]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env=os.environ | {"PYTHONPATH": str(ROOT)})


def read_lines(stream: IO[str], until: Callable[[list[str]], bool], timeout: float) -> list[str]:
    """Lines from a child's stdout until `until(lines)` holds (or the stream ends)."""
    lines: list[str] = []
    done = threading.Event()

    def pump() -> None:
        for line in stream:
            lines.append(line)
            if until(lines):
                break
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    done.wait(timeout)
    return lines


def test_kill_9_of_the_edge_mid_stream_loses_and_duplicates_nothing(mosquitto, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    edge_key: Ed25519PrivateKey,
                                                                    cloud_key: Ed25519PrivateKey) -> None:
    edge, total = "edge-kill9", 160
    login = mosquitto.add_edge(edge)
    key_file = tmp_path / "edge.key"
    keys.write_private(key_file, edge_key)
    outbox_path = tmp_path / "outbox.sqlite3"
    cloud = start_cloud(mosquitto.host, mosquitto.port, (mosquitto.cloud.username, mosquitto.cloud.password),
                        {edge: edge_key}, cloud_key)
    cloud_text = keys.public_to_text(cloud_key.public_key())
    try:
        first = spawn_edge(outbox_path, edge, mosquitto.port, login.password, key_file, cloud_text, 0, total, 0.02)
        assert first.stdout is not None
        reported = read_lines(first.stdout, lambda lines: len(lines) >= 50 and len(cloud.stored_ids()) >= 20, 60)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert len(reported) >= 50, f"the edge reported only {len(reported)} messages"
        # The broker publishes the edge's last will: a signed, retained 'offline' status.
        assert cloud.wait_for(lambda v: v.status.get(edge) is not None and v.status[edge].state == "offline", 15)

        last = max(int(line.split()[1]) for line in reported if line.startswith("durable"))
        second = spawn_edge(outbox_path, edge, mosquitto.port, login.password, key_file, cloud_text, last + 1,
                            total - last - 1, 0.0)
        assert second.stdout is not None
        tail = read_lines(second.stdout, lambda lines: lines[-1].startswith(("drained", "stuck")), 150)
        assert second.wait(30) == 0
        assert tail and tail[-1].strip() == "drained"
    finally:
        cloud.stop()

    expected = {message_id(edge, i) for i in range(total)}
    with cloud.lock:
        stored = dict(cloud.view.stored)
        deliveries = sum(cloud.view.deliveries.values())
    assert set(stored) == expected  # every message, and nothing else, exactly once after dedupe
    assert deliveries >= total
    # Sequence numbers were never reused across the crash: one message per (stream, sequence).
    pairs = [(env.header.payload_type, env.sequence) for env in stored.values()]
    assert len(set(pairs)) == len(pairs)
    with Outbox(outbox_path, edge_id=edge, signer=edge_key) as box:
        assert box.depth() == 0


def test_edge_process_module_runs(tmp_path: Path) -> None:
    """The child entry point parses its arguments (a failing import there would only show as a timeout)."""
    out = subprocess.run([sys.executable, "-m", "tests.integration.test_uplink", "--help"], cwd=ROOT,
                         capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0 and "--outbox" in out.stdout


# --- the broker goes away -----------------------------------------------------------------------------------


def test_a_broker_outage_delays_but_never_loses_or_duplicates(tmp_path: Path, edge_key: Ed25519PrivateKey,
                                                              cloud_key: Ed25519PrivateKey) -> None:
    from deploy.mosquitto import MosquittoServer
    from deploy.ports import free_loopback_port

    edge = "edge-outage"
    broker = MosquittoServer(tmp_path / "broker", port=free_loopback_port())
    broker.start()
    try:
        login = broker.add_edge(edge)
        cloud = start_cloud(broker.host, broker.port, (broker.cloud.username, broker.cloud.password), {edge: edge_key},
                            cloud_key, client_id="cloud-outage")
        rig = EdgeRig(tmp_path / "outbox.sqlite3", edge, broker.host, broker.port, login.password, signer=edge_key,
                      cloud_key=cloud_key)
        rig.uplink.start()
        enqueued: list[uuid.UUID] = []
        stop = threading.Event()

        def produce() -> None:
            i = 0
            while not stop.is_set():
                enqueued.append(rig.outbox.enqueue(payload_for(i)).result(30).message_id)
                i += 1
                time.sleep(0.02)

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            wait_until(lambda: len(cloud.stored_ids()) >= 20, 30, "first deliveries")
            broker.stop()
            time.sleep(OUTAGE_S)
            assert rig.uplink.state is not LinkState.CONNECTED
            assert rig.outbox.depth() > 0  # the edge kept queueing while cut off
            broker.start()
            wait_until(lambda: rig.uplink.state is LinkState.CONNECTED, 30, "the edge to reconnect")
            time.sleep(1.0)
        finally:
            stop.set()
            producer.join()
        wait_until(lambda: rig.outbox.depth() == 0 and cloud.stored_ids() >= set(enqueued), 60 + OUTAGE_S,
                   "the backlog to drain")
        assert cloud.stored_ids() == set(enqueued)
        assert rig.counter("telemed_uplink_connects_total", outcome="connected") >= 2
        rig.close()
        cloud.stop()
    finally:
        broker.stop()


# --- TLS -----------------------------------------------------------------------------------------------------


def write_tls_files(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return paths


def test_the_uplink_delivers_over_tls_and_refuses_an_untrusted_broker(tmp_path: Path, edge_key: Ed25519PrivateKey,
                                                                      cloud_key: Ed25519PrivateKey) -> None:
    from deploy.mosquitto import MosquittoServer
    from deploy.mosquitto_files import TlsListener

    ca, cert, key = write_tls_files(tmp_path / "tls", "broker")
    other_ca, _, _ = write_tls_files(tmp_path / "other", "impostor")
    broker = MosquittoServer(tmp_path / "broker", tls=TlsListener(port=0, cafile=ca, certfile=cert, keyfile=key))
    broker.start()
    try:
        assert broker.tls_port is not None
        login = broker.add_edge("edge-tls")
        cloud = start_cloud(broker.host, broker.port, (broker.cloud.username, broker.cloud.password),
                            {"edge-tls": edge_key}, cloud_key)
        trusting = EdgeRig(tmp_path / "a.sqlite3", "edge-tls", broker.host, broker.tls_port, login.password,
                           signer=edge_key, cloud_key=cloud_key, tls=True, cafile=str(ca))
        wary = EdgeRig(tmp_path / "b.sqlite3", "edge-tls", broker.host, broker.tls_port, login.password,
                       signer=edge_key, cloud_key=cloud_key, tls=True, cafile=str(other_ca), client_id="edge-tls-b")
        try:
            sent = trusting.outbox.enqueue(payload_for(1)).result(10).message_id
            wary.outbox.enqueue(payload_for(2)).result(10)
            trusting.uplink.start()
            wary.uplink.start()
            wait_until(lambda: trusting.outbox.depth() == 0, 20, "delivery over TLS")
            assert sent in cloud.stored_ids()
            wait_until(lambda: wary.counter("telemed_uplink_connects_total", outcome="failed") >= 2, 20,
                       "the untrusted broker to be refused twice")
            assert wary.uplink.state is not LinkState.CONNECTED and wary.outbox.depth() == 1
        finally:
            trusting.close()
            wary.close()
            cloud.stop()
    finally:
        broker.stop()


# --- acks and commands on the real broker ----------------------------------------------------------------


@pytest.fixture
def quiet_cloud_rig(mosquitto, tmp_path: Path, edge_key: Ed25519PrivateKey,  # type: ignore[no-untyped-def]
                    cloud_key: Ed25519PrivateKey) -> Iterator[tuple[FakeCloud, EdgeRig]]:
    """An edge, and a cloud that stores but does not ack unless told to."""
    edge = f"edge-{uuid.uuid4().hex[:8]}"
    login = mosquitto.add_edge(edge)
    cloud = start_cloud(mosquitto.host, mosquitto.port, (mosquitto.cloud.username, mosquitto.cloud.password),
                        {edge: edge_key}, cloud_key, ack=False)
    rig = EdgeRig(tmp_path / "outbox.sqlite3", edge, mosquitto.host, mosquitto.port, login.password,
                  signer=edge_key, cloud_key=cloud_key)
    rig.uplink.start()
    yield cloud, rig
    rig.close()
    cloud.stop()


def test_a_forged_ack_is_ignored_and_the_genuine_one_deletes(quiet_cloud_rig: tuple[FakeCloud, EdgeRig]) -> None:
    cloud, rig = quiet_cloud_rig
    done = rig.outbox.enqueue(payload_for(3)).result(10)
    assert cloud.wait_for(lambda v: done.message_id in v.stored, 15)
    entry = AckEntry(done.message_id, done.stream, done.sequence, "committed")
    cloud.publish_ack(SITE, rig.edge, [entry], signer=keys.generate())
    wait_until(lambda: rig.counter("telemed_uplink_downlink_rejected_total", reason="bad_signature") == 1, 15,
               "the forged ack to be refused")
    rig.outbox.flush(5)
    assert rig.outbox.contains(done.message_id)
    cloud.publish_ack(SITE, rig.edge, [entry])
    wait_until(lambda: rig.outbox.depth() == 0, 15, "the genuine ack")


def test_a_rejected_message_is_dead_lettered_and_not_resent(mosquitto, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                            edge_key: Ed25519PrivateKey,
                                                            cloud_key: Ed25519PrivateKey) -> None:
    edge = "edge-reject"
    login = mosquitto.add_edge(edge)
    cloud = start_cloud(mosquitto.host, mosquitto.port, (mosquitto.cloud.username, mosquitto.cloud.password),
                        {edge: edge_key}, cloud_key)
    rig = EdgeRig(tmp_path / "outbox.sqlite3", edge, mosquitto.host, mosquitto.port, login.password,
                  signer=edge_key, cloud_key=cloud_key, ack_timeout_s=1.0)
    try:
        bad = uuid.uuid4()
        cloud.reject_ids[bad] = "malformed: device_status.rssi_dbm"
        rig.outbox.enqueue(payload_for(7), message_id=bad).result(10)
        good = rig.outbox.enqueue(payload_for(8)).result(10).message_id
        rig.uplink.start()
        wait_until(lambda: rig.outbox.depth() == 0, 20, "both acks")
        assert [d.reason for d in rig.outbox.dead_letters()] == ["malformed: device_status.rssi_dbm"]
        time.sleep(2.0)  # two ack timeouts: nothing may come back
        with cloud.lock:
            assert cloud.view.deliveries[bad] == 1
            assert set(cloud.view.stored) == {good}
    finally:
        rig.close()
        cloud.stop()


def test_signed_commands_run_and_forged_ones_do_not(quiet_cloud_rig: tuple[FakeCloud, EdgeRig],
                                                    cloud_key: Ed25519PrivateKey) -> None:
    from proto import envelope, topics

    cloud, rig = quiet_cloud_rig
    ran: list[Command] = []
    arrived = threading.Event()

    def assign(command: Command) -> None:
        ran.append(command)
        arrived.set()

    rig.commands.register("assign_device", assign)
    rig.uplink.wait_connected(15)
    topic = topics.build(SITE, rig.edge, "cmd")
    forged = Command(command_id=uuid.uuid4(), name="assign_device", args={"device": "ox-9"})
    genuine = Command(command_id=uuid.uuid4(), name="assign_device", args={"device": "ox-1", "patient": "pt-1"})
    for cmd, key in ((forged, keys.generate()), (genuine, cloud_key)):
        raw = envelope.seal(cmd, edge_id=rig.edge, sequence=1, signer=key)
        cloud.client.publish(topic, raw, qos=1).wait_for_publish(5)
    assert arrived.wait(15)
    time.sleep(0.2)
    assert ran == [genuine]


def test_the_heartbeat_reports_the_backlog(quiet_cloud_rig: tuple[FakeCloud, EdgeRig]) -> None:
    cloud, rig = quiet_cloud_rig
    for i in range(3):
        rig.outbox.enqueue(payload_for(i + 1)).result(10)  # vitals, never acked by this cloud
    assert cloud.wait_for(lambda v: v.status.get(rig.edge) is not None
                          and v.status[rig.edge].outbox["vitals"].depth == 3, 15)
    with cloud.lock:
        status = cloud.view.status[rig.edge]
    assert status.state == "online" and status.outbox["alerts"].depth == 0
    assert (status.outbox["vitals"].oldest_age_s or 0) > 0


# --- the disk budget ---------------------------------------------------------------------------------------


def test_eviction_is_reported_to_the_cloud(mosquitto, tmp_path: Path, edge_key: Ed25519PrivateKey,  # type: ignore[no-untyped-def]
                                           cloud_key: Ed25519PrivateKey) -> None:
    edge = "edge-budget"
    login = mosquitto.add_edge(edge)
    reports: list[EvictionReport] = []
    rig = EdgeRig(tmp_path / "outbox.sqlite3", edge, mosquitto.host, mosquitto.port, login.password,
                  signer=edge_key, cloud_key=cloud_key, policy=OutboxPolicy(max_bytes=20_000, low_watermark=0.6),
                  on_eviction=reports.append)
    cloud = start_cloud(mosquitto.host, mosquitto.port, (mosquitto.cloud.username, mosquitto.cloud.password),
                        {edge: edge_key}, cloud_key)
    try:
        # Offline: the queue outgrows its budget before the uplink ever connects.
        enqueued = [rig.outbox.enqueue(payload_for(i)).result(10).message_id for i in range(1, 80)]
        assert reports, "the budget never triggered"
        queued = set(rig.outbox.message_ids())
        evicted = [mid for mid in enqueued if mid not in queued]
        assert evicted and all(mid not in queued for mid in evicted)
        rig.uplink.start()
        wait_until(lambda: rig.outbox.depth() == 0, 30, "the queue to drain")
        with cloud.lock:
            stored = dict(cloud.view.stored)
    finally:
        rig.close()
        cloud.stop()
    assert not set(evicted) & set(stored)
    assert queued <= set(stored)
    notices = [env.payload.outbox_eviction for env in stored.values()
               if isinstance(env.payload, Event) and env.payload.event_type == "outbox_eviction"]
    reported = [e for r in reports for e in r.evicted]
    assert sorted((n.lane, n.messages, n.bytes) for n in notices if n is not None) == sorted(
        (e.lane.label, e.messages, e.bytes) for e in reported)
    assert sum(n.messages for n in notices if n is not None) == len(evicted)
    technical = [env.payload for env in stored.values()
                 if isinstance(env.payload, Alert) and env.payload.rule == EVICTION_RULE]
    assert [(a.category, a.patient_id) for a in technical] == [("technical", f"edge:{edge}")]
    assert all(lane is not Lane.ALERTS for lane in (e.lane for e in reported))


def main() -> None:
    parser = argparse.ArgumentParser(description="the edge process of the kill -9 uplink test")
    for name in ("--outbox", "--edge", "--host", "--password", "--key", "--cloud-key"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--start", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.02)
    run_edge_process(parser.parse_args())


if __name__ == "__main__":
    main()
