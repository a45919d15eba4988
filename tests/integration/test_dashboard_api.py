"""The dashboard's own read APIs on the fixture database: the ward overview (scope, risk order, NEWS2 equal to
the patient list's, devices, artefacts, the per-session audit window) and the admin edges, devices and
statistics (admin only)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from cloud.web.schemas import WardOut
from deploy.postgres import PostgresEndpoint
from proto.quality import Quality
from tests.integration.test_api_support import (
    bearer,
    client_for,
    insert_vitals,
    login,
    scratch_database,
    seed_world,
)

pytestmark = pytest.mark.integration
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def rows_for(patient: str, values: dict[str, float], *, minutes_ago: float = 1, quality: int = 0,
             device: str | None = "hrm-a1") -> list[tuple[Any, ...]]:
    at = NOW - dt.timedelta(minutes=minutes_ago)
    return [(at, patient, name, value, device, quality) for name, value in values.items()]


@pytest.fixture(scope="module")
def world(postgres: PostgresEndpoint) -> Iterator[tuple[TestClient, str]]:
    with scratch_database(postgres) as db:
        seed_world(db.url)
        # P-A1: sick (NEWS2 high); P-A2: well, its latest SpO2 a motion artefact; P-B1 on the other site.
        insert_vitals(db.url, [
            *rows_for("P-A1", {"heart_rate": 135, "respiratory_rate": 27, "spo2": 89, "systolic_bp": 88,
                               "body_temperature": 39.4}),
            *rows_for("P-A2", {"heart_rate": 72, "respiratory_rate": 14, "spo2": 97, "systolic_bp": 125,
                               "body_temperature": 36.8}, minutes_ago=3, device="po-a2"),
            *rows_for("P-A2", {"spo2": 70}, quality=int(Quality.MOTION), device="po-a2"),
            *rows_for("P-B1", {"heart_rate": 80}, device="hrm-b1"),
        ])
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("INSERT INTO devices (device_id, site_id, device_type, battery_pct, state)"
                         " VALUES ('po-a2', 'site-a', 'pulse_oximeter', 9, 'disconnected')")
            conn.execute("INSERT INTO edges (edge_id, site_id, public_key, status, last_seen_at) VALUES"
                         " ('edge-a', 'site-a', 'AAAA', 'active', now()), ('edge-b', 'site-b', 'BBBB', 'active', NULL)")
            conn.execute("INSERT INTO edge_status (edge_id, state, at, body) VALUES ('edge-a', 'online', now(), %s)",
                         (json.dumps({"state": "online", "software_version": "0.1.0", "devices_connected": 2,
                                      "outbox": {"vitals": {"depth": 5, "bytes": 100, "oldest_age_s": 1.0},
                                                 "alerts": {"depth": 0, "bytes": 0}}}),))
        with client_for(db.url) as client:
            yield client, db.url


def overview(client: TestClient, user: str, query: str = "") -> dict[str, Any]:
    response = client.get(f"/api/ward/overview{query}", headers=bearer(login(client, user)))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_the_overview_is_scoped_and_sorted_by_risk(world: tuple[TestClient, str]) -> None:
    client, _ = world
    mine = overview(client, "doc-a")
    assert [p["patient_id"] for p in mine["patients"]] == ["P-A1", "P-A2"]
    assert [s["site_id"] for s in mine["sites"]] == ["site-a"]
    sick = mine["patients"][0]
    assert sick["news2"]["risk"] == "high" and sick["risk_rank"] == 4
    everyone = overview(client, "admin")
    assert {p["patient_id"] for p in everyone["patients"]} == {"P-A1", "P-A2", "P-B1"}
    assert [p["patient_id"] for p in overview(client, "admin", "?site=site-b")["patients"]] == ["P-B1"]
    assert overview(client, "doc-a", "?site=site-b")["patients"] == []
    assert client.get("/api/ward/overview").status_code == 401
    assert client.get("/api/ward/overview", headers=bearer(login(client, "nobody"))).status_code == 403


def test_the_overview_is_exactly_what_its_schema_renders(world: tuple[TestClient, str]) -> None:
    """The overview is serialised from plain data without building WardOut: its JSON must still be WardOut's."""
    client, _ = world
    response = client.get("/api/ward/overview", headers=bearer(login(client, "admin")))
    assert response.headers["content-type"] == "application/json"
    assert WardOut.model_validate_json(response.content).model_dump_json().encode() == response.content


def test_news2_matches_the_patient_list(world: tuple[TestClient, str]) -> None:
    client, _ = world
    token = login(client, "doc-a")
    patients = client.get("/api/patients", headers=bearer(token)).json()["patients"]
    listed = {p["patient_id"]: p["news2"] for p in patients}
    for tile in client.get("/api/ward/overview", headers=bearer(token)).json()["patients"]:
        expected = {k: v for k, v in listed[tile["patient_id"]].items() if k != "time"}  # "as of" each request
        assert {k: v for k, v in tile["news2"].items() if k != "time"} == expected, tile["patient_id"]


def test_devices_artefacts_and_batteries(world: tuple[TestClient, str]) -> None:
    client, _ = world
    tiles = {p["patient_id"]: p for p in overview(client, "doc-a")["patients"]}
    assert [d["device_id"] for d in tiles["P-A1"]["devices"]] == ["hrm-a1"]  # assigned and measuring
    (oximeter,) = tiles["P-A2"]["devices"]
    assert oximeter["state"] == "disconnected" and oximeter["low_battery"] is True
    assert tiles["P-A2"]["artefact"] is True and tiles["P-A1"]["artefact"] is False
    spo2 = next(v for v in tiles["P-A2"]["latest"] if v["kind"] == "spo2")
    assert spo2["value"] == 70 and spo2["quality_names"] == ["motion"]
    # The artefact does not count: NEWS2 scores the previous clean SpO2 (97: 0 points).
    assert tiles["P-A2"]["news2"]["subscores"]["spo2"] == 0


