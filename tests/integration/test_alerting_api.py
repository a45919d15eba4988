"""The alerting API: incidents (site scope, acknowledge/resolve by role, timeline), who is on call, and the
admin side (rotas, overrides, policies, channels, failed deliveries)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deploy.postgres import PostgresEndpoint
from proto.vitals import VitalsBatch, VitalsBatchBuilder
from tests.integration.test_alerting_support import (
    SITE,
    FakeClock,
    World,
    add_patients,
    migrate_and_seed,
    password,
    rows,
    running_service,
    vitals_in,
    webhook_sink,
)
from tests.integration.test_api_support import client_for

pytestmark = pytest.mark.integration

START = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)


def low_spo2(patient: str, seconds: int = 20) -> VitalsBatch:
    builder = VitalsBatchBuilder()
    for i in range(seconds):
        builder.add(START + dt.timedelta(seconds=i), patient, "spo2", 85.0, device_id="ox-1")
    return builder.build()


async def _raise_incident(url: str, clock: FakeClock) -> None:
    async with running_service(url, clock) as service:
        await service.process([vitals_in(low_spo2("pt-api"))])


@pytest.fixture
def world(database: PostgresEndpoint) -> Iterator[tuple[World, TestClient, FakeClock]]:
    with webhook_sink() as sink:
        world = migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-api")
        clock = FakeClock(START + dt.timedelta(seconds=20))
        asyncio.run(_raise_incident(database.url, clock))
        with client_for(database.url) as client:
            yield world, client, clock


def auth(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"username": username, "password": password(username)})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    return {"Authorization": f"Bearer {response.json()['token']}"}


def incident_id(client: TestClient, headers: dict[str, str]) -> str:
    listed = client.get("/api/incidents", headers=headers).json()["incidents"]
    assert len(listed) == 1
    found: str = listed[0]["incident_id"]
    return found


def test_incidents_are_listed_for_the_sites_of_the_caller_only(world: tuple[World, TestClient, FakeClock]) -> None:
    _, client, _ = world
    assert client.get("/api/incidents").status_code == 401
    primary = auth(client, "dr-primary")
    listed = client.get("/api/incidents", headers=primary).json()["incidents"]
    assert [(i["rule"], i["priority"], i["state"], i["patient_id"]) for i in listed] == [
        ("spo2_low", "high", "triggered", "pt-api")]
    assert client.get("/api/incidents?state=resolved", headers=primary).json()["incidents"] == []
    assert len(client.get("/api/incidents?priority=high&patient=pt-api", headers=primary).json()["incidents"]) == 1
    other = auth(client, "dr-other")
    assert client.get("/api/incidents", headers=other).json()["incidents"] == []
    assert client.get(f"/api/incidents/{listed[0]['incident_id']}", headers=other).status_code == 404
    assert client.get("/api/incidents?state=bogus", headers=primary).status_code == 422


def test_the_timeline_shows_the_alarm_the_pages_and_who_acknowledged_and_resolved(
        world: tuple[World, TestClient, FakeClock]) -> None:
    _, client, _ = world
    primary, secondary = auth(client, "dr-primary"), auth(client, "dr-secondary")
    incident = incident_id(client, primary)
    acked = client.post(f"/api/incidents/{incident}/acknowledge", json={"note": "on my way"}, headers=primary)
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert body["state"] == "acknowledged" and body["acknowledged_by"]["name"] == "dr-primary"
    assert body["next_page_at"] is None and body["ack_deadline"] is not None
    again = client.post(f"/api/incidents/{incident}/acknowledge", headers=primary)
    assert again.status_code == 409
    resolved = client.post(f"/api/incidents/{incident}/resolve", headers=secondary)
    assert resolved.status_code == 200 and resolved.json()["resolution"] == "manual"
    detail = client.get(f"/api/incidents/{incident}", headers=primary).json()
    events = [(e["event"], e["to_state"], e["actor"]) for e in detail["timeline"]]
    assert events[0] == ("opened", "triggered", "system")
    assert ("page", "triggered", "system") in events
    assert events[-2:] == [("acknowledge", "acknowledged", "dr-primary"), ("resolve", "resolved", "dr-secondary")]
    assert detail["timeline"][-2]["detail"] == {"note": "on my way"}
    assert [m["state"] for m in detail["messages"]] == ["active"] and detail["messages"][0]["sources"] == ["cloud"]
    assert [d["tier"] for d in detail["deliveries"]] == ["primary"]
    audited = rows(world[0].url, "SELECT username, event, detail->>'to' FROM access_log"
                                 " WHERE entity = 'incident' ORDER BY id")
    assert audited[-2:] == [("dr-primary", "incident.transition", "acknowledged"),
                            ("dr-secondary", "incident.transition", "resolved")]


def test_who_may_acknowledge(world: tuple[World, TestClient, FakeClock]) -> None:
    _, client, _ = world
    incident = incident_id(client, auth(client, "admin"))
    assert client.post(f"/api/incidents/{incident}/acknowledge", headers=auth(client, "expert")).status_code == 403
    assert client.post(f"/api/incidents/{incident}/acknowledge", headers=auth(client, "dr-other")).status_code == 404
    assert client.post(f"/api/incidents/{uuid.uuid4()}/resolve", headers=auth(client, "admin")).status_code == 404
    assert client.post(f"/api/incidents/{incident}/acknowledge", headers=auth(client, "admin")).status_code == 200


def test_acknowledging_stops_the_escalation(world: tuple[World, TestClient, FakeClock]) -> None:
    w, client, clock = world
    incident = incident_id(client, auth(client, "dr-primary"))
    assert client.post(f"/api/incidents/{incident}/acknowledge", headers=auth(client, "dr-primary")).status_code == 200

    async def sweep_later() -> None:
        async with running_service(w.url, clock) as service:
            clock.advance(600)
            await service.sweep()

    asyncio.run(sweep_later())
    assert rows(w.url, "SELECT tier FROM notification_deliveries") == [("primary",)]


def test_oncall_now_and_next_with_an_override_set_by_an_admin(world: tuple[World, TestClient, FakeClock]) -> None:
    w, client, _ = world
    admin, primary = auth(client, "admin"), auth(client, "dr-primary")
    now = dt.datetime.now(dt.UTC)
    shown = client.get(f"/api/oncall/now?site={SITE}", headers=primary).json()
    (icu,) = shown["departments"]
    tiers = {t["tier"]: t for t in icu["tiers"]}
    assert tiers["primary"]["now"]["username"] == "dr-primary"
    assert tiers["secondary"]["now"]["username"] == "dr-secondary"
    assert tiers["primary"]["next"]["starts_at"] == tiers["primary"]["now"]["ends_at"]
    assert icu["head"]["username"] == "dr-head"
    hour = dt.timedelta(hours=1)
    override: dict[str, Any] = {"site_id": SITE, "department_id": "icu", "tier": "primary",
                                "user_id": str(w.users["dr-head"]), "starts_at": (now - hour).isoformat(),
                                "ends_at": (now + hour).isoformat(), "reason": "cover"}
    assert client.post("/api/oncall/overrides", json=override, headers=primary).status_code == 403
    created = client.post("/api/oncall/overrides", json=override, headers=admin)
    assert created.status_code == 201, created.text
    shown = client.get(f"/api/oncall/now?site={SITE}", headers=primary).json()
    tiers = {t["tier"]: t for t in shown["departments"][0]["tiers"]}
    assert tiers["primary"]["now"]["username"] == "dr-head" and tiers["primary"]["now"]["source"] == "override"
    assert tiers["primary"]["next"]["username"] == "dr-primary"
    assert client.get("/api/oncall/now?site=county-b", headers=primary).status_code == 404
    listed = client.get("/api/oncall/overrides", headers=admin).json()
    assert [o["override_id"] for o in listed] == [created.json()["override_id"]]
    assert client.delete(f"/api/oncall/overrides/{listed[0]['override_id']}", headers=admin).status_code == 204


def test_admins_manage_rotas_policies_and_channels(world: tuple[World, TestClient, FakeClock]) -> None:
    w, client, _ = world
    admin, doctor = auth(client, "admin"), auth(client, "dr-secondary")
    rota = {"site_id": SITE, "department_id": "icu", "tier": "secondary", "period": "weekly",
            "members": [str(w.users["dr-secondary"]), str(w.users["dr-head"])], "anchor": "2026-03-02",
            "handoff": "09:00", "handoff_weekday": 0}
    assert client.put("/api/oncall/rotations", json=rota, headers=doctor).status_code == 403
    stored = client.put("/api/oncall/rotations", json=rota, headers=admin)
    assert stored.status_code == 200, stored.text
    assert stored.json()["period"] == "weekly"
    assert len([r for r in client.get("/api/oncall/rotations", headers=admin).json() if r["tier"] == "secondary"]) == 1
    bad_rota = {**rota, "department_id": "nowhere"}
    assert client.put("/api/oncall/rotations", json=bad_rota, headers=admin).status_code == 422
    assert client.put("/api/oncall/rotations", json={**rota, "timezone": "Mars/Base"}, headers=admin).status_code == 422

    policy = client.put(f"/api/alerting/policies/{SITE}", json={"delays_s": {"high": 60}, "repeat": 3},
                        headers=admin)
    assert policy.status_code == 200 and policy.json()["policy"]["delays_s"] == {"high": 60.0}
    assert client.put(f"/api/alerting/policies/{SITE}", json={"delays_s": {"high": 0}},
                      headers=admin).status_code == 422
    assert [p["site_id"] for p in client.get("/api/alerting/policies", headers=admin).json()] == [SITE]

    channel = str(uuid.uuid4())
    wecom = {"kind": "wecom", "name": "ICU group", "site_id": SITE,
             "config": {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRETKEY"}}
    assert client.put(f"/api/alerting/channels/{channel}", json={**wecom, "config": {}},
                      headers=admin).status_code == 422
    assert client.put(f"/api/alerting/channels/{channel}", json=wecom, headers=admin).status_code == 200
    listed = {c["channel_id"]: c for c in client.get("/api/alerting/channels", headers=admin).json()}
    assert listed[channel]["config"] == {"url": "***"}
    (stored,), = rows(w.url, "SELECT config::text FROM notification_channels WHERE channel_id = %s", (channel,))
    assert "SECRETKEY" not in stored and "$sealed" in stored  # the robot's key is encrypted at rest
    assert str(w.webhook_channel) in listed and listed[str(w.webhook_channel)]["config"]["secret"] == "***"
    contact = client.put(f"/api/alerting/contacts/{w.users['dr-head']}/{channel}", json={"address": "ZhangSan"},
                         headers=admin)
    assert contact.status_code == 200
    assert {c["channel_id"] for c in client.get(f"/api/alerting/contacts/{w.users['dr-head']}",
                                                 headers=admin).json()} == {str(w.webhook_channel), channel}


def test_failed_deliveries_are_visible_to_admins_only(world: tuple[World, TestClient, FakeClock]) -> None:
    w, client, _ = world
    admin = auth(client, "admin")
    assert client.get("/api/alerting/deliveries/failed", headers=admin).json()["deliveries"] == []
    with_delivery = rows(w.url, "SELECT delivery_id FROM notification_deliveries")
    rows(w.url, "UPDATE notification_deliveries SET status = 'failed', last_error = 'HTTP 410' RETURNING 1")
    failed = client.get("/api/alerting/deliveries/failed", headers=admin).json()["deliveries"]
    assert [(d["delivery_id"], d["last_error"]) for d in failed] == [(str(with_delivery[0][0]), "HTTP 410")]
    assert client.get("/api/alerting/deliveries?status=failed&channel=webhook",
                      headers=admin).json()["deliveries"] == failed
    assert client.get("/api/alerting/deliveries/failed", headers=auth(client, "dr-primary")).status_code == 403
