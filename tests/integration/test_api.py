"""The API's authentication, authorisation, site scoping, audit and vitals endpoints, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from cloud.api import queries
from cloud.api.auth.passwords import verify_password
from cloud.api.downsample import HOUR, MINUTE, QUARTER, RAW, floor_time, plan_buckets
from deploy.postgres import PostgresEndpoint
from proto import news2
from proto.quality import Quality
from tests.integration.test_api_support import (
    USERS,
    Row,
    bearer,
    client_for,
    insert_vitals,
    login,
    minute_floor,
    rebuild_rollups,
    scratch_database,
    seed_world,
)

pytestmark = pytest.mark.integration

NOW = minute_floor(dt.datetime.now(dt.UTC))
HR_START = NOW - dt.timedelta(hours=3)
HR_SECONDS = 3 * 3600 - 60  # 1 Hz heart rate ending a minute before NOW


def heart_rate(i: int) -> float:
    return round(75 + 20 * math.sin(i / 600) + (i * 7919 % 13) / 10, 1)


def hr_quality(i: int) -> int:
    return int(Quality.MOTION) if i % 97 == 0 else 0


def world_rows() -> list[Row]:
    rows: list[Row] = [
        (HR_START + dt.timedelta(seconds=i), "P-A1", "heart_rate", heart_rate(i), "hrm-a1", hr_quality(i))
        for i in range(HR_SECONDS)
    ]
    at = NOW - dt.timedelta(minutes=2)
    rows += [
        (at, "P-A1", "spo2", 93.0, "hrm-a1", 0),
        (at, "P-A1", "respiratory_rate", 22.0, None, int(Quality.MANUAL_ENTRY)),
        (at, "P-A1", "systolic_bp", 105.0, None, 0),
        (at, "P-A1", "body_temperature", 38.4, None, 0),
        (at, "P-A1", "consciousness", 0.0, None, int(Quality.MANUAL_ENTRY)),
        (at, "P-A1", "on_oxygen", 1.0, None, int(Quality.MANUAL_ENTRY)),
        (NOW - dt.timedelta(minutes=4), "P-A2", "heart_rate", 90.0, None, 0),
        (NOW - dt.timedelta(minutes=3), "P-A2", "heart_rate", 250.0, None, int(Quality.MOTION)),
        (at, "P-B1", "heart_rate", 70.0, "hrm-b1", 0),
    ]
    return rows


@pytest.fixture(scope="module")
def db(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    with scratch_database(postgres) as endpoint:
        seed_world(endpoint.url)
        insert_vitals(endpoint.url, world_rows())
        rebuild_rollups(endpoint.url)
        yield endpoint


@pytest.fixture(scope="module")
def client(db: PostgresEndpoint) -> Iterator[TestClient]:
    with client_for(db.url) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tokens(client: TestClient) -> dict[str, str]:
    return {name: login(client, name) for name in ("admin", "doc-a", "doc-b", "expert", "oncall-a", "nobody")}


def get(client: TestClient, token: str, path: str, **params: Any) -> Any:
    return client.get(path, headers=bearer(token), params=params)


# --- authentication --------------------------------------------------------------------------------------------


def _routes(client: TestClient) -> list[tuple[str, str]]:
    spec = client.app.openapi()  # type: ignore[attr-defined]
    found = []
    for path, operations in spec["paths"].items():
        for method in operations:
            concrete = path.replace("{patient_id}", "P-A1").replace("{fhir_id}", "P-A1")
            found.append((method.upper(), concrete))
    return found


def test_every_api_and_fhir_route_refuses_anonymous_requests(client: TestClient) -> None:
    routes = [(m, p) for m, p in _routes(client) if p.startswith(("/api", "/fhir")) and p != "/api/auth/login"]
    assert {("GET", "/api/patients"), ("GET", "/fhir/Observation"), ("POST", "/api/auth/logout")} <= set(routes)
    for method, path in routes:
        response = client.request(method, path, params={"kind": "heart_rate", "patient": "P-A1"})
        assert response.status_code == 401, (method, path, response.text)
        # Edges' uploads authenticate with request signatures, everything else with a user's bearer token.
        scheme = "TelemedEdge" if path.startswith("/api/edge/") else "Bearer"
        assert response.headers["www-authenticate"] == scheme, (method, path)
        bogus = client.request(method, path, headers=bearer("not-a-token"))
        assert bogus.status_code == 401, (method, path)


def test_wrong_roles_are_forbidden(client: TestClient, tokens: dict[str, str]) -> None:
    for method, path in _routes(client):
        if path.startswith(("/api/patients", "/fhir")):
            response = client.request(method, path, headers=bearer(tokens["nobody"]), params={"patient": "P-A1"})
            assert response.status_code == 403, (method, path, response.text)
    # On-call doctors read vitals but do not export FHIR.
    assert get(client, tokens["oncall-a"], "/api/patients").status_code == 200
    assert get(client, tokens["oncall-a"], "/fhir/Patient/P-A1").status_code == 403
    assert get(client, tokens["nobody"], "/api/me").status_code == 200


def test_login_gives_a_bearer_token_and_a_strict_httponly_cookie(client: TestClient) -> None:
    user = USERS["doc-a"]
    response = client.post("/api/auth/login", json={"username": "DOC-A ", "password": user.password})
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == {"user_id": body["user"]["user_id"], "username": "doc-a", "display_name": "Doc-A",
                            "roles": ["county_doctor"], "site_id": "site-a"}
    cookie = response.headers["set-cookie"]
    assert "telemed_session=" in cookie and "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    me = client.get("/api/me")  # the cookie alone authenticates the dashboard
    assert me.status_code == 200 and me.json()["username"] == "doc-a"
    client.cookies.clear()
    assert client.get("/api/me").status_code == 401
    assert get(client, body["token"], "/api/me").json()["username"] == "doc-a"


def test_wrong_passwords_and_unknown_users_fail_alike(client: TestClient) -> None:
    wrong = client.post("/api/auth/login", json={"username": "expert", "password": "nope"})
    unknown = client.post("/api/auth/login", json={"username": "ghost", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    missing = client.post("/api/auth/login", json={"username": "expert"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "password"]


def test_password_hashes_are_not_the_passwords(db: PostgresEndpoint) -> None:
    with psycopg.connect(db.url) as conn:
        rows = conn.execute("SELECT username, password_hash FROM users").fetchall()
    assert len(rows) == len(USERS)
    for username, stored in rows:
        password = USERS[username].password
        assert password not in stored and stored.startswith("scrypt$16384$8$1$")
        assert verify_password(password, stored)


def test_login_is_throttled_per_username_and_address(client: TestClient, db: PostgresEndpoint) -> None:
    user = USERS["throttled"]
    for _ in range(5):
        assert client.post("/api/auth/login", json={"username": user.username, "password": "x"}).status_code == 401
    blocked = client.post("/api/auth/login", json={"username": user.username, "password": user.password})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["retry-after"]) <= 15 * 60
    # Another address is not blocked, and neither is another user from this address.
    elsewhere = TestClient(client.app, client=("203.0.113.9", 50000))  # shares the running app's lifespan
    assert elsewhere.post("/api/auth/login", json={"username": user.username,
                                                   "password": user.password}).status_code == 200
    assert login(client, "expert")
    # Once the failures leave the window the pair may log in again, and a success clears them.
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("UPDATE login_attempts SET at = at - interval '16 minutes' WHERE username = %s", (user.username,))
    assert login(client, user.username)
    with psycopg.connect(db.url) as conn:
        assert conn.execute("SELECT count(*) FROM login_attempts WHERE username = %s",
                            (user.username,)).fetchone() == (0,)


def test_logout_revokes_only_that_session(client: TestClient) -> None:
    first, second = login(client, "leaver"), login(client, "leaver")
    assert client.post("/api/auth/logout", headers=bearer(first)).status_code == 204
    assert get(client, first, "/api/me").status_code == 401
    assert get(client, second, "/api/me").status_code == 200


def test_revoked_expired_and_disabled_sessions_stop_working(client: TestClient, db: PostgresEndpoint) -> None:
    revoked, expired, disabled = login(client, "leaver"), login(client, "leaver"), login(client, "doc-b")
    from cloud.api.auth.tokens import token_hash

    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("UPDATE sessions SET revoked_at = now() WHERE token_hash = %s", (token_hash(revoked),))
        conn.execute("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE token_hash = %s",
                     (token_hash(expired),))
        stored = conn.execute("SELECT count(*) FROM sessions WHERE token_hash = %s OR token_hash::text LIKE %s",
                              (token_hash(revoked), f"%{revoked}%")).fetchone()
        assert stored == (1,)  # found by hash only: the token itself is never stored
        conn.execute("UPDATE users SET disabled = true WHERE username = 'doc-b'")
        try:
            assert get(client, revoked, "/api/me").status_code == 401
            assert get(client, expired, "/api/me").status_code == 401
            assert get(client, disabled, "/api/me").status_code == 401
        finally:
            conn.execute("UPDATE users SET disabled = false WHERE username = 'doc-b'")


# --- scoping and audit ---------------------------------------------------------------------------------------------


def patient_ids(client: TestClient, token: str) -> list[str]:
    response = get(client, token, "/api/patients")
    assert response.status_code == 200
    return [p["patient_id"] for p in response.json()["patients"]]


def test_site_scoping_of_the_patient_list(client: TestClient, tokens: dict[str, str]) -> None:
    assert patient_ids(client, tokens["doc-a"]) == ["P-A1", "P-A2"]
    assert patient_ids(client, tokens["doc-b"]) == ["P-B1"]
    assert patient_ids(client, tokens["oncall-a"]) == ["P-A1", "P-A2"]
    assert patient_ids(client, tokens["expert"]) == []  # an expert sees only their consultations' patients
    assert patient_ids(client, tokens["admin"]) == ["P-A1", "P-A2", "P-B1"]


@pytest.mark.parametrize(("path", "params"), [("/vitals/latest", {}), ("/vitals", {"kind": "heart_rate"}),
                                              ("/news2", {})])
def test_another_sites_patient_is_not_found_like_an_unknown_one(
    client: TestClient, tokens: dict[str, str], path: str, params: dict[str, str]
) -> None:
    other = get(client, tokens["doc-a"], f"/api/patients/P-B1{path}", **params)
    unknown = get(client, tokens["doc-a"], f"/api/patients/P-ZZ{path}", **params)
    assert other.status_code == unknown.status_code == 404
    assert other.json() == unknown.json()
    assert get(client, tokens["doc-b"], f"/api/patients/P-B1{path}", **params).status_code == 200


def test_reads_of_patient_data_are_audited(client: TestClient, tokens: dict[str, str], db: PostgresEndpoint) -> None:
    with psycopg.connect(db.url) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM access_log").fetchone()
    get(client, tokens["doc-a"], "/api/patients/P-A1/vitals/latest")
    get(client, tokens["doc-a"], "/api/patients")
    get(client, tokens["doc-a"], "/api/patients/P-B1/vitals/latest")  # refused: nothing read, nothing logged
    with psycopg.connect(db.url) as conn:
        rows = conn.execute("SELECT username, event, patient_id FROM access_log WHERE id > %s ORDER BY id",
                            before).fetchall()
    assert rows == [("doc-a", "vitals.latest", "P-A1"), ("doc-a", "patients.list", "P-A1"),
                    ("doc-a", "patients.list", "P-A2")]


# --- vitals ---------------------------------------------------------------------------------------------------


def test_latest_vitals_carry_units_quality_and_display_names(client: TestClient, tokens: dict[str, str]) -> None:
    body = get(client, tokens["doc-a"], "/api/patients/P-A2/vitals/latest").json()
    [hr] = body["vitals"]
    assert hr["kind"] == "heart_rate" and hr["value"] == 250.0 and hr["unit"] == "/min"
    assert hr["quality_names"] == ["motion"] and hr["display_zh"] == "心率" and hr["display_en"] == "Heart rate"
    assert hr["loinc"] == "8867-4"
    assert dt.datetime.fromisoformat(hr["time"]) == NOW - dt.timedelta(minutes=3)
    kinds = {v["kind"] for v in get(client, tokens["doc-a"], "/api/patients/P-A1/vitals/latest").json()["vitals"]}
    assert kinds == {"heart_rate", "spo2", "respiratory_rate", "systolic_bp", "body_temperature", "consciousness",
                     "on_oxygen"}


def test_the_patient_list_scores_news2_from_clean_recent_values(client: TestClient, tokens: dict[str, str]) -> None:
    patients = {p["patient_id"]: p for p in get(client, tokens["doc-a"], "/api/patients").json()["patients"]}
    last = HR_SECONDS - 1
    last_clean = next(i for i in range(last, 0, -1) if not hr_quality(i))
    expected = news2.score(respiratory_rate=22, spo2=93, on_oxygen=True, temperature=38.4, systolic_bp=105,
                           heart_rate=heart_rate(last_clean), consciousness="A")
    full = patients["P-A1"]["news2"]
    assert (full["total"], full["risk"], full["complete"]) == (expected.total, expected.risk, True)
    assert full["subscores"] == expected.subscores
    # P-A2's newest heart rate is a motion artefact: the score uses the clean one before it, and is partial.
    partial = patients["P-A2"]["news2"]
    assert partial["complete"] is False and partial["subscores"]["heart_rate"] == 0
    assert "spo2" in partial["missing"]
    assert patients["P-A2"]["latest"][0]["value"] == 250.0  # the list still shows what was measured


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"kind": "pulse"}, "kind"),
        ({}, "kind"),
        ({"kind": "heart_rate", "start": "2024-05-01T08:00:00"}, "start"),
        ({"kind": "heart_rate", "start": "2024-05-02T00:00:00Z", "end": "2024-05-01T00:00:00Z"}, "end"),
        ({"kind": "heart_rate", "max_points": "0"}, "max_points"),
        ({"kind": "heart_rate", "end": "tomorrow"}, "end"),
    ],
)
def test_validation_errors_are_422_naming_the_field(
    client: TestClient, tokens: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = get(client, tokens["doc-a"], "/api/patients/P-A1/vitals", **params)
    assert response.status_code == 422, response.text
    assert field in [e["loc"][-1] for e in response.json()["detail"]]


def direct_aggregate(
    db: PostgresEndpoint, start: dt.datetime, end: dt.datetime, width_s: float
) -> list[tuple[Any, ...]]:
    """The reference answer: a plain GROUP BY over the raw rows, independent of date_bin and the rollups."""
    with psycopg.connect(db.url) as conn:
        return conn.execute(
            "SELECT to_timestamp(floor(extract(epoch FROM time) / %(w)s) * %(w)s) AS b, min(value), max(value),"
            " avg(value), count(*) FROM vitals WHERE patient_id = 'P-A1' AND kind_id = 1"
            " AND time >= %(s)s AND time < %(e)s GROUP BY 1 ORDER BY 1",
            {"w": width_s, "s": start, "e": end},
        ).fetchall()


@pytest.mark.parametrize(
    ("span", "max_points", "source"),
    [(dt.timedelta(minutes=20), 1000, "raw"), (dt.timedelta(hours=3), 100, "1m"), (dt.timedelta(hours=3), 12, "15m"),
     (dt.timedelta(hours=3), 2, "1h")],
)
def test_downsampled_buckets_equal_a_direct_aggregate_of_raw_rows(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint, span: dt.timedelta, max_points: int,
    source: str,
) -> None:
    end = NOW - dt.timedelta(seconds=17)
    response = get(client, tokens["doc-a"], "/api/patients/P-A1/vitals", kind="heart_rate",
                   start=(end - span).isoformat(), end=end.isoformat(), max_points=max_points)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == source and body["unit"] == "/min"
    assert 0 < len(body["buckets"]) <= max_points
    expected = direct_aggregate(db, dt.datetime.fromisoformat(body["start"]), dt.datetime.fromisoformat(body["end"]),
                                body["bucket_seconds"])
    got = [(dt.datetime.fromisoformat(b["start"]), b["min"], b["max"], b["avg"], b["count"]) for b in body["buckets"]]
    assert [g[0] for g in got] == [e[0] for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g[1:3] == e[1:3] and g[4] == e[4]
        assert g[3] == pytest.approx(e[3], rel=1e-12)


def test_rollup_based_answers_equal_raw_based_ones(db: PostgresEndpoint) -> None:
    hour = dt.timedelta(hours=1)
    start, end = floor_time(HR_START, hour) - hour, floor_time(NOW, hour) + 2 * hour

    async def answers() -> list[list[queries.Bucket]]:
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
            result = []
            for source in (RAW, MINUTE, QUARTER, HOUR):
                plan = plan_buckets(start, end, 10, source=source)
                assert plan.width == hour and (plan.data_start, plan.data_end) == (start, end)
                result.append(await queries.series(conn, plan, patient_id="P-A1", kind_id=1))
            return result

    raw, by_minute, by_quarter, by_hour = asyncio.run(answers())
    assert len(raw) in (3, 4)  # three hours of samples over three or four clock hours
    for other in (by_minute, by_quarter, by_hour):
        assert [(b.start, b.min, b.max, b.sample_count) for b in other] == [
            (b.start, b.min, b.max, b.sample_count) for b in raw
        ]
        assert [b.avg for b in other] == pytest.approx([b.avg for b in raw], rel=1e-12)
    assert all(b.start == floor_time(b.start, hour) for b in raw)


def test_news2_history_scores_each_minute_from_the_rollups(client: TestClient, tokens: dict[str, str]) -> None:
    start, end = NOW - dt.timedelta(minutes=30), NOW
    body = get(client, tokens["doc-a"], "/api/patients/P-A1/news2", start=start.isoformat(),
               end=end.isoformat()).json()
    assert body["step_seconds"] == 60
    points = {dt.datetime.fromisoformat(p["time"]): p for p in body["points"]}
    assert sorted(points) == [start + dt.timedelta(minutes=m) for m in range(1, 31)]
    # Before the manual observations only the heart rate is known: partial scores.
    early = points[NOW - dt.timedelta(minutes=10)]
    assert early["complete"] is False and "spo2" in early["missing"]
    # From the minute after they were charted the set is complete; the heart rate is that minute's mean.
    final = points[NOW]
    assert final["complete"] is True
    minute = range(HR_SECONDS - 60, HR_SECONDS)
    expected = news2.score(respiratory_rate=22, spo2=93, on_oxygen=True, temperature=38.4, systolic_bp=105,
                           heart_rate=sum(heart_rate(i) for i in minute) / 60, consciousness="A")
    assert (final["total"], final["subscores"]) == (expected.total, expected.subscores)
    huge = get(client, tokens["doc-a"], "/api/patients/P-A1/news2", start=(NOW - dt.timedelta(days=7)).isoformat(),
               end=NOW.isoformat(), max_points=100)
    assert huge.status_code == 200 and huge.json()["step_seconds"] == 7200


def test_no_audit_record_means_no_data(client: TestClient, tokens: dict[str, str], db: PostgresEndpoint) -> None:
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN RAISE EXCEPTION 'audit store unavailable'; END $$")
        conn.execute("CREATE TRIGGER refuse_audit BEFORE INSERT ON access_log"
                     " FOR EACH ROW EXECUTE FUNCTION refuse_audit()")
        try:
            failing = TestClient(client.app, raise_server_exceptions=False)  # shares the running app
            for path, params in (("/api/patients/P-A1/vitals", {"kind": "heart_rate"}),
                                 ("/api/patients/P-A1/vitals/latest", {}), ("/api/patients", {})):
                response = failing.get(path, params=params, headers=bearer(tokens["doc-a"]))
                assert response.status_code == 500, path
                assert "heart_rate" not in response.text
        finally:
            conn.execute("DROP TRIGGER refuse_audit ON access_log")
            conn.execute("DROP FUNCTION refuse_audit()")
