"""`GET /api/audit` and `/api/audit/head` against a real PostgreSQL: admins browse by patient, user, event and
time, page through the log, and their browsing is itself audited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from deploy.postgres import PostgresEndpoint
from tests.integration.test_api_support import bearer, login, scratch_database, seed_world
from tests.integration.test_identity_support import identity_client, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def db(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    with scratch_database(postgres) as endpoint:
        seed_world(endpoint.url)
        yield endpoint


@pytest.fixture(scope="module")
def client(db: PostgresEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with identity_client(db.url, tmp_path_factory.mktemp("keys")) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(client: TestClient) -> dict[str, str]:
    """An admin, after doc-a and oncall-a read vitals of patients of site-a (the log to browse)."""
    for user, patients in (("doc-a", ("P-A1", "P-A2", "P-A1")), ("oncall-a", ("P-A2",))):
        headers = bearer(login(client, user))
        for patient_id in patients:
            assert client.get(f"/api/patients/{patient_id}/vitals/latest", headers=headers).status_code == 200
    return bearer(login(client, "admin"))


def test_only_admins_browse_the_audit_log(client: TestClient, admin: dict[str, str]) -> None:
    assert client.get("/api/audit").status_code == 401
    assert client.get("/api/audit/head").status_code == 401
    for name in ("doc-a", "expert", "oncall-a"):
        headers = bearer(login(client, name))
        assert client.get("/api/audit", headers=headers).status_code == 403
        assert client.get("/api/audit/head", headers=headers).status_code == 403


def test_filters_by_patient_user_and_event(client: TestClient, admin: dict[str, str]) -> None:
    by_patient = client.get("/api/audit", params={"patient": "P-A1"}, headers=admin).json()["entries"]
    assert [(e["username"], e["event"]) for e in by_patient] == [("doc-a", "vitals.latest")] * 2
    assert all(len(e["entry_hash"]) == 64 for e in by_patient)
    assert by_patient[0]["seq"] > by_patient[1]["seq"]  # newest first

    by_user = client.get("/api/audit", params={"user": "oncall-a"}, headers=admin).json()["entries"]
    assert [(e["patient_id"], e["event"]) for e in by_user] == [("P-A2", "vitals.latest")]
    user_id = by_user[0]["user_id"]
    assert client.get("/api/audit", params={"user": user_id}, headers=admin).json()["entries"] == by_user

    both = client.get("/api/audit", params={"patient": "P-A2", "user": "doc-a", "event": "vitals.latest"},
                      headers=admin).json()["entries"]
    assert len(both) == 1
    prefixed = client.get("/api/audit", params={"event": "vitals.*", "user": "doc-a"}, headers=admin).json()
    assert len(prefixed["entries"]) == 3
    assert client.get("/api/audit", params={"event": "vitals", "user": "doc-a"},
                      headers=admin).json()["entries"] == []


def test_time_window_and_paging(client: TestClient, admin: dict[str, str], db: PostgresEndpoint) -> None:
    everything = client.get("/api/audit", params={"limit": 1000}, headers=admin).json()["entries"]
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs, reverse=True)

    pages: list[int] = []
    before: int | None = None
    while True:
        params: dict[str, int] = {"limit": 2, **({"before": before} if before is not None else {})}
        page = client.get("/api/audit", params=params, headers=admin).json()
        pages += [e["seq"] for e in page["entries"]]
        before = page["next_before"]
        if before is None:
            break
    # Each page request appends its own audit.browse entry (newer than the cursor): pages never repeat or skip.
    with psycopg.connect(db.url) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM access_log WHERE id <= %s ORDER BY id DESC",
                                                 (pages[0],))]
    assert pages == stored
    assert set(seqs) <= set(pages)

    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert client.get("/api/audit", params={"since": future}, headers=admin).json()["entries"] == []
    assert len(client.get("/api/audit", params={"until": future, "user": "doc-a"},
                          headers=admin).json()["entries"]) == 3
    assert client.get("/api/audit", params={"since": "2024-05-01T08:00:00"}, headers=admin).status_code == 422


def test_browsing_is_audited_and_the_head_matches_verify(
    client: TestClient, admin: dict[str, str], db: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    client.get("/api/audit", params={"patient": "P-A2", "event": "vitals.*"}, headers=admin)
    browses = client.get("/api/audit", params={"event": "audit.browse", "patient": "P-A2"}, headers=admin).json()
    assert browses["entries"][0]["username"] == "admin"
    assert browses["entries"][0]["detail"] == {"event": "vitals.*"}

    head = client.get("/api/audit/head", headers=admin).json()
    status, out, _ = run_cli(["audit", "verify", "--anchor", f"{head['seq']}:{head['entry_hash']}"], url=db.url,
                             monkeypatch=monkeypatch)
    assert status == 0
    assert "audit chain intact" in out
