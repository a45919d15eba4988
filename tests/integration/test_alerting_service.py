"""The alerting service end to end: signed envelopes from a test edge through the real Mosquitto, the
service's own subscription, incidents in PostgreSQL, the dashboard notification and the webhook page;
restart resume; delivery retries and failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from cloud.alerting.channel_secrets import seal_config
from cloud.identity.keys import KeySource
from cloud.identity.keystore import verified_ring_sync
from cloud.settings import CloudSettings, DatabaseSettings, KeysSettings
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresEndpoint
from proto.alerting import AlarmEngine
from proto.messages import Alert
from proto.vitals import VitalsBatch, VitalsBatchBuilder
from tests.integration.test_alerting_support import (
    SITE,
    FakeClock,
    add_patients,
    alert_in,
    migrate_and_seed,
    rows,
    running_service,
    vitals_in,
    wait_until,
    webhook_sink,
)
from tests.integration.test_api_support import Row, insert_vitals, rebuild_rollups
from tests.integration.test_ingest_support import MqttEdge, cloud_public_key, register, settings_for
from tests.unit.cloud.ingest_messages import TestEdge

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def spo2_batch(patient: str, value: float, start: dt.datetime, seconds: int, *, device: str = "ox-1") -> VitalsBatch:
    builder = VitalsBatchBuilder()
    for i in range(seconds):
        builder.add(start + dt.timedelta(seconds=i), patient, "spo2", value, device_id=device)
        builder.add(start + dt.timedelta(seconds=i), patient, "heart_rate", 80.0, device_id=device)
    return builder.build()


async def test_envelopes_from_an_edge_become_an_incident_a_dashboard_push_and_a_page(
        database: PostgresEndpoint, mosquitto: MosquittoServer, tmp_path: Path) -> None:
    edge = TestEdge(f"edge-{uuid.uuid4().hex[:8]}", SITE)
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-e2e")
        register(database, edge)
        cloud = settings_for(database, mosquitto, tmp_path / "keys")
        mqtt_edge = MqttEdge(edge, mosquitto, cloud_public_key(cloud))
        listener = await psycopg.AsyncConnection.connect(database.url, autocommit=True)
        await listener.execute("LISTEN telemed_events")
        try:
            async with running_service(database.url, lambda: dt.datetime.now(dt.UTC), use_feed=True, cloud=cloud,
                                       client_id=f"alerting-{uuid.uuid4().hex[:8]}") as service:
                start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=30)
                # SpO2 85 for 20 s: below 90 for the 15 s delay -> spo2_low high, raised by the cloud itself.
                batch = spo2_batch("pt-e2e", 85.0, start, 20)
                mqtt_edge.publish("vitals", edge.seal(batch))
                # A forged envelope (another key) is dropped: ingest dead-letters it, nobody is paged for it.
                forged = Alert(alert_id=uuid.uuid4(), patient_id="pt-e2e", rule="hr_high", priority="high",
                               category="clinical", state="active", raised_at=start, message="forged")
                mqtt_edge.publish("alerts", edge.seal(forged, key=TestEdge("x", SITE).key))
                pages = await sink.wait_for(lambda p: len(p) >= 1)
                await wait_until(lambda: service.feed is not None and service.feed.rejected >= 1)
            page = pages[0]
            assert page["incident"]["rule"] == "spo2_low" and page["incident"]["priority"] == "high"
            assert page["recipient"]["username"] == "dr-primary" and sink.received[0].valid
            incidents = rows(database.url, "SELECT incident_id, rule, priority, state, sources, edge_id FROM incidents")
            assert [(r[1], r[2], r[3], r[4], r[5]) for r in incidents] == [
                ("spo2_low", "high", "triggered", ["cloud"], edge.edge_id)]
            expected_id = AlarmEngine().observe_batch(batch)[0].alert.alert_id  # what the edge would name it
            assert incidents[0][0] == expected_id
            notifications = []
            async for notify in listener.notifies(timeout=5.0, stop_after=1):
                notifications.append(json.loads(notify.payload))
            assert notifications[0]["type"] == "alert" and notifications[0]["site_id"] == SITE
            assert notifications[0]["body"]["alert_id"] == str(expected_id)
            assert notifications[0]["body"]["incident"]["state"] == "triggered"
            audit = rows(database.url, "SELECT username, entity, entity_id FROM access_log WHERE event = %s",
                         ("incident.transition",))
            assert audit == [("system:alerting", "incident", str(expected_id))]
        finally:
            await listener.close()
            mqtt_edge.close()


async def test_a_restarted_service_resumes_from_its_saved_engines(database: PostgresEndpoint) -> None:
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-restart")
        start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
        clock = FakeClock(start)
        # 10 s of SpO2 85 before the restart, 10 s after: the 15 s persistence spans the restart.
        async with running_service(database.url, clock) as service:
            await service.process([vitals_in(spo2_batch("pt-restart", 85.0, start, 10))])
        assert rows(database.url, "SELECT count(*) FROM incidents")[0][0] == 0
        assert rows(database.url, "SELECT edge_id FROM alerting_engine_state") == [("edge-a",)]
        clock.advance(10)
        async with running_service(database.url, clock) as service:
            await service.process([vitals_in(spo2_batch("pt-restart", 85.0, start + dt.timedelta(seconds=10), 10))])
        (raised_at,), = rows(database.url, "SELECT raised_at FROM incidents WHERE rule = 'spo2_low'")
        assert raised_at == start + dt.timedelta(seconds=15)
        await sink.wait_for(lambda p: len(p) == 1)


async def test_failed_deliveries_are_retried_and_permanent_failures_are_logged(database: PostgresEndpoint) -> None:
    with webhook_sink(fail_next=2) as sink:
        world = migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-retry")
        with psycopg.connect(database.url, autocommit=True) as conn:  # the secondary's pager has a wrong secret
            bad = uuid.uuid4()
            conn.execute("INSERT INTO notification_channels (channel_id, kind, name, config) VALUES"
                         " (%s, 'webhook', 'misconfigured', %s)",
                         (bad, json.dumps({"url": sink.url, "secret": "wrong"})))
            conn.execute("UPDATE user_contacts SET channel_id = %s WHERE user_id = %s",
                         (bad, world.users["dr-secondary"]))
        start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
        clock = FakeClock(start + dt.timedelta(seconds=20))
        async with running_service(database.url, clock) as service:
            await service.process([vitals_in(spo2_batch("pt-retry", 85.0, start, 20))])
            await wait_until(lambda: len(sink.pages()) == 1)  # after two 503s
            clock.advance(120)  # unacknowledged: the secondary, whose channel signs with the wrong secret
            await service.sweep()
            await wait_until(lambda: service.dispatcher.stats.failed == 1)
        deliveries = rows(database.url, "SELECT tier, status, attempts, last_error FROM notification_deliveries"
                                        " ORDER BY created_at, tier")
        assert deliveries[0][:3] == ("primary", "delivered", 3)
        assert deliveries[1][:3] == ("secondary", "failed", 1) and "HTTP 401" in deliveries[1][3]


async def test_an_alarm_already_over_when_it_arrives_is_logged_but_pages_nobody(database: PostgresEndpoint) -> None:
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-backlog")
        start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
        clock = FakeClock(start + dt.timedelta(hours=3))  # the edge was offline for hours
        engine = AlarmEngine()
        changes = engine.observe_batch(spo2_batch("pt-backlog", 85.0, start, 20))
        changes += engine.observe_batch(spo2_batch("pt-backlog", 97.0, start + dt.timedelta(seconds=20), 60))
        assert [c.change for c in changes] == ["raised", "cleared"]
        async with running_service(database.url, clock) as service:
            await service.process([alert_in(c.alert) for c in changes])
            await service.sweep()
            await asyncio.sleep(0.3)
        assert rows(database.url, "SELECT state, resolution, alarm_state FROM incidents") == [
            ("resolved", "auto", "cleared")]
        assert rows(database.url, "SELECT count(*) FROM incident_messages")[0][0] == 2
        assert sink.pages() == []


async def test_a_personal_anomaly_is_an_advisory_incident_that_pages_nobody(database: PostgresEndpoint) -> None:
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-anomaly")
        end = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
        rng = np.random.default_rng(3)
        samples: list[Row] = []
        for minute in range(26 * 60, 0, -1):  # a day at 72 /min and 15 /min, then 20 minutes at 100 and 21
            t = end - dt.timedelta(minutes=minute)
            changed = minute <= 20
            samples += [(t, "pt-anomaly", "heart_rate", (100.0 if changed else 72.0) + rng.normal(0, 3), "ox-1", 0),
                        (t, "pt-anomaly", "spo2", 97.0 + rng.normal(0, 0.7), "ox-1", 0),
                        (t, "pt-anomaly", "respiratory_rate", (21.0 if changed else 15.0) + rng.normal(0, 1.2),
                         "patch-1", 0)]
            if minute % 30 == 0:
                samples.append((t, "pt-anomaly", "systolic_bp", 120.0 + rng.normal(0, 6), "cuff-1", 0))
        insert_vitals(database.url, samples, edge_id="edge-a")
        rebuild_rollups(database.url)
        clock = FakeClock(end)
        async with running_service(database.url, clock) as service:
            await service.process([vitals_in(spo2_batch("pt-anomaly", 97.0, end - dt.timedelta(seconds=5), 5))])
            outcome = await service.anomaly_round()
            await service.sweep()
        assert service.detector.baseline("pt-anomaly") is not None
        advisories = rows(database.url, "SELECT rule, category, priority, state, next_page_at, message FROM incidents")
        assert [a[:5] for a in advisories] == [("anomaly.personal", "advisory", "low", "triggered", None)]
        assert "heart_rate" in advisories[0][5] and outcome.changed
        assert rows(database.url, "SELECT count(*) FROM notification_deliveries")[0][0] == 0
        assert sink.pages() == []


async def test_a_channel_whose_secrets_are_sealed_at_rest_still_pages(database: PostgresEndpoint,
                                                                      tmp_path: Path) -> None:
    with webhook_sink() as sink:
        world = migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-sealed")
        cloud = CloudSettings(database=DatabaseSettings(url=database.url, pool_min=1, pool_max=4),
                              keys=KeysSettings(dir=tmp_path / "keys"))
        with psycopg.connect(database.url, autocommit=True) as conn:
            ring = verified_ring_sync(conn, KeySource.from_settings(cloud))
            (config,), = conn.execute("SELECT config FROM notification_channels WHERE channel_id = %s",
                                      (world.webhook_channel,)).fetchall()
            conn.execute("UPDATE notification_channels SET config = %s WHERE channel_id = %s",
                         (Jsonb(seal_config(ring, world.webhook_channel, config)), world.webhook_channel))
        (stored,), = rows(database.url, "SELECT config::text FROM notification_channels")
        assert sink.secret not in stored and sink.url not in stored
        start = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)
        async with running_service(database.url, FakeClock(start + dt.timedelta(seconds=20)), cloud=cloud) as service:
            await service.process([vitals_in(spo2_batch("pt-sealed", 85.0, start, 20))])
            await wait_until(lambda: len(sink.pages()) == 1)  # the sink checks the HMAC made with the opened secret
        assert rows(database.url, "SELECT status FROM notification_deliveries") == [("delivered",)]
