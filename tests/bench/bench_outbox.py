"""Edge outbox throughput: durable enqueue, local drain, drain through Mosquitto, and a 1-hour backlog.

- enqueue: messages/s made durable (synchronous=FULL commits) by 4 producer threads sharing group commits,
  next to the same-run baseline of one fsync'd transaction per message (what a naive queue does).
- local drain: the uplink's fetch (take_next, window 64) + CommitAck apply cycle, no network.
- broker drain: the real Uplink through a private Mosquitto to an acking cloud in its own process
  (tests/integration/test_uplink_cloud.py: verifies every signature, decodes every batch, signs acks).
- backlog: an hour of 200 pulse oximeters (heart rate + SpO2 at 1 Hz, batched per second: 3600 batches of
  400 samples) queued while offline, then drained through the broker; reported as x real time (target >= 20).
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.outbox import Outbox, OutboxPolicy
from edge.settings import EdgeIdentity, MqttSettings
from edge.uplink import Uplink
from edge.uplink.schedule import take_next
from edge.uplink.window import InflightWindow
from proto import envelope, keys
from proto.envelope import Payload
from proto.messages import AckEntry, Alert
from proto.vitals import VitalsBatch, to_micros
from proto.vocabulary import kind
from tests.bench.harness import BenchContext, percentile

ROOT = Path(__file__).resolve().parents[2]
EDGE, SITE = "bench-edge", "bench-site"
T0 = dt.datetime(2026, 11, 1, 8, tzinfo=dt.UTC)
PRODUCERS = 4


def alert(i: int) -> Alert:
    return Alert(alert_id=uuid.uuid4(), patient_id=f"pt-{i % 200:04d}", rule="spo2_low", priority="high",
                 category="clinical", state="active", raised_at=T0, message="SpO2 88 %", kind="spo2", value=88.0)


def ward_second(second: int, devices: int, rng: np.random.Generator) -> VitalsBatch:
    """One second of `devices` pulse oximeters: a heart rate and an SpO2 sample each (columnar, no row loop)."""
    n = devices * 2
    patient = np.repeat(np.arange(devices, dtype=np.uint16), 2)
    kinds = np.tile(np.array([kind("heart_rate").wire_id, kind("spo2").wire_id], dtype=np.uint8), devices)
    heart = kinds == kind("heart_rate").wire_id
    value = np.where(heart, np.round(rng.normal(78, 6, n)), np.round(rng.normal(97, 1, n)))
    start = to_micros(T0) + second * 1_000_000
    batch = VitalsBatch(
        patients=tuple(f"pt-{i:04d}" for i in range(devices)), devices=tuple(f"ox-{i:04d}" for i in range(devices)),
        time_us=(start + np.sort(rng.integers(0, 1_000_000, n))).astype(np.int64),
        patient_idx=patient, device_idx=patient.copy(), kind_id=kinds, value=value.astype(np.float64),
        quality=np.zeros(n, dtype=np.uint16),
    )
    batch.validate()
    return batch


def enqueue_rate(path: Path, payloads: Sequence[Payload], producers: int) -> float:
    """Messages/s made durable, `producers` threads each enqueueing its share and waiting for all of it."""
    signer = keys.generate()
    with Outbox(path, edge_id=EDGE, signer=signer, policy=OutboxPolicy(max_bytes=1 << 34)) as box:
        shares = [payloads[i::producers] for i in range(producers)]

        def produce(share: Sequence[Payload]) -> None:
            for future in [box.enqueue(p) for p in share]:
                future.result(120)

        threads = [threading.Thread(target=produce, args=(share,)) for share in shares]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return len(payloads) / (time.perf_counter() - start)


def alert_latencies(path: Path, count: int) -> list[float]:
    """Milliseconds from enqueue() to durable for single alerts while a vitals producer keeps the writer busy."""
    rng = np.random.default_rng(5)
    batches = [ward_second(s, 200, rng) for s in range(20)]
    with Outbox(path, edge_id=EDGE, signer=keys.generate(), policy=OutboxPolicy(max_bytes=1 << 34)) as box:
        stop = threading.Event()

        def background() -> None:
            i = 0
            while not stop.is_set():
                box.enqueue(batches[i % len(batches)]).result(60)
                i += 1

        worker = threading.Thread(target=background)
        worker.start()
        latencies = []
        try:
            for i in range(count):
                start = time.perf_counter()
                box.enqueue(alert(i)).result(60)
                latencies.append((time.perf_counter() - start) * 1000)
                time.sleep(0.002)
        finally:
            stop.set()
            worker.join()
    return latencies


def naive_rate(path: Path, payloads: Sequence[Payload]) -> float:
    """Baseline: the same sealed rows, one synchronous=FULL transaction each (no group commit)."""
    signer = keys.generate()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id BLOB UNIQUE, envelope BLOB)")
    start = time.perf_counter()
    for seq, payload in enumerate(payloads, 1):
        mid = uuid.uuid4()
        raw = envelope.seal(payload, edge_id=EDGE, sequence=seq, signer=signer, message_id=mid)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO q (message_id, envelope) VALUES (?, ?)", (mid.bytes, raw))
        conn.execute("COMMIT")
    rate = len(payloads) / (time.perf_counter() - start)
    conn.close()
    return rate


def local_drain_rate(path: Path, count: int) -> float:
    """take_next (window 64) + CommitAck apply, until empty: the edge's side of draining, without a network."""
    with Outbox(path, edge_id=EDGE, signer=keys.generate()) as box:
        for i in range(count):
            box.enqueue(alert(i))
        box.flush(120)
        window = InflightWindow(64, alerts_reserved=8, ack_timeout_s=60)
        lock = threading.Lock()
        start = time.perf_counter()
        while box.depth():
            sent = take_next(box, window, lock, time.monotonic())
            for m in sent:
                window.acked(m.message_id)
            box.acknowledge([AckEntry(m.message_id, m.stream, m.sequence, "committed") for m in sent]).result(60)
        return count / (time.perf_counter() - start)


