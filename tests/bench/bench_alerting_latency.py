"""Alerting latency: from a sample's timestamp to the page arriving at a webhook, under 50,000 samples/s.

A private PostgreSQL and Mosquitto are started here (deploy module) and the alerting service runs as in
production (`python -m cloud.cli alerting`: its own MQTT subscription, an engine per edge, incidents in
PostgreSQL, the dispatcher POSTing signed webhooks). Load edges publish a stable ward at 1 Hz per patient
(HR, SpO2, RR) every 100 ms, 50,000 samples/s in all, with live timestamps. A probe edge publishes probe
patients whose heart rate jumps to 140 /min for 15 s once a minute (staggered): each jump raises hr_high
(> 130 /min for 10 s) at the sample that completes the delay, a new incident that pages the primary. The
latency of a page is the webhook's receive time minus that sample's timestamp (the alert's raised_at), so
it includes the edge's 100 ms batching, the broker, verification, evaluation, the incident transaction
and the HTTP POST. Probes start after a warm-up in which the ~16,700 load patients are first seen (steady
state is measured, not the cold start). Target (issue): p99 < 1 s.

Second figure: clinical pages per patient-day in the simulator's stable scenario (devices.sim, 1 Hz, the
ward's default artefacts), evaluated by the cloud's engine and incident rules. Target: 0.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud.alerting.escalation import EscalationPolicy
from cloud.alerting.evaluator import EdgeEngines
from cloud.alerting.incidents import open_incident
from cloud.edges import store
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresServer
from devices.sim import Cohort, PatientSpec
from devices.sim.devices import WARD_DEVICES
from proto import keys, topics
from proto.envelope import seal
from proto.vitals import VitalsBatch
from proto.vocabulary import kind
from tests.bench.harness import ROOT, BenchContext, percentile
from tests.integration.test_alerting_support import CST, SITE, migrate_and_seed, ward_batches, webhook_sink
from tests.unit.cloud.ingest_messages import TestEdge

TICK_S = 0.1
LOAD_EDGES = 3
KINDS = np.array([kind("heart_rate").wire_id, kind("spo2").wire_id, kind("respiratory_rate").wire_id], np.uint8)
PROBE_CYCLE_S, PROBE_HIGH_S = 60, 15
# The load patients are all new at the start (an engine takes ~0.2 ms to learn one): probes start after this.
WARMUP_S = 20
TARGET_P99_S = 1.0


class EdgePublisher:
    """One edge's MQTT client: seals and publishes its batches at QoS 1."""

    def __init__(self, edge: TestEdge, broker: MosquittoServer) -> None:
        login = broker.add_edge(edge.edge_id)
        self.edge = edge
        self.sequence = 0
        self.topic = topics.build(edge.site, edge.edge_id, "vitals")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{edge.edge_id}-pub", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(100)
        self.client.username_pw_set(login.username, login.password)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def publish(self, batch: VitalsBatch) -> None:
        self.sequence += 1
        self.client.publish(self.topic, seal(batch, edge_id=self.edge.edge_id, sequence=self.sequence,
                                             signer=self.edge.key), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stable_window(names: list[str], phases: np.ndarray, t0: float, t1: float, rng: np.random.Generator
                  ) -> VitalsBatch | None:
    """The samples of stable patients due in (t0, t1]: each patient sends HR, SpO2 and RR once a second."""
    seconds = np.arange(np.floor(t0), np.ceil(t1) + 1)
    due = (phases[None, :] + seconds[:, None]).ravel()
    who = np.tile(np.arange(len(names)), len(seconds))
    keep = (due > t0) & (due <= t1)
    due, who = due[keep], who[keep]
    if due.size == 0:
        return None
    n = due.size
    time_us = np.repeat((due * 1e6).astype(np.int64), 3)
    patients, index = np.unique(who, return_inverse=True)
    values = np.column_stack([np.round(75 + rng.normal(0, 3, n)), np.round(np.clip(97 + rng.normal(0, 0.8, n), 0, 100)),
                              np.round(16 + rng.normal(0, 1.2, n))]).ravel()
    return VitalsBatch(patients=tuple(names[i] for i in patients.tolist()), devices=("",), time_us=time_us,
                       patient_idx=np.repeat(index, 3).astype(np.uint16), device_idx=np.zeros(3 * n, np.uint16),
                       kind_id=np.tile(KINDS, n), value=values.astype(np.float64), quality=np.zeros(3 * n, np.uint16))


def probe_window(count: int, epoch: float, t0: float, t1: float) -> VitalsBatch | None:
    """Probe patients' samples due in (t0, t1]: from `epoch` on, HR 140 for PROBE_HIGH_S of every
    PROBE_CYCLE_S (staggered), else 75."""
    seconds = np.arange(np.floor(t0), np.ceil(t1) + 1)
    seconds = seconds[(seconds > t0) & (seconds <= t1)]
    if seconds.size == 0:
        return None
    who = np.tile(np.arange(count), seconds.size)
    at = np.repeat(seconds, count)
    offsets = who * PROBE_CYCLE_S / count
    high = (at >= epoch) & (((at - epoch - offsets) % PROBE_CYCLE_S) < PROBE_HIGH_S)
    n = at.size
    values = np.column_stack([np.where(high, 140.0, 75.0), np.full(n, 97.0), np.full(n, 16.0)]).ravel()
    return VitalsBatch(patients=tuple(f"probe-{i:03d}" for i in range(count)), devices=("",),
                       time_us=np.repeat((at * 1e6).astype(np.int64), 3),
                       patient_idx=np.repeat(who, 3).astype(np.uint16),
                       device_idx=np.zeros(3 * n, np.uint16), kind_id=np.tile(KINDS, n), value=values,
                       quality=np.zeros(3 * n, np.uint16))


def publish_load(load: list[EdgePublisher], probe: EdgePublisher, *, rate: int, probes: int, seconds: float,
                 warmup_s: float, stop: threading.Event, counts: dict[str, float]) -> None:
    """Publish every TICK_S until `seconds` have passed: the stable load and the probes, with live timestamps."""
    per_edge = max(1, rate // 3 // len(load))
    rng = np.random.default_rng(7)
    names = [[f"{p.edge.edge_id}-pt{i:05d}" for i in range(per_edge)] for p in load]
    phases = rng.random(per_edge)
    epoch = float(np.ceil(time.time())) + warmup_s
    previous = time.time()
    started, samples = previous, 0
    while not stop.is_set() and previous - started < seconds:
        now = time.time()
        for publisher, patient_names in zip(load, names, strict=True):
            batch = stable_window(patient_names, phases, previous, now, rng)
            if batch is not None:
                publisher.publish(batch)
                samples += len(batch)
        batch = probe_window(probes, epoch, previous, now)
        if batch is not None:
            probe.publish(batch)
            samples += len(batch)
        previous = now
        time.sleep(max(0.0, TICK_S - (time.time() - now)))
    counts["samples"] = samples
    counts["seconds"] = time.time() - started


def _wait_for_log(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"alerting did not start:\n{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def latency(ctx: BenchContext) -> None:
    rate = ctx.scale(50_000, 3_000)
    probes = ctx.scale(100, 10)
    seconds = ctx.scale(150, 25)
    warmup = ctx.scale(WARMUP_S, 3)
    with tempfile.TemporaryDirectory(prefix="tm-bench-alerting-") as tmp, webhook_sink() as sink:
        root = Path(tmp)
        with PostgresServer(root / "pg") as pg, MosquittoServer(root / "mq") as broker:
            url = pg.endpoint.url
            migrate_and_seed(url, sink.url)
            edges = [TestEdge(f"load-{i}", SITE) for i in range(LOAD_EDGES)] + [TestEdge("probe", SITE)]
            with psycopg.connect(url, autocommit=True) as conn:
                for edge in edges:
                    store.insert_edge(conn, edge_id=edge.edge_id, site_id=SITE, name=edge.edge_id,
                                      public_key=keys.public_to_text(edge.key.public_key()))
            env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")} | {
                "TELEMED_DATABASE__URL": url, "TELEMED_MQTT__HOST": broker.host,
                "TELEMED_MQTT__PORT": str(broker.port), "TELEMED_MQTT__USERNAME": broker.cloud.username,
                "TELEMED_MQTT__PASSWORD": broker.cloud.password, "TELEMED_KEYS__DIR": str(root / "keys"),
                "TELEMED_ALERTING__CLIENT_ID": "bench-alerting",
            }
            log = root / "alerting.log"
            with log.open("wb") as out:
                proc = subprocess.Popen([sys.executable, "-m", "cloud.cli", "--log-level", "INFO", "alerting"],
                                        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            publishers: list[EdgePublisher] = []
            try:
                _wait_for_log(log, "alerting.started", proc, 60)
                publishers = [EdgePublisher(edge, broker) for edge in edges]
                counts: dict[str, float] = {}
                stop = threading.Event()
                publish_load(publishers[:-1], publishers[-1], rate=rate, probes=probes, seconds=seconds + warmup,
                             warmup_s=warmup, stop=stop, counts=counts)
                time.sleep(3.0)  # the last pages in flight
            finally:
                for publisher in publishers:
                    publisher.close()
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                service_log = log.read_text(errors="replace")
    slow = service_log.count("alerting.slow_")
    firsts = [r for r in sink.received if r.valid and r.document["incident"]["rule"] == "hr_high"
              and r.document["escalation"]["step"] == 0]
    delays = [r.at - dt.datetime.fromisoformat(r.document["incident"]["raised_at"]).timestamp() for r in firsts]
    if not delays:
        raise RuntimeError(f"no page arrived; service log:\n{service_log[-3000:]}")
    published = counts["samples"] / counts["seconds"]
    notes = f"{len(delays)} pages, {published:,.0f} samples/s published, {slow} slow batches/jobs logged"
    ctx.record("sample -> webhook page, p50", percentile(delays, 50), "s", higher_is_better=False, notes=notes)
    ctx.record("sample -> webhook page, p99", percentile(delays, 99), "s", higher_is_better=False,
               target=TARGET_P99_S, notes=notes)
    ctx.record("background load published", published, "samples/s", target=rate)


def stable_pages(ctx: BenchContext) -> None:
    patients = ctx.scale(10, 2)
    seconds = ctx.scale(24 * 3600, 600)
    cohort = Cohort([PatientSpec(f"pt-{i:02d}", "stable", WARD_DEVICES) for i in range(patients)], seed=17,
                    start=dt.datetime(2026, 3, 2, 0, 0, tzinfo=CST))
    engines, policy = EdgeEngines(), EscalationPolicy()
    pages = technical = 0
    now = dt.datetime.now(dt.UTC)
    for batch in ward_batches(cohort, seconds, batch_s=60):
        for change in engines.observe("edge", SITE, batch):
            if change.change != "raised":
                continue
            incident, _ = open_incident(change.alert, source="cloud", site_id=SITE, now=now, policy=policy)
            pages += incident.escalation is not None
            technical += change.alert.category == "technical"
    patient_days = patients * seconds / 86_400
    ctx.record("clinical pages per patient-day (stable)", pages / patient_days, "pages", higher_is_better=False,
               target=0, notes=f"{patient_days:.2f} patient-days, {technical} technical alarms (not paged)")


def run(ctx: BenchContext) -> None:
    latency(ctx)
    stable_pages(ctx)
