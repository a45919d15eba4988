"""Helpers for the ingest integration tests (no tests here): a migrated database, registered edges, a
cloud settings object for the fixture servers, a worker running in a thread, and an MQTT test edge that
publishes sealed messages and collects the cloud's verified commit acks."""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud.db import migrate
from cloud.edges import cloud_key, store
from cloud.ingest.worker import IngestWorker
from cloud.settings import CloudSettings, DatabaseSettings, IngestSettings, KeysSettings, MqttSettings
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresEndpoint
from proto import keys
from proto.envelope import CLOUD_SIGNER, SignerKey, open_envelope
from proto.messages import AckEntry, CommitAck
from proto.topics import downlink_subscription
from tests.unit.cloud.ingest_messages import TestEdge

TIMEOUT = 20.0


def migrated(database: PostgresEndpoint) -> PostgresEndpoint:
    with psycopg.connect(database.url, autocommit=True) as conn:
        migrate.migrate(conn, ahead_days=3, retention_days=30)
    return database


def register(database: PostgresEndpoint, *edges: TestEdge) -> None:
    with psycopg.connect(database.url, autocommit=True) as conn:
        for edge in edges:
            store.ensure_site(conn, edge.site)
            store.insert_edge(conn, edge_id=edge.edge_id, site_id=edge.site, name=edge.edge_id,
                              public_key=keys.public_to_text(edge.key.public_key()))


def settings_for(database: PostgresEndpoint, broker: MosquittoServer, keys_dir: Path, **ingest: Any) -> CloudSettings:
    cloud = broker.cloud
    # Client ids and a shared-subscription group of its own for every test: mosquitto keeps handing a group's
    # messages to the offline persistent sessions of earlier tests' workers.
    ingest.setdefault("instance", f"t{uuid.uuid4().hex[:8]}")
    ingest.setdefault("group", f"ingest-{uuid.uuid4().hex[:8]}")
    ingest.setdefault("session_expiry_s", 120)
    ingest.setdefault("retry_initial_s", 0.05)
    ingest.setdefault("retry_max_s", 0.5)
    return CloudSettings(
        database=DatabaseSettings(url=database.url),
        mqtt=MqttSettings(host=broker.host, port=broker.port, username=cloud.username, password=cloud.password,
                          admin_dir=broker.directory),
        ingest=IngestSettings(**ingest),
        keys=KeysSettings(dir=keys_dir),
    )


def query(database: PostgresEndpoint | str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement, on the endpoint's database (or a URL)."""
    url = database if isinstance(database, str) else database.url
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


@contextmanager
def running_worker(settings: CloudSettings, index: int = 0) -> Iterator[IngestWorker]:
    """An IngestWorker in a thread, stopped (gracefully) on exit."""
    worker = IngestWorker(settings, index=index)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"ingest-{index}", daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not worker.started.is_set():
        assert not failure, f"worker failed to start: {failure}"
        assert time.monotonic() < deadline, "worker did not start"
        time.sleep(0.02)
    try:
        yield worker
    finally:
        worker.request_stop()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "worker did not stop"
    assert not failure, f"worker failed: {failure}"


class MqttEdge:
    """A test edge on the broker: publishes sealed uplinks, receives and verifies the cloud's acks."""

    def __init__(self, edge: TestEdge, broker: MosquittoServer, cloud_public_key: str) -> None:
        self.edge = edge
        login = broker.add_edge(edge.edge_id)
        self.acks: queue.Queue[AckEntry] = queue.Queue()
        self.forged_acks = 0
        self._cloud = SignerKey(keys.public_from_text(cloud_public_key))
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{edge.edge_id}-{uuid.uuid4().hex[:6]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(login.username, login.password)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._connected.wait(TIMEOUT), "test edge did not connect"

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(downlink_subscription(self.edge.site, self.edge.edge_id), qos=1)
            self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            env = open_envelope(bytes(message.payload), topic=message.topic,
                                keys=lambda signer: self._cloud if signer == CLOUD_SIGNER else None)
        except ValueError:
            self.forged_acks += 1
            return
        assert isinstance(env.payload, CommitAck)
        for entry in env.payload.acks:
            self.acks.put(entry)

    def publish(self, stream: str, raw: bytes) -> None:
        info = self.client.publish(self.edge.topic(stream), raw, qos=1)
        info.wait_for_publish(TIMEOUT)

    def wait_acks(self, count: int, timeout: float = TIMEOUT) -> list[AckEntry]:
        got: list[AckEntry] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            got.append(self.acks.get(timeout=max(0.01, deadline - time.monotonic())))
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cloud_public_key(settings: CloudSettings) -> str:
    return keys.public_to_text(cloud_key.load_or_create(settings.keys.cloud_key_path).public_key())


def with_ingest(settings: CloudSettings, **changes: Any) -> CloudSettings:
    return dataclasses.replace(settings, ingest=dataclasses.replace(settings.ingest, **changes))