def test_a_session_records_each_patient_once_per_window(world: tuple[TestClient, str]) -> None:
    client, url = world
    token = login(client, "doc-a")

    def recorded() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM access_log WHERE event = 'ward.overview' AND username = 'doc-a'"
                               ).fetchone()
        assert row is not None
        return int(row[0])

    before = recorded()
    client.get("/api/ward/overview", headers=bearer(token)).raise_for_status()
    assert recorded() == before + 2
    client.get("/api/ward/overview", headers=bearer(token)).raise_for_status()
    assert recorded() == before + 2
    client.get("/api/ward/overview", headers=bearer(login(client, "doc-a"))).raise_for_status()
    assert recorded() == before + 4  # a new session records again


def test_admin_views_are_for_admins(world: tuple[TestClient, str]) -> None:
    client, _ = world
    doctor = bearer(login(client, "doc-a"))
    for path in ("/api/admin/edges", "/api/admin/devices", "/api/admin/stats"):
        assert client.get(path, headers=doctor).status_code == 403
        assert client.get(path).status_code == 401


def test_edges_and_devices(world: tuple[TestClient, str]) -> None:
    client, _ = world
    admin = bearer(login(client, "admin"))
    edges = {e["edge_id"]: e for e in client.get("/api/admin/edges", headers=admin).json()["edges"]}
    assert edges["edge-a"]["online"] is True and edges["edge-a"]["outbox_depth"] == 5
    assert edges["edge-a"]["site_name_zh"] == "甲县医院" and edges["edge-a"]["software_version"] == "0.1.0"
    assert edges["edge-b"]["online"] is None and edges["edge-b"]["outbox_depth"] is None
    devices = {d["device_id"]: d for d in client.get("/api/admin/devices", headers=admin).json()["devices"]}
    assert devices["hrm-a1"]["patient_id"] == "P-A1" and devices["hrm-a1"]["assigned_at"] is not None
    assert devices["po-a2"]["patient_id"] == "P-A2" and devices["po-a2"]["assigned_at"] is None  # by its samples


def test_statistics_per_day(world: tuple[TestClient, str]) -> None:
    client, url = world
    with psycopg.connect(url, autocommit=True) as conn:
        requester = conn.execute("SELECT user_id FROM users WHERE username = 'doc-a'").fetchone()
        expert = conn.execute("SELECT user_id FROM users WHERE username = 'expert'").fetchone()
        assert requester and expert
        consultation = uuid.uuid4()
        conn.execute("INSERT INTO consultations (consultation_id, patient_id, site_id, requester_id, state, urgency,"
                     " assigned_expert_id, created_at, updated_at, requested_at, accepted_at)"
                     " VALUES (%s, 'P-A1', 'site-a', %s, 'accepted', 'emergency', %s, now(), now(), now(), now())",
                     (consultation, requester[0], expert[0]))
        conn.execute("INSERT INTO consultation_offers (consultation_id, expert_id, method, offered_at, responded_at,"
                     " outcome) VALUES (%s, %s, 'rules', now() - interval '200 seconds', now(), 'accepted')",
                     (consultation, expert[0]))
        for priority in ("high", "high", "medium"):
            conn.execute(
                "INSERT INTO incidents (incident_id, site_id, patient_id, rule, category, priority, state, alarm_state,"
                " message, raised_at, alarm_changed_at, opened_at, updated_at)"
                " VALUES (%s, 'site-a', 'P-A1', 'news2', 'clinical', %s, 'triggered', 'active', 'x', now(), now(),"
                " now(), now())", (uuid.uuid4(), priority))
    stats = client.get("/api/admin/stats?days=7", headers=bearer(login(client, "admin"))).json()
    assert len(stats["consultations"]) == 7 and stats["consultations"][-1]["count"] == 1
    today = stats["responses"][-1]
    assert today["accepted"] == 1 and today["within_sla"] == 1
    assert today["median_response_s"] == pytest.approx(200, abs=2)
    assert (stats["alerts"][-1]["high"], stats["alerts"][-1]["medium"], stats["alerts"][-1]["low"]) == (2, 1, 0)
    bad = client.get("/api/admin/stats?tz=Mars/Olympus", headers=bearer(login(client, "admin")))
    assert bad.status_code == 422



def test_an_expert_sees_the_patients_of_their_consultations(world: tuple[TestClient, str]) -> None:
    client, url = world
    assert "P-B1" not in {p["patient_id"] for p in overview(client, "expert")["patients"]}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO consultations (patient_id, site_id, requester_id, state, urgency, assigned_expert_id,"
            " created_at, updated_at)"
            " SELECT 'P-B1', 'site-b', r.user_id, 'accepted', 'routine', e.user_id, now(), now()"
            " FROM users r, users e WHERE r.username = 'doc-b' AND e.username = 'expert'")
    seen = overview(client, "expert")
    assert "P-B1" in {p["patient_id"] for p in seen["patients"]}
    assert "P-A2" not in {p["patient_id"] for p in seen["patients"]}  # no consultation of theirs