@dataclass(frozen=True)
class Link:
    """Where the bench edge connects, and the cloud key its acks are signed with."""

    host: str
    port: int
    password: str
    cloud_public: str


@contextmanager
def broker_and_cloud(workdir: Path, edge_key_public: str) -> Iterator[Link]:
    """A private Mosquitto and an acking cloud in its own process."""
    from deploy.mosquitto import MosquittoServer

    cloud_key = keys.generate()
    with MosquittoServer(workdir / "broker") as broker:
        login = broker.add_edge(EDGE)
        cloud = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.test_uplink_cloud", "--port", str(broker.port),
             "--username", broker.cloud.username, "--password", broker.cloud.password,
             "--cloud-key", keys.private_to_text(cloud_key), "--edge", f"{EDGE}:{SITE}:{edge_key_public}"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=os.environ | {"PYTHONPATH": str(ROOT)},
        )
        try:
            assert cloud.stdout is not None and cloud.stdin is not None
            if cloud.stdout.readline().strip() != "ready":
                raise RuntimeError("the bench cloud did not start")
            yield Link(broker.host, broker.port, login.password, keys.public_to_text(cloud_key.public_key()))
        finally:
            if cloud.stdin is not None:
                cloud.stdin.close()
            cloud.wait(30)


def broker_drain_seconds(path: Path, signer_text: str, link: Link, window: int) -> tuple[float, int]:
    """Start an uplink on an already filled outbox; seconds until every message is acked by the cloud."""
    signer = keys.private_from_text(signer_text)
    with Outbox(path, edge_id=EDGE, signer=signer) as box:
        count = box.depth()
        settings = MqttSettings(host=link.host, port=link.port, username=EDGE, password=link.password,
                                inflight_window=window, alerts_reserved=8, heartbeat_s=30)
        uplink = Uplink(identity=EdgeIdentity(EDGE, SITE), mqtt_settings=settings, outbox=box, signer=signer,
                        cloud_key=keys.public_from_text(link.cloud_public))
        uplink.start()
        if not uplink.wait_connected(30):
            raise RuntimeError("the uplink did not connect")
        start = time.perf_counter()
        deadline = start + 600
        while box.depth() and time.perf_counter() < deadline:
            time.sleep(0.002)
        elapsed = time.perf_counter() - start
        left = box.depth()
        uplink.stop()
    if left:
        raise RuntimeError(f"{left} messages were not acked within 600 s")
    return elapsed, count


