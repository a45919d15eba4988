"""An ingest worker between the real broker and the real database: commit acks, duplicates, dead letters,
backpressure from a slow database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cloud.settings import CloudSettings
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresEndpoint
from proto import keys
from proto.envelope import read_header
from tests.integration.test_ingest_support import (
    MqttEdge,
    cloud_public_key,
    migrated,
    query,
    register,
    running_worker,
    settings_for,
)
from tests.unit.cloud.ingest_messages import TestEdge, alert, ward_batch

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(database: PostgresEndpoint, mosquitto: MosquittoServer, tmp_path: Path) -> CloudSettings:
    migrated(database)
    return settings_for(database, mosquitto, tmp_path / "keys", queue_size=4, receive_maximum=4,
                        batch_max_messages=8)


@pytest.fixture
def edge(request: pytest.FixtureRequest, database: PostgresEndpoint) -> TestEdge:
    edge = TestEdge(f"edge-{request.node.name[-20:].replace('_', '-').strip('-')}-{id(request) % 9973}", "site-w")
    register(database, edge)
    return edge


@pytest.fixture
def mqtt_edge(edge: TestEdge, mosquitto: MosquittoServer, settings: CloudSettings) -> Iterator[MqttEdge]:
    client = MqttEdge(edge, mosquitto, cloud_public_key(settings))
    yield client
    client.close()


def test_messages_are_committed_then_acked_and_duplicates_are_acked_as_such(
    settings: CloudSettings, database: PostgresEndpoint, edge: TestEdge, mqtt_edge: MqttEdge
) -> None:
    raws = [edge.seal(ward_batch(200, offset_s=i * 200)) for i in range(5)]
    with running_worker(settings) as worker:
        for raw in raws:
            mqtt_edge.publish("vitals", raw)
        acks = mqtt_edge.wait_acks(5)
        mqtt_edge.publish("vitals", raws[2])  # the edge did not get the ack in time and resends
        [again] = mqtt_edge.wait_acks(1)

    assert {a.outcome for a in acks} == {"committed"}
    assert {a.message_id for a in acks} == {read_header(raw)[0].message_id for raw in raws}
    assert again.outcome == "duplicate"
    assert query(database, "SELECT count(*) FROM vitals") == [(1000,)]
    assert query(database, "SELECT count(*) FROM ingested_messages") == [(5,)]
    assert worker.stats.committed == 5 and worker.stats.duplicates == 1
    assert mqtt_edge.forged_acks == 0


def test_rejected_messages_are_dead_lettered_and_acked_rejected(
    settings: CloudSettings, database: PostgresEndpoint, edge: TestEdge, mqtt_edge: MqttEdge
) -> None:
    forged = edge.seal(ward_batch(10), key=keys.generate())
    claims_other = edge.seal(alert(), edge_id="edge-someone-else")
    with running_worker(settings):
        mqtt_edge.publish("vitals", forged)
        mqtt_edge.publish("alerts", claims_other)
        mqtt_edge.publish("alerts", edge.seal(alert()))
        acks = mqtt_edge.wait_acks(3)

    outcomes = sorted((a.outcome, a.reason or "") for a in acks)
    assert outcomes == [("committed", ""), ("rejected", "bad_signature"), ("rejected", "topic_mismatch")]
    # Retained last wills of other tests' edges (up/status) reach every new subscriber: not this test's concern.
    own = "SELECT reason, raw FROM dead_letters WHERE topic NOT LIKE '%/up/status'"
    assert sorted(query(database, own)) == sorted(
        [("bad_signature", forged), ("topic_mismatch", claims_other)])


def test_a_slow_database_slows_ingest_down_without_losing_anything(
    settings: CloudSettings, database: PostgresEndpoint, edge: TestEdge, mqtt_edge: MqttEdge
) -> None:
    """With the dedupe table locked, the worker cannot commit: its queue (4) and the broker's in-flight window
    (Receive Maximum 4) fill up, the broker holds the rest; once the lock goes, every message lands once."""
    count = 60
    with running_worker(settings) as worker, psycopg.connect(database.url) as blocker:
        blocker.execute("LOCK TABLE ingested_messages IN ACCESS EXCLUSIVE MODE")
        def publish_all() -> None:
            for i in range(count):
                mqtt_edge.publish("vitals", edge.seal(ward_batch(20, offset_s=i * 20)))

        publisher = threading.Thread(target=publish_all)
        publisher.start()
        time.sleep(2.0)
        assert worker.stats.committed == 0
        assert mqtt_edge.acks.qsize() == 0
        blocker.rollback()  # releases the lock
        publisher.join(30)
        acks = mqtt_edge.wait_acks(count, timeout=60)

    assert {a.outcome for a in acks} == {"committed"}
    assert query(database, "SELECT count(*), count(DISTINCT message_id) FROM ingested_messages") == [(count, count)]
    assert query(database, "SELECT count(*) FROM vitals") == [(count * 20,)]
