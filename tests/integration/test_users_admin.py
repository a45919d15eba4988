"""User management and expert profiles against a real PostgreSQL: admin-only routes, sessions revoked when
rights change, lock-out protection, credentials set by admins and duty status set by experts, all audited."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from cloud.api.auth.models import Role, User
from cloud.users import service
from deploy.postgres import PostgresEndpoint
from tests.integration.test_api_support import bearer, login, scratch_database, seed_world
from tests.integration.test_identity_support import identity_client

pytestmark = pytest.mark.integration

PROFILE = {"specialties": ["cardiology", "critical_care"], "icd10_prefixes": ["i2", "I50", "I21.0"],
           "title": "associate_chief", "years_practice": 14, "licence_region": "440000"}


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
    return bearer(login(client, "admin"))


def create(client: TestClient, admin: dict[str, str], **body: Any) -> Any:
    body.setdefault("password", "correct horse battery")
    return client.post("/api/admin/users", json=body, headers=admin)


def login_as(client: TestClient, username: str, password: str) -> int:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    client.cookies.clear()
    status: int = response.status_code
    return status


def token_of(client: TestClient, username: str, password: str) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    client.cookies.clear()
    assert response.status_code == 200, response.text
    return bearer(response.json()["token"])


def test_only_admins_manage_users(client: TestClient) -> None:
    assert client.get("/api/admin/users").status_code == 401
    for name in ("doc-a", "expert", "oncall-a", "nobody"):
        headers = bearer(login(client, name))
        assert client.get("/api/admin/users", headers=headers).status_code == 403
        assert client.post("/api/admin/users", json={"username": "x"}, headers=headers).status_code == 403
        assert client.delete(f"/api/admin/users/{'0' * 8}-0000-4000-8000-{'0' * 12}/sessions",
                             headers=headers).status_code == 403


def test_an_admin_creates_lists_and_reads_users(client: TestClient, admin: dict[str, str],
                                                db: PostgresEndpoint) -> None:
    created = create(client, admin, username="Dr.Wang", display_name="王医生", roles=["county_doctor", "on_call"],
                     site_id="site-a")
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["username"], body["roles"], body["site_id"], body["disabled"]) == (
        "dr.wang", ["county_doctor", "on_call"], "site-a", False)
    assert login_as(client, "dr.wang", "correct horse battery") == 200

    listed = client.get("/api/admin/users", params={"role": "county_doctor", "site": "site-a"}, headers=admin)
    assert [u["username"] for u in listed.json()["users"]] == ["doc-a", "dr.wang"]
    page = client.get("/api/admin/users", params={"limit": 2}, headers=admin).json()
    assert len(page["users"]) == 2 and page["next_after"] == page["users"][-1]["username"]
    rest = client.get("/api/admin/users", params={"after": page["next_after"], "limit": 500}, headers=admin).json()
    assert not {u["username"] for u in rest["users"]} & {u["username"] for u in page["users"]}
    assert client.get("/api/admin/users", params={"q": "王医"}, headers=admin).json()["users"][0]["username"] == \
        "dr.wang"
    assert client.get(f"/api/admin/users/{body['user_id']}", headers=admin).json()["live_sessions"] == 1

    with psycopg.connect(db.url) as conn:
        audited = conn.execute("SELECT event, entity, entity_id, detail FROM access_log WHERE event = 'user.create'"
                               " AND entity_id = %s", (body["user_id"],)).fetchall()
    assert len(audited) == 1
    assert "correct horse" not in str(audited)


@pytest.mark.parametrize(("body", "field", "status"), [
    ({"username": "doc-a", "roles": ["expert"]}, None, 409),
    ({"username": "newdoc", "roles": ["county_doctor"]}, "site_id", 422),
    ({"username": "newdoc", "roles": ["county_doctor"], "site_id": "site-z"}, "site_id", 422),
    ({"username": "bad name", "roles": ["expert"]}, "username", 422),
    ({"username": "newdoc", "roles": ["expert"], "password": "short"}, "password", 422),
    ({"username": "newdoc", "roles": ["surgeon"]}, None, 422),
])
def test_invalid_users_are_refused(client: TestClient, admin: dict[str, str], body: dict[str, Any],
                                   field: str | None, status: int) -> None:
    response = create(client, admin, **body)
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["detail"][0]["loc"][-1] == field


def test_changing_rights_logs_the_user_out_and_disabling_locks_them_out(client: TestClient,
                                                                         admin: dict[str, str]) -> None:
    user_id = create(client, admin, username="temp.doc", roles=["county_doctor"], site_id="site-a").json()["user_id"]
    session = token_of(client, "temp.doc", "correct horse battery")
    assert client.get("/api/me", headers=session).status_code == 200

    renamed = client.patch(f"/api/admin/users/{user_id}", json={"display_name": "临时医生"}, headers=admin)
    assert renamed.status_code == 200
    assert client.get("/api/me", headers=session).status_code == 200  # a new name changes no rights

    moved = client.patch(f"/api/admin/users/{user_id}", json={"site_id": "site-b"}, headers=admin)
    assert (moved.status_code, moved.json()["site_id"]) == (200, "site-b")
    assert client.get("/api/me", headers=session).status_code == 401
    assert client.patch(f"/api/admin/users/{user_id}", json={"site_id": None}, headers=admin).status_code == 422

    session = token_of(client, "temp.doc", "correct horse battery")
    disabled = client.patch(f"/api/admin/users/{user_id}", json={"disabled": True}, headers=admin)
    assert disabled.json()["disabled"] is True
    assert client.get("/api/me", headers=session).status_code == 401
    assert login_as(client, "temp.doc", "correct horse battery") == 401
    client.patch(f"/api/admin/users/{user_id}", json={"disabled": False}, headers=admin)
    assert login_as(client, "temp.doc", "correct horse battery") == 200


def test_password_reset_and_session_revocation(client: TestClient, admin: dict[str, str]) -> None:
    user_id = create(client, admin, username="reset.me", roles=["expert"]).json()["user_id"]
    first, second = (token_of(client, "reset.me", "correct horse battery") for _ in range(2))
    revoked = client.delete(f"/api/admin/users/{user_id}/sessions", headers=admin)
    assert revoked.json() == {"revoked": 2}
    assert client.get("/api/me", headers=first).status_code == 401
    assert client.get("/api/me", headers=second).status_code == 401

    session = token_of(client, "reset.me", "correct horse battery")
    reset = client.post(f"/api/admin/users/{user_id}/password", json={"password": "new long passphrase"},
                        headers=admin)
    assert reset.status_code == 204
    assert client.get("/api/me", headers=session).status_code == 401
    assert login_as(client, "reset.me", "correct horse battery") == 401
    assert login_as(client, "reset.me", "new long passphrase") == 200
    assert client.get(f"/api/admin/users/{user_id}", headers=admin).json()["password_changed_at"] is not None
    assert client.post(f"/api/admin/users/{user_id}/password", json={"password": "tiny"},
                       headers=admin).status_code == 422
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.post(f"/api/admin/users/{missing}/password", json={"password": "long enough passphrase"},
                       headers=admin).status_code == 404


def test_admins_cannot_lock_everyone_out(client: TestClient, admin: dict[str, str], db: PostgresEndpoint) -> None:
    me = client.get("/api/me", headers=admin).json()["user_id"]
    assert client.patch(f"/api/admin/users/{me}", json={"disabled": True}, headers=admin).status_code == 409
    assert client.patch(f"/api/admin/users/{me}", json={"roles": ["expert"]}, headers=admin).status_code == 409
    second = create(client, admin, username="admin2", roles=["admin"]).json()["user_id"]
    other = token_of(client, "admin2", "correct horse battery")
    assert client.patch(f"/api/admin/users/{second}", json={"roles": ["expert"]}, headers=admin).status_code == 200
    assert client.get("/api/me", headers=other).status_code == 401

    # admin2's request that was already past authentication when it lost its role (two admins demoting each
    # other at once) finds `admin` to be the last enabled admin, and is refused.
    stale = User(user_id=uuid.UUID(second), username="admin2", display_name="", roles=frozenset({Role.ADMIN}),
                 site_id=None)

    async def demote_last() -> None:
        async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as conn:
            await service.update_user(conn, admin=stale, user_id=uuid.UUID(me), changes={"disabled": True})

    with pytest.raises(service.UserConflictError, match="last enabled admin"):
        asyncio.run(demote_last())
    assert client.get("/api/me", headers=admin).status_code == 200


def test_expert_profiles_credentials_by_admins_availability_by_experts(
    client: TestClient, admin: dict[str, str], db: PostgresEndpoint,
) -> None:
    expert_id = create(client, admin, username="dr.li", roles=["expert"]).json()["user_id"]
    expert = token_of(client, "dr.li", "correct horse battery")
    assert client.get("/api/me/profile", headers=expert).status_code == 404  # credentials come first

    put = client.put(f"/api/admin/users/{expert_id}/profile", json=PROFILE, headers=admin)
    assert put.status_code == 200, put.text
    profile = put.json()
    assert profile["icd10_prefixes"] == ["I2", "I50", "I21.0"]
    assert (profile["title_zh"], profile["title_en"]) == ("副主任医师", "Associate chief physician")
    assert (profile["languages"], profile["on_duty"], profile["online"]) == (["zh"], False, False)

    mine = client.put("/api/me/profile", json={"languages": ["zh", "yue", "en"], "max_concurrent": 4,
                                               "on_duty": True, "online": True}, headers=expert)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["languages"], mine.json()["on_duty"], mine.json()["specialties"]) == (
        ["zh", "yue", "en"], True, ["cardiology", "critical_care"])
    assert mine.json()["status_changed_at"] > profile["status_changed_at"]
    # Experts do not set their own credentials.
    assert client.put("/api/me/profile", json={**PROFILE, "languages": ["zh"], "max_concurrent": 4,
                                               "on_duty": True, "online": True}, headers=expert).status_code == 422
    assert client.get("/api/me/profile", headers=expert).json()["title"] == "associate_chief"

    # Taking the expert role away takes them off duty (matching must not offer them consultations).
    client.patch(f"/api/admin/users/{expert_id}", json={"roles": ["on_call"]}, headers=admin)
    with psycopg.connect(db.url) as conn:
        assert conn.execute("SELECT on_duty, online FROM expert_profiles WHERE user_id = %s",
                            (expert_id,)).fetchone() == (False, False)
        events = [r[0] for r in conn.execute("SELECT event FROM access_log WHERE entity_id = %s ORDER BY id",
                                             (expert_id,)).fetchall()]
    assert events == ["user.create", "expert.profile.credentials", "expert.profile.availability", "user.update"]


@pytest.mark.parametrize(("change", "field"), [
    ({"specialties": ["astrology"]}, "specialties"), ({"specialties": []}, "specialties"),
    ({"icd10_prefixes": ["I2x"]}, "icd10_prefixes"), ({"title": "professor"}, "title"),
    ({"licence_region": "440300"}, "licence_region"), ({"years_practice": 90}, "years_practice"),
    ({"availability": {"languages": ["klingon"], "max_concurrent": 2, "on_duty": False, "online": False}},
     "languages"),
])
def test_invalid_profiles_are_refused(client: TestClient, admin: dict[str, str], change: dict[str, Any],
                                      field: str) -> None:
    expert_id = next(u["user_id"] for u in client.get("/api/admin/users", params={"role": "expert"},
                                                         headers=admin).json()["users"] if u["username"] == "expert")
    response = client.put(f"/api/admin/users/{expert_id}/profile", json={**PROFILE, **change}, headers=admin)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field


def test_only_experts_have_profiles(client: TestClient, admin: dict[str, str]) -> None:
    doctor_id = next(u["user_id"] for u in client.get("/api/admin/users", params={"q": "doc-a"},
                                                         headers=admin).json()["users"])
    assert client.put(f"/api/admin/users/{doctor_id}/profile", json=PROFILE, headers=admin).status_code == 422
    doctor = bearer(login(client, "doc-a"))
    assert client.get("/api/me/profile", headers=doctor).status_code == 403


def test_everyone_logged_in_reads_the_specialty_list(client: TestClient) -> None:
    assert client.get("/api/specialties").status_code == 401
    listed = client.get("/api/specialties", headers=bearer(login(client, "doc-b"))).json()["specialties"]
    by_code = {s["code"]: s for s in listed}
    assert by_code["cardiology"]["name_zh"] == "心血管内科"
    assert by_code["respiratory"]["name_en"] == "Respiratory medicine"
    assert len(listed) >= 30
