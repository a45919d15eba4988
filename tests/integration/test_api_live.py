"""WS /api/live against a real PostgreSQL: NOTIFY-driven updates, site scoping, handshake authentication."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from cloud.api.auth.tokens import token_hash
from deploy.postgres import PostgresEndpoint
from tests.integration.test_api_support import client_for, login, scratch_database, seed_world

pytestmark = pytest.mark.integration

PROTOCOL = "telemed.live.v1"


@pytest.fixture(scope="module")
def db(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    with scratch_database(postgres) as endpoint:
        seed_world(endpoint.url)
        yield endpoint


@pytest.fixture(scope="module")
def client(db: PostgresEndpoint) -> Iterator[TestClient]:
    with client_for(db.url, live_revalidate_s=0.3) as test_client:
        yield test_client


def notify(db: PostgresEndpoint, channel: str, payload: dict[str, object]) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, json.dumps(payload)))


def vitals(patient: str, site: str, value: float) -> dict[str, object]:
    return {"patient_id": patient, "site_id": site,
            "latest": {"heart_rate": {"time": "2024-05-01T08:00:00Z", "value": value, "quality": 0}}}


def test_an_allowed_patients_update_arrives_and_another_sites_does_not(
    client: TestClient, db: PostgresEndpoint
) -> None:
    token = login(client, "doc-a")
    with client.websocket_connect("/api/live", subprotocols=[PROTOCOL, f"bearer.{token}"]) as ws:
        assert ws.accepted_subprotocol == PROTOCOL  # the token is never echoed back
        notify(db, "telemed_vitals", vitals("P-B1", "site-b", 66.0))
        notify(db, "telemed_events", {"type": "alert", "edge_id": "e-b", "site_id": "site-b",
                                      "body": {"patient_id": "P-B1", "rule": "news2"}})
        notify(db, "telemed_vitals", vitals("P-A1", "site-a", 72.0))
        notify(db, "telemed_events", {"type": "device_status", "edge_id": "e-a", "site_id": "site-a",
                                      "body": {"device_id": "hrm-a1", "state": "connected"}})
        first, second = ws.receive_json(), ws.receive_json()
    # Notifications arrive in commit order: had site B's been forwarded, it would have come first.
    assert first == {"type": "vitals", "patient_id": "P-A1", "site_id": "site-a", "latest": {"heart_rate": {
        "time": "2024-05-01T08:00:00Z", "value": 72.0, "unit": "/min", "quality": 0, "quality_names": []}}}
    assert second["type"] == "event" and second["event_type"] == "device_status" and second["site_id"] == "site-a"
    with psycopg.connect(db.url) as conn:
        audited = conn.execute(
            "SELECT username, event, patient_id FROM access_log WHERE event = 'live.read' AND username = 'doc-a'"
        ).fetchall()
    assert audited == [("doc-a", "live.read", "P-A1")]


def test_an_expert_sees_only_the_patients_of_their_consultations(client: TestClient, db: PostgresEndpoint) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO consultations (patient_id, site_id, requester_id, state, assigned_expert_id)"
            " SELECT 'P-B1', 'site-b', r.user_id, 'accepted', e.user_id FROM users r, users e"
            " WHERE r.username = 'doc-b' AND e.username = 'expert'"
        )
    try:
        token = login(client, "expert")
        with client.websocket_connect("/api/live", subprotocols=[PROTOCOL, f"bearer.{token}"]) as ws:
            notify(db, "telemed_vitals", vitals("P-A2", "site-a", 62.0))
            notify(db, "telemed_vitals", vitals("P-B2", "site-b", 63.0))
            notify(db, "telemed_vitals", vitals("P-B1", "site-b", 61.0))
            # In commit order: had either other patient been forwarded, it would have come first.
            assert ws.receive_json()["patient_id"] == "P-B1"
    finally:
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("DELETE FROM consultations WHERE patient_id = 'P-B1'")


def refusal(client: TestClient, path: str, **options: Any) -> int:
    """The HTTP status a refused handshake answers with."""
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(path, **options):
        pass
    status: int = denied.value.status_code
    return status


def test_the_handshake_requires_a_session_and_a_role(client: TestClient) -> None:
    assert refusal(client, "/api/live", subprotocols=[PROTOCOL]) == 401
    assert refusal(client, "/api/live", subprotocols=[PROTOCOL, "bearer.not-a-token"]) == 401
    token = login(client, "nobody")
    assert refusal(client, "/api/live", subprotocols=[PROTOCOL, f"bearer.{token}"]) == 403


def test_a_token_in_the_query_string_is_not_accepted(client: TestClient) -> None:
    token = login(client, "doc-a")
    assert refusal(client, f"/api/live?token={token}&access_token={token}") == 401


def test_the_dashboard_cookie_works_only_from_the_same_origin(client: TestClient) -> None:
    token = login(client, "doc-a")
    cookie = {"cookie": f"telemed_session={token}"}
    with client.websocket_connect("/api/live", headers={**cookie, "origin": "http://testserver"}) as ws:
        assert ws.accepted_subprotocol is None
    assert refusal(client, "/api/live", headers={**cookie, "origin": "https://evil.example"}) == 401


def test_revoking_the_session_closes_the_socket(client: TestClient, db: PostgresEndpoint) -> None:
    token = login(client, "oncall-a")
    with client.websocket_connect("/api/live", subprotocols=[PROTOCOL, f"bearer.{token}"]) as ws:
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("UPDATE sessions SET revoked_at = now() WHERE token_hash = %s", (token_hash(token),))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4401