def fill(path: Path, signer_text: str, payloads: Iterator[Payload]) -> tuple[int, float]:
    """Queue payloads (one producer, waiting at the end); returns (count, seconds)."""
    with Outbox(path, edge_id=EDGE, signer=keys.private_from_text(signer_text),
                policy=OutboxPolicy(max_bytes=1 << 34)) as box:
        start = time.perf_counter()
        futures = [box.enqueue(p) for p in payloads]
        for f in futures:
            f.result(120)
        return len(futures), time.perf_counter() - start


def run(ctx: BenchContext) -> None:
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as tmp:
        work = Path(tmp)
        n_alerts = ctx.scale(4000, 100)
        small = [alert(i) for i in range(n_alerts)]
        group = enqueue_rate(work / "group.sqlite3", small, PRODUCERS)
        naive = naive_rate(work / "naive.sqlite3", small[: ctx.scale(1000, 50)])
        ctx.record(f"enqueue alerts, durable, {PRODUCERS} producers", group, "msgs/s", baseline=naive,
                   baseline_name="1 fsync'd txn per msg")
        single = enqueue_rate(work / "single.sqlite3", small[: ctx.scale(1000, 50)], 1)
        ctx.record("enqueue alerts, durable, 1 producer", single, "msgs/s", baseline=naive,
                   baseline_name="1 fsync'd txn per msg")
        latencies = alert_latencies(work / "latency.sqlite3", ctx.scale(300, 20))
        ctx.record("alert enqueue-to-durable p50 (vitals load)", percentile(latencies, 50), "ms",
                   higher_is_better=False)
        ctx.record("alert enqueue-to-durable p99 (vitals load)", percentile(latencies, 99), "ms",
                   higher_is_better=False)
        batches = [ward_second(s, 200, rng) for s in range(ctx.scale(600, 20))]
        ctx.record("enqueue 1 s ward batches (400 samples)", enqueue_rate(work / "vitals.sqlite3", batches, 2),
                   "msgs/s")
        ctx.record("local drain (fetch + ack, window 64)", local_drain_rate(work / "drain.sqlite3", n_alerts),
                   "msgs/s")

        edge_key = keys.generate()
        signer_text = keys.private_to_text(edge_key)
        with broker_and_cloud(work, keys.public_to_text(edge_key.public_key())) as link:
            path = work / "broker-drain.sqlite3"
            count, _ = fill(path, signer_text, iter(small))
            seconds, drained = broker_drain_seconds(path, signer_text, link, 64)
            ctx.record("drain through Mosquitto with acks (alerts)", drained / seconds, "msgs/s")

            devices, hour = ctx.scale(200, 20), ctx.scale(3600, 60)
            backlog = work / "backlog.sqlite3"
            count, build_s = fill(backlog, signer_text, (ward_second(s, devices, rng) for s in range(hour)))
            size_mb = backlog.stat().st_size / 1e6
            seconds, drained = broker_drain_seconds(backlog, signer_text, link, 64)
            assert drained == count == hour
            ctx.record(f"1 h backlog of {devices} devices: build", hour / build_s, "x real time",
                       notes=f"{count} batches, {size_mb:.1f} MB outbox")
            ctx.record(f"1 h backlog of {devices} devices: drain via broker", hour / seconds, "x real time",
                       target=20, notes=f"{seconds:.1f} s for {hour} batches of {devices * 2} samples")
