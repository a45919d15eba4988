"""Exactly once across a crash: `python -m cloud.cli ingest` is SIGKILLed mid-stream and restarted while a
test edge keeps publishing and re-publishes whatever was not commit-acked within a timeout. In the end every
message id is stored exactly once and the vitals row count is exact."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from cloud.settings import CloudSettings
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresEndpoint
from tests.integration.test_ingest_support import MqttEdge, cloud_public_key, migrated, query, register, settings_for
from tests.unit.cloud.ingest_messages import TestEdge, ward_batch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BATCHES = 40
SAMPLES = 500
WINDOW = 8  # messages in flight without a commit ack, like the edge outbox's window
RESEND_AFTER_S = 4.0


def _env(settings: CloudSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
    env.update({
        "TELEMED_DATABASE__URL": settings.database.url,
        "TELEMED_MQTT__HOST": settings.mqtt.host,
        "TELEMED_MQTT__PORT": str(settings.mqtt.port),
        "TELEMED_MQTT__USERNAME": settings.mqtt.username,
        "TELEMED_MQTT__PASSWORD": settings.mqtt.password,
        "TELEMED_KEYS__DIR": str(settings.keys.dir),
        "TELEMED_INGEST__INSTANCE": settings.ingest.instance,
        "TELEMED_INGEST__GROUP": settings.ingest.group,
        "TELEMED_INGEST__SESSION_EXPIRY_S": str(settings.ingest.session_expiry_s),
        "TELEMED_INGEST__RETRY_INITIAL_S": "0.05",
    })
    return env


@contextmanager
def ingest_process(settings: CloudSettings, log: Path, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cloud.cli", "ingest", "--workers", str(workers)], cwd=ROOT,
                                env=_env(settings), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class ResendingEdge:
    """Publishes BATCHES sealed vitals batches with at most WINDOW unacked, re-publishing stale ones."""

    def __init__(self, edge: TestEdge, client: MqttEdge) -> None:
        self.raw = {}
        # Recent samples: the restarted service runs storage upkeep, which drops rows older than the retention.
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
        for i in range(BATCHES):
            message_id = uuid.uuid4()
            self.raw[message_id] = edge.seal(ward_batch(SAMPLES, start=start, offset_s=i * SAMPLES, patients=10),
                                             message_id=message_id)
        self.client = client
        self.sent_at: dict[uuid.UUID, float] = {}
        self.done: set[uuid.UUID] = set()
        self.resends = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        queue = list(self.raw)
        while not self._stop.is_set() and len(self.done) < len(self.raw):
            while not self.client.acks.empty():
                entry = self.client.acks.get()
                assert entry.outcome in ("committed", "duplicate"), entry
                self.done.add(entry.message_id)
                self.sent_at.pop(entry.message_id, None)
            now = time.monotonic()
            for message_id, when in list(self.sent_at.items()):
                if now - when > RESEND_AFTER_S:
                    self.client.publish("vitals", self.raw[message_id])
                    self.sent_at[message_id] = now
                    self.resends += 1
            while queue and len(self.sent_at) < WINDOW:
                message_id = queue.pop(0)
                self.client.publish("vitals", self.raw[message_id])
                self.sent_at[message_id] = time.monotonic()
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)


def test_a_killed_ingest_loses_and_duplicates_nothing(
    database: PostgresEndpoint, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    migrated(database)
    settings = settings_for(database, mosquitto, tmp_path / "keys")
    edge = TestEdge(f"edge-crash-{uuid.uuid4().hex[:6]}", "site-c")
    register(database, edge)
    client = MqttEdge(edge, mosquitto, cloud_public_key(settings))
    publisher = ResendingEdge(edge, client)
    log = tmp_path / "ingest.log"
    try:
        with ingest_process(settings, log, workers=2) as first:
            publisher.thread.start()
            deadline = time.monotonic() + 60
            while len(publisher.done) < BATCHES // 4:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                assert first.poll() is None, log.read_text()[-3000:]
                time.sleep(0.01)
            workers = _children(first.pid)
            first.send_signal(signal.SIGKILL)  # mid-stream: the edge keeps publishing
            first.wait(10)
            assert len(workers) >= 2
            time.sleep(0.5)
            survivors = [pid for pid in workers if Path(f"/proc/{pid}").exists()
                         and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
            assert survivors == [], "workers outlived the supervisor"
        acked_before_restart = len(publisher.done)
        assert acked_before_restart < BATCHES

        with ingest_process(settings, log, workers=2) as second:
            deadline = time.monotonic() + 120
            while len(publisher.done) < BATCHES:
                assert time.monotonic() < deadline, (len(publisher.done), log.read_text()[-3000:])
                assert second.poll() is None, log.read_text()[-3000:]
                time.sleep(0.05)
            second.send_signal(signal.SIGTERM)
            assert second.wait(60) == 0
    finally:
        publisher.stop()
        client.close()

    ids = {str(m) for m in publisher.raw}
    stored = query(database, "SELECT message_id::text, count(*) OVER (PARTITION BY message_id) FROM ingested_messages")
    assert {row[0] for row in stored} == ids
    assert all(row[1] == 1 for row in stored)
    assert query(database, "SELECT count(*) FROM vitals") == [(BATCHES * SAMPLES,)]
    assert query(database, "SELECT count(*) FROM (SELECT DISTINCT time, patient_id, kind_id FROM vitals) d") == [
        (BATCHES * SAMPLES,)]
    assert query(database, "SELECT sum(count) FROM vitals_1m") == [(BATCHES * SAMPLES,)]
    assert "ingest.worker_started" in log.read_text()
