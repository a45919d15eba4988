"""End-to-end ingest throughput: samples/s from MQTT publish to committed rows, next to a raw binary COPY.

A private PostgreSQL and Mosquitto are started here (deploy module), the ingest service runs as it does in
production (`python -m cloud.cli ingest --workers 2`: migrations, worker processes, persistent sessions).
A paho client publishes pre-sealed 1000-sample ward batches at QoS 1 and, like an edge outbox, keeps at
most WINDOW messages without a commit ack; the clock runs from the first publish to the last commit ack
(sent only after the transaction commits). Every transaction verifies signatures, deduplicates, writes the
vitals with binary COPY and maintains the 1-minute, 15-minute and 1-hour rollups and the latest values.

Baseline in the same run: the same rows as pre-built binary COPY streams, ordered as the writer orders them
(by patient, kind, time within a transaction), written by one connection in transactions of BASELINE_CHUNK
batches into a second database with the same schema: the database's own ingest ceiling with none of the
pipeline's work. The same COPY in arrival order is reported next to it (what the ordering gains).
Targets (issue 5): >= 100,000 samples/s and >= 50% of the baseline.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud.db.migrate import migrate
from cloud.edges import cloud_key, store
from cloud.ingest.copy_binary import COPY_VITALS_SQL, copy_stream, vitals_rows
from cloud.ingest.plan import vitals_copy
from cloud.ingest.samples import SampleTable
from deploy import pgadmin
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresServer
from proto import keys, topics
from proto.envelope import CLOUD_SIGNER, SignerKey, open_envelope, seal
from proto.messages import CommitAck
from proto.vitals import VitalsBatch, VitalsBatchBuilder
from tests.bench.harness import ROOT, BenchContext, percentile

BATCH = 1000
WINDOW = 64
WORKERS = 2
BASELINE_CHUNK = 32
TARGET_SAMPLES_S = 100_000
TARGET_RATIO = 0.5
SITE, EDGE = "bench-site", "bench-edge"


def ward_batches(count: int, start: dt.datetime, seed: int = 11) -> list[VitalsBatch]:
    """A busy ward: 50 patients, HR/SpO2/RR/RR-interval every 20 ms in turn, 20 s per batch."""
    rng = np.random.default_rng(seed)
    kinds = ("heart_rate", "spo2", "respiratory_rate", "rr_interval")
    base = {"heart_rate": 78.0, "spo2": 97.0, "respiratory_rate": 16.0, "rr_interval": 0.77}
    noise = {"heart_rate": 3.0, "spo2": 1.0, "respiratory_rate": 1.5, "rr_interval": 0.04}
    start_us = int(start.timestamp()) * 1_000_000
    batches = []
    for b in range(count):
        builder = VitalsBatchBuilder()
        for i in range(BATCH):
            n = b * BATCH + i
            kind = kinds[n % 4]
            builder.add(start_us + n * 20_000, f"pt-{n % 50:04d}", kind,
                        round(base[kind] + rng.normal(0, noise[kind]), 3), device_id=f"dev-{n % 120:04d}")
        batches.append(builder.build())
    return batches


class AckingPublisher:
    """Publishes sealed messages with at most WINDOW awaiting their commit ack; records publish-to-ack latency."""

    def __init__(self, host: str, port: int, login: Any, cloud_public: str) -> None:
        self._cloud = SignerKey(keys.public_from_text(cloud_public))
        self._acks: queue.Queue[tuple[uuid.UUID, float]] = queue.Queue()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(WINDOW)
        self.client.username_pw_set(login.username, login.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._ready.wait(15):
            raise RuntimeError("bench publisher could not connect")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(topics.downlink_subscription(SITE, EDGE), qos=1)
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        env = open_envelope(bytes(message.payload), topic=message.topic,
                            keys=lambda s: self._cloud if s == CLOUD_SIGNER else None)
        assert isinstance(env.payload, CommitAck)
        now = time.perf_counter()
        for entry in env.payload.acks:
            if entry.outcome != "committed":
                raise RuntimeError(f"unexpected ack {entry}")
            self._acks.put((entry.message_id, now))

    def run(self, sealed: list[tuple[uuid.UUID, bytes]], timeout: float) -> tuple[float, list[float]]:
        """Publish everything; (seconds from first publish to last ack, latencies in ms)."""
        topic = topics.build(SITE, EDGE, "vitals")
        sent: dict[uuid.UUID, float] = {}
        latencies: list[float] = []
        pending = list(sealed)
        started = time.perf_counter()
        deadline = started + timeout
        while pending or sent:
            while pending and len(sent) < WINDOW:
                message_id, raw = pending.pop(0)
                sent[message_id] = time.perf_counter()
                self.client.publish(topic, raw, qos=1)
            try:
                message_id, at = self._acks.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                raise RuntimeError(f"{len(sent) + len(pending)} messages never acked") from None
            latencies.append((at - sent.pop(message_id)) * 1000)
        return time.perf_counter() - started, latencies

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def raw_copy_rate(url: str, batches: list[VitalsBatch], *, series_order: bool) -> float:
    """Samples/s of pre-built binary COPY streams, BASELINE_CHUNK batches per transaction, one connection, into
    an emptied vitals: rows in arrival order, or in the writer's order (cloud.ingest.plan.vitals_copy of the
    chunk in series order, the rows exactly as the writer COPYs them)."""
    streams = []
    for i in range(0, len(batches), BASELINE_CHUNK):
        chunk = batches[i : i + BASELINE_CHUNK]
        if series_order:
            table = SampleTable.from_batches([(b, b.quality.astype(np.int32), EDGE) for b in chunk])
            streams.append(vitals_copy(table.in_series_order()) or b"")
            continue
        streams.append(copy_stream(
            vitals_rows(time_us=b.time_us, kind_id=b.kind_id, value=b.value, quality=b.quality.astype(np.int32),
                        patient_idx=b.patient_idx, device_idx=b.device_idx, patients=b.patients,
                        devices=b.devices, edges=[EDGE])
            for b in chunk
        ))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE vitals")
        conn.execute("VACUUM ANALYZE vitals")
        started = time.perf_counter()
        for stream in streams:
            with conn.transaction(), conn.cursor() as cur, cur.copy(COPY_VITALS_SQL) as copy:
                copy.write(stream)
        seconds = time.perf_counter() - started
        (rows,) = conn.execute("SELECT count(*) FROM vitals").fetchone() or (0,)
    assert rows == len(batches) * BATCH
    return len(batches) * BATCH / seconds


def _wait_for(path: Path, text: str, count: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while path.read_text(errors="replace").count(text) < count:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ingest did not start:\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def run(ctx: BenchContext) -> None:
    count = ctx.scale(600, 5)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=4)
    batches = ward_batches(count, start)
    with tempfile.TemporaryDirectory(prefix="tm-bench-ingest-") as tmp:
        root = Path(tmp)
        with PostgresServer(root / "pg") as pg, MosquittoServer(root / "mq") as broker:
            endpoint = pg.endpoint
            admin = endpoint.with_database("postgres").admin_url
            pgadmin.ensure_database(admin, "baseline", owner=endpoint.user)
            baseline_url = endpoint.with_database("baseline").url
            for url in (endpoint.url, baseline_url):
                with psycopg.connect(url, autocommit=True) as conn:
                    migrate(conn, ahead_days=2, retention_days=30)
            edge_key = keys.generate()
            with psycopg.connect(endpoint.url, autocommit=True) as conn:
                store.ensure_site(conn, SITE)
                store.insert_edge(conn, edge_id=EDGE, site_id=SITE, name="bench",
                                  public_key=keys.public_to_text(edge_key.public_key()))
            keys_dir = root / "keys"
            cloud_public = keys.public_to_text(cloud_key.load_or_create(keys_dir / "cloud_ed25519.key").public_key())
            sealed = []
            for i, batch in enumerate(batches):
                message_id = uuid.uuid4()
                sealed.append((message_id, seal(batch, edge_id=EDGE, sequence=i + 1, signer=edge_key,
                                                message_id=message_id)))

            env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")} | {
                "TELEMED_DATABASE__URL": endpoint.url, "TELEMED_MQTT__HOST": broker.host,
                "TELEMED_MQTT__PORT": str(broker.port), "TELEMED_MQTT__USERNAME": broker.cloud.username,
                "TELEMED_MQTT__PASSWORD": broker.cloud.password, "TELEMED_KEYS__DIR": str(keys_dir),
                "TELEMED_INGEST__INSTANCE": "bench",
            }
            log = root / "ingest.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "cloud.cli", "--log-level", "WARNING", "ingest", "--workers",
                     str(WORKERS)], cwd=ROOT, env=env, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
            publisher = None
            try:
                # Workers log nothing at WARNING when healthy: wait for both sessions on the broker instead.
                _wait_for(broker.log_path, "telemed-ingest-bench-", WORKERS, proc, timeout=60)
                publisher = AckingPublisher(broker.host, broker.port, broker.add_edge(EDGE), cloud_public)
                seconds, latencies = publisher.run(sealed, timeout=120 + count)
            finally:
                if publisher is not None:
                    publisher.close()
                proc.terminate()
                proc.wait(60)
            with psycopg.connect(endpoint.url, autocommit=True) as conn:
                (rows,) = conn.execute("SELECT count(*) FROM vitals").fetchone() or (0,)
            if rows != count * BATCH:
                raise RuntimeError(f"expected {count * BATCH} rows, found {rows}")
            baseline = raw_copy_rate(baseline_url, batches, series_order=True)
            arrival = raw_copy_rate(baseline_url, batches, series_order=False)

    rate = count * BATCH / seconds
    ctx.record("end-to-end ingest (publish -> commit ack)", rate, "samples/s", baseline=baseline,
               baseline_name="raw binary COPY", target=TARGET_SAMPLES_S,
               notes="baseline: the writer's rows in its order (by patient, kind, time)")
    ctx.record("raw binary COPY, rows in arrival order", arrival, "samples/s", baseline=baseline,
               baseline_name="in series order", notes="context: what ordering the COPY by series gains")
    ctx.record("end-to-end share of raw COPY", rate / baseline, "ratio", target=TARGET_RATIO)
    ctx.record("publish -> commit ack latency p50", percentile(latencies, 50), "ms", higher_is_better=False)
    ctx.record("publish -> commit ack latency p95", percentile(latencies, 95), "ms", higher_is_better=False)
