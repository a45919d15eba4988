"""The ingest pipeline writing to a real PostgreSQL (no broker): rows, dedupe, dead letters, rollups, notify."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator

import psycopg
import pytest

from cloud.db.migrate import MIGRATIONS_DIR
from cloud.edges.registry import EdgeRegistry
from cloud.ingest.acks import Outcome
from cloud.ingest.intake import Delivery
from cloud.ingest.pipeline import CommitResult, Pipeline, RetryPolicy
from cloud.ingest.store import PgIngestStore
from cloud.settings import DatabaseSettings
from deploy.postgres import PostgresEndpoint
from proto.quality import Quality
from tests.integration.test_ingest_support import migrated, query, register
from tests.unit.cloud.ingest_messages import T0, TestEdge, alert, device_event, manifest, status, vitals, ward_batch

pytestmark = pytest.mark.integration

UTC = dt.UTC


@pytest.fixture
def db(database: PostgresEndpoint) -> PostgresEndpoint:
    return migrated(database)


@pytest.fixture
def edge(db: PostgresEndpoint) -> TestEdge:
    edge = TestEdge("edge-s1", "site-1")
    register(db, edge)
    return edge


@pytest.fixture
def pipeline(db: PostgresEndpoint) -> Iterator[Pipeline]:
    store = PgIngestStore(DatabaseSettings(url=db.url))
    registry = EdgeRegistry(store.all_edges, ttl_s=60)
    yield Pipeline(store, registry, retry=RetryPolicy(0.01, 0.05), poison_attempts=2)
    store.close()


def run(pipeline: Pipeline, deliveries: list[Delivery]) -> list[Outcome]:
    results: list[CommitResult] = []
    pipeline.process(deliveries, results.append)
    return [o for r in results for o in r.outcomes]


def test_every_payload_lands_in_its_table(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    a = alert("pt-07")
    event = device_event("dev-09", state="disconnected", battery=41.0)
    deliveries = [edge.delivery(ward_batch(100)), edge.delivery(a), edge.delivery(event),
                  edge.delivery(manifest("pt-08")), edge.delivery(status("online"))]

    outcomes = run(pipeline, deliveries)

    assert [o.status for o in outcomes] == ["committed"] * 5
    assert query(db, "SELECT count(*), count(DISTINCT patient_id), min(edge_id) FROM vitals") == [(100, 5, "edge-s1")]
    assert query(db, "SELECT count(*), sum(samples) FROM ingested_messages") == [(5, 100)]
    assert query(db, "SELECT alert_id, patient_id, rule, priority, state FROM edge_alerts") == [
        (a.alert_id, "pt-07", "news2.high", "high", "active")]
    assert query(db, "SELECT event_type, body->'device_status'->>'state' FROM events") == [
        ("device_status", "disconnected")]
    assert query(db, "SELECT state, battery_pct, device_type FROM devices WHERE device_id = 'dev-09'") == [
        ("disconnected", 41.0, "pulse_oximeter")]
    assert query(db, "SELECT study_instance_uid, patient_id FROM dicom_manifests") == [("1.2.3.4", "pt-08")]
    assert query(db, "SELECT state FROM edge_status WHERE edge_id = 'edge-s1'") == [("online",)]
    patients = query(db, "SELECT patient_id, site_id FROM patients ORDER BY 1")
    assert ("pt-07", "site-1") in patients and ("pt-08", "site-1") in patients and len(patients) == 7
    assert query(db, "SELECT count(*) FROM devices WHERE site_id = 'site-1' AND last_seen_at IS NOT NULL") == [(6,)]
    assert query(db, "SELECT last_seen_at IS NOT NULL FROM edges WHERE edge_id = 'edge-s1'") == [(True,)]


def test_values_round_trip_exactly_with_their_quality(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    batch = vitals([(0.000001, "pt-1", "spo2", 96.5), (1.5, "pt-1", "spo2", 120.0),
                    (2.25, "pt-1", "body_temperature", 36.612345678901234)], device="", quality=int(Quality.MOTION))

    run(pipeline, [edge.delivery(batch)])

    rows = query(db, "SELECT time, kind_id, value, quality, device_id FROM vitals ORDER BY time")
    assert rows == [
        (T0 + dt.timedelta(microseconds=1), 2, 96.5, int(Quality.MOTION), None),
        (T0 + dt.timedelta(seconds=1.5), 2, 120.0, int(Quality.MOTION | Quality.IMPLAUSIBLE), None),
        (T0 + dt.timedelta(seconds=2.25), 7, 36.612345678901234, int(Quality.MOTION), None),
    ]


def test_one_transaction_of_several_edges_keeps_each_rows_edge_and_device(
    db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline
) -> None:
    other = TestEdge("edge-s2", "site-1")
    register(db, other)
    first = vitals([(2, "pt-2", "heart_rate", 61), (1, "pt-1", "spo2", 97)], device="dev-a")
    second = vitals([(1, "pt-2", "heart_rate", 60), (3, "pt-1", "heart_rate", 80)], device="")

    assert [o.status for o in run(pipeline, [edge.delivery(first), other.delivery(second)])] == ["committed"] * 2

    assert query(db, "SELECT patient_id, kind_id, value, device_id, edge_id FROM vitals ORDER BY time, value") == [
        ("pt-2", 1, 60.0, None, "edge-s2"), ("pt-1", 2, 97.0, "dev-a", "edge-s1"),
        ("pt-2", 1, 61.0, "dev-a", "edge-s1"), ("pt-1", 1, 80.0, None, "edge-s2")]


def test_duplicates_add_no_rows(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    raw = edge.seal(ward_batch(50))
    delivery = Delivery(edge.topic("vitals"), raw, dt.datetime.now(UTC))

    first = run(pipeline, [delivery, delivery])
    second = run(pipeline, [delivery])

    assert [o.status for o in first + second] == ["committed", "duplicate", "duplicate"]
    assert query(db, "SELECT count(*) FROM vitals") == [(50,)]
    assert query(db, "SELECT sum(count) FROM vitals_1m") == [(50,)]


def test_rejections_are_dead_lettered_with_raw_bytes(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    from proto import keys

    forged = edge.delivery(ward_batch(3), key=keys.generate())
    garbage = Delivery(edge.topic("vitals"), b"not an envelope at all" * 4, dt.datetime.now(UTC))
    future = bytearray(edge.seal(ward_batch(3)))
    future[2] = 2  # schema version 2
    unknown_version = Delivery(edge.topic("vitals"), bytes(future), dt.datetime.now(UTC))
    for_another = edge.delivery(alert(), edge_id="edge-other")

    outcomes = run(pipeline, [forged, garbage, unknown_version, for_another])

    assert [o.status for o in outcomes] == ["rejected"] * 4
    rows = query(db, "SELECT reason, edge_id, raw, topic, message_id IS NOT NULL FROM dead_letters ORDER BY id")
    assert rows == [("bad_signature", "edge-s1", forged.payload, forged.topic, True),
                    ("malformed", "edge-s1", garbage.payload, garbage.topic, False),
                    ("unknown_version", "edge-s1", unknown_version.payload, unknown_version.topic, False),
                    ("topic_mismatch", "edge-s1", for_another.payload, for_another.topic, True)]
    assert query(db, "SELECT count(*) FROM vitals") == [(0,)]
    assert query(db, "SELECT count(*) FROM ingested_messages") == [(0,)]


def test_a_poison_message_is_isolated_by_the_database(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    """jsonb cannot hold U+0000: PostgreSQL refuses this alert every time, its batchmates still commit."""
    poison = edge.delivery(alert(message="bad \x00 byte"))
    good = [edge.delivery(ward_batch(10)), edge.delivery(alert())]

    outcomes = run(pipeline, [good[0], poison, good[1]])

    status_of = {id(o.delivery): o.status for o in outcomes}
    assert [status_of[id(d)] for d in (good[0], poison, good[1])] == ["committed", "rejected", "committed"]
    assert query(db, "SELECT reason, raw FROM dead_letters") == [("processing_failed", poison.payload)]
    assert query(db, "SELECT count(*) FROM edge_alerts") == [(1,)]
    assert query(db, "SELECT count(*) FROM vitals") == [(10,)]


def test_a_revoked_edge_is_refused_at_once(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    assert [o.status for o in run(pipeline, [edge.delivery(ward_batch(2))])] == ["committed"]
    query(db, "UPDATE edges SET status = 'revoked', revoked_at = now() WHERE edge_id = %s RETURNING 1",
          (edge.edge_id,))

    [outcome] = run(pipeline, [edge.delivery(ward_batch(2))])

    assert outcome.status == "rejected" and outcome.target is None
    assert query(db, "SELECT reason FROM dead_letters") == [("revoked_edge",)]


def test_rollups_equal_aggregates_of_the_raw_rows(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    # Several transactions touching the same buckets, across an hour boundary.
    start = T0 + dt.timedelta(minutes=55)
    for part in range(6):
        batch = ward_batch(400, start=start, offset_s=part * 211.7, patients=4)
        run(pipeline, [edge.delivery(batch), edge.delivery(ward_batch(50, start=start, offset_s=part * 13.3))])

    for table, width in (("vitals_1m", "1 minute"), ("vitals_15m", "15 minutes"), ("vitals_1h", "1 hour")):
        raw = query(db, f"SELECT date_bin(interval '{width}', time, timestamptz '2000-01-01Z') AS b, patient_id, "
                        "kind_id, min(value), max(value), sum(value), count(*) FROM vitals "
                        "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
        rolled = query(db, f"SELECT bucket, patient_id, kind_id, min, max, sum, count FROM {table} ORDER BY 1, 2, 3")
        assert [r[:5] + r[6:] for r in rolled] == [r[:5] + r[6:] for r in raw]
        assert all(r[5] == pytest.approx(w[5], rel=1e-12) for r, w in zip(rolled, raw, strict=True))
        assert len(raw) > 4


def test_latest_values_follow_the_newest_sample_and_never_go_back(
    db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline
) -> None:
    motion = int(Quality.MOTION)
    now = dt.datetime.now(UTC)
    run(pipeline, [edge.delivery(vitals([(10, "pt-a", "heart_rate", 70), (20, "pt-a", "heart_rate", 75),
                                         (5, "pt-a", "spo2", 97)], device="dev-1", quality=motion)),
                   edge.delivery(vitals([(8, "pt-b", "heart_rate", 60)], device=""))])
    # A later transaction replaying older samples, then a newer one from another device.
    run(pipeline, [edge.delivery(vitals([(15, "pt-a", "heart_rate", 72), (1, "pt-a", "spo2", 90)]))])
    run(pipeline, [edge.delivery(vitals([(30.000007, "pt-a", "heart_rate", 80)], device="dev-2"))])
    # Stamped a minute ahead (still the latest) and a day ahead (a broken clock: stored, never the latest).
    run(pipeline, [edge.delivery(vitals([(0, "pt-b", "spo2", 95)], start=now + dt.timedelta(minutes=1))),
                   edge.delivery(vitals([(0, "pt-b", "heart_rate", 99)], start=now + dt.timedelta(days=1)))])

    latest = query(db, "SELECT patient_id, kind_id, time, value, device_id, quality FROM vitals_latest ORDER BY 1, 2")
    assert [(p, k, v, d, q) for p, k, _, v, d, q in latest] == [
        ("pt-a", 1, 80.0, "dev-2", 0), ("pt-a", 2, 97.0, "dev-1", motion),
        ("pt-b", 1, 60.0, None, 0), ("pt-b", 2, 95.0, "dev-1", 0)]
    assert latest[0][2] == T0 + dt.timedelta(seconds=30, microseconds=7)  # exact to the microsecond
    assert query(db, "SELECT count(*) FROM vitals") == [(9,)]
    # The migration's rebuild from the raw rows (the backfill) follows the same rules.
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("TRUNCATE vitals_latest")
        assert conn.execute("SELECT telemed_refresh_vitals_latest('-infinity')").fetchone() == (4,)
    assert query(db, "SELECT patient_id, kind_id, time, value, device_id, quality FROM vitals_latest "
                     "ORDER BY 1, 2") == latest


def test_timescale_aggregate_queries_agree_with_the_writers_rollups(
    db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline
) -> None:
    """Both storage modes must answer alike: the continuous aggregates' SELECTs (time_bucket stood in by
    date_bin, which gives the same UTC-aligned minute and hour buckets) over the raw rows equal the rollups
    the plain-mode writer maintained incrementally."""
    for part in range(3):
        run(pipeline, [edge.delivery(ward_batch(300, offset_s=part * 97.1))])
    sql = "\n".join(p.read_text() for p in sorted(MIGRATIONS_DIR.glob("*.timescale.sql")))
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION pg_temp.time_bucket(w interval, t timestamptz) RETURNS timestamptz "
                     "LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(w, t, timestamptz '2000-01-01 00:00Z') $$")
        for name in ("vitals_1m", "vitals_15m", "vitals_1h"):
            match = re.search(rf"CREATE MATERIALIZED VIEW {name}\s+WITH \([^)]*\) AS\s+(SELECT .*?)\s+WITH NO DATA;",
                              sql, re.DOTALL)
            assert match, name
            select = match.group(1).replace("time_bucket(", "pg_temp.time_bucket(")
            cagg = conn.execute(f"SELECT bucket, patient_id, kind_id, min, max, count, sum FROM ({select}) q "
                                "ORDER BY 1, 2, 3").fetchall()
            ours = conn.execute(f"SELECT bucket, patient_id, kind_id, min, max, count, sum FROM {name} "
                                "ORDER BY 1, 2, 3").fetchall()
            assert [r[:6] for r in cagg] == [r[:6] for r in ours]
            assert [r[6] for r in cagg] == pytest.approx([r[6] for r in ours], rel=1e-12)


def test_notifications_are_sent_on_commit(db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline) -> None:
    a = alert("pt-01")
    with psycopg.connect(db.url, autocommit=True) as listener:
        listener.execute("LISTEN telemed_vitals")
        listener.execute("LISTEN telemed_events")
        batch = vitals([(0, "pt-01", "heart_rate", 80.0), (5, "pt-01", "heart_rate", 84.0),
                        (3, "pt-01", "spo2", 95.0), (1, "pt-02", "heart_rate", 66.0)])
        run(pipeline, [edge.delivery(batch), edge.delivery(a)])
        notes = [(n.channel, json.loads(n.payload)) for n in listener.notifies(timeout=5, stop_after=3)]

    vitals_notes = sorted((p for c, p in notes if c == "telemed_vitals"), key=lambda p: p["patient_id"])
    assert vitals_notes == [
        {"patient_id": "pt-01", "site_id": "site-1", "latest": {
            "heart_rate": {"time": "2026-03-10T08:00:05.000000Z", "value": 84.0, "quality": 0},
            "spo2": {"time": "2026-03-10T08:00:03.000000Z", "value": 95.0, "quality": 0}}},
        {"patient_id": "pt-02", "site_id": "site-1", "latest": {
            "heart_rate": {"time": "2026-03-10T08:00:01.000000Z", "value": 66.0, "quality": 0}}},
    ]
    [event] = [p for c, p in notes if c == "telemed_events"]
    assert (event["type"], event["edge_id"], event["site_id"]) == ("alert", "edge-s1", "site-1")
    assert event["body"]["alert_id"] == str(a.alert_id) and event["body"]["patient_id"] == "pt-01"


def test_nothing_is_notified_when_the_transaction_rolls_back(
    db: PostgresEndpoint, edge: TestEdge, pipeline: Pipeline
) -> None:
    with psycopg.connect(db.url, autocommit=True) as listener:
        listener.execute("LISTEN telemed_events")
        run(pipeline, [edge.delivery(alert(message="bad \x00 byte"))])
        notes = list(listener.notifies(timeout=1))

    assert notes == []
    assert query(db, "SELECT reason FROM dead_letters") == [("processing_failed",)]
