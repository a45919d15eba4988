"""Every route of the cloud app, called as every role, as users of another site and anonymously, against the
expectations of tests/integration/access_rules.py: no read or write that should be refused gets through.

The routes are taken from the app itself (`app.routes`), so a route added later without a rule in
access_rules.py fails `test_every_route_has_an_access_rule`, and the walk covers it once the rule exists.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from cloud.dicomweb.store import FileObjectStore
from deploy.postgres import PostgresEndpoint
from devices.modality import generate_ct_study
from tests.integration.access_rules import (
    ACTOR_ROLES,
    ACTORS,
    ANONYMOUS,
    ANY_USER,
    PROFILE,
    RULES,
    SITES,
    DicomIds,
    Rule,
)
from tests.integration.test_api_support import bearer, insert_vitals, login, scratch_database, seed_world
from tests.integration.test_dicomweb_support import Archive
from tests.integration.test_identity_support import dicom_dir_for, identity_client, national_id

try:  # Starlette >= 0.37 reports a refused handshake's HTTP answer as an exception of its own
    from starlette.testclient import WebSocketDenialResponse
except ImportError:  # pragma: no cover - older Starlette closes instead
    WebSocketDenialResponse = WebSocketDisconnect  # type: ignore[misc,assignment]

pytestmark = pytest.mark.integration

_PARAM = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?}")
PATIENT_OF = {"site-a": "P-A1", "site-b": "P-B1"}
DEVICE_OF = {"site-a": "hrm-a1", "site-b": "hrm-b1"}
NATIONAL_ID_OF = {"site-a": national_id("44010619700101301"), "site-b": national_id("44010619700202402")}


def route_keys(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves; WebSockets as "WS", HEAD folded into GET."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.16x: included routers stay lazy
        pairs = [(ctx.original_route, ctx.path or "") for ctx in iter_route_contexts(app.routes)]
    except ImportError:  # pragma: no cover - older FastAPI flattens routes itself
        pairs = [(route, str(getattr(route, "path", ""))) for route in app.routes]
    keys: list[tuple[str, str]] = []
    for route, path in pairs:
        if isinstance(route, APIWebSocketRoute | WebSocketRoute):
            keys.append(("WS", path))
            continue
        methods = getattr(route, "methods", None)
        if not methods:
            keys.append(("ANY", path))  # a mount or another route kind: it needs a rule too
            continue
        keys.extend((method, path) for method in sorted(set(methods) - {"HEAD"}))
    return list(dict.fromkeys(keys))  # a router included twice serves each route once


@dataclass
class SeededWorld:
    """The resources the walk calls routes on (access_rules.World)."""

    victim_user_id: str
    victim_expert_id: str
    dicom_ids: dict[str, DicomIds]
    consultation_ids: dict[str, str]

    def patient(self, site: str) -> str:
        return PATIENT_OF[site]

    def device(self, site: str) -> str:
        return DEVICE_OF[site]

    def national_id(self, site: str) -> str:
        return NATIONAL_ID_OF[site]

    def dicom(self, site: str) -> DicomIds:
        return self.dicom_ids[site]

    def consultation(self, site: str) -> str:
        return self.consultation_ids[site]


@dataclass
class Walk:
    client: TestClient
    world: SeededWorld
    conn: psycopg.Connection[Any]
    user_ids: dict[str, str]

    def token(self, actor: str) -> str:
        """A fresh session for `actor` (inserted directly: a route may revoke the one it was called with)."""
        token = secrets.token_urlsafe(32)
        self.conn.execute("INSERT INTO sessions (token_hash, user_id, expires_at) VALUES (%s, %s, now() + interval"
                          " '1 hour')", (hashlib.sha256(token.encode()).digest(), self.user_ids[actor]))
        return token


@pytest.fixture(scope="module")
def walk(postgres: PostgresEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    with scratch_database(postgres) as db:
        seed_world(db.url)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        insert_vitals(db.url, [(now - dt.timedelta(minutes=m), patient, "heart_rate", 70.0 + m, None, 0)
                               for m in range(1, 4) for patient in PATIENT_OF.values()])
        keys_dir = tmp_path_factory.mktemp("keys")
        with identity_client(db.url, keys_dir) as client, psycopg.connect(db.url, autocommit=True) as conn:
            yield Walk(client=client, world=_seed(client, db.url, dicom_dir_for(keys_dir)), conn=conn,
                       user_ids=_user_ids(db.url))


def _user_ids(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return {name: str(user_id) for name, user_id in conn.execute("SELECT username, user_id FROM users")}


def _seed(client: TestClient, url: str, dicom_dir: Path) -> SeededWorld:
    doctors = {"site-a": bearer(login(client, "doc-a")), "site-b": bearer(login(client, "doc-b"))}
    for site, headers in doctors.items():
        registered = client.post("/api/patients", headers=headers, json={
            "patient_id": PATIENT_OF[site], "name": f"病人{site[-1]}", "national_id": NATIONAL_ID_OF[site]})
        assert registered.status_code == 201, registered.text

    admin = bearer(login(client, "admin"))
    victim = client.post("/api/admin/users", headers=admin, json={
        "username": "victim", "password": "victim passphrase", "roles": ["on_call"], "site_id": "site-a"})
    victim_expert = client.post("/api/admin/users", headers=admin, json={
        "username": "victim.expert", "password": "victim passphrase", "roles": ["expert"]})
    user_ids = _user_ids(url)
    for expert in (victim_expert.json()["user_id"], user_ids["expert"]):
        assert client.put(f"/api/admin/users/{expert}/profile", json=PROFILE, headers=admin).status_code == 200

    archive = Archive(url, FileObjectStore(dicom_dir, fsync=False))  # the app's own store directory
    dicom_ids = {}
    for index, site in enumerate(SITES):
        study = generate_ct_study(slices=1, rows=32, columns=32, seed=40 + index)
        archive.put_study(study, edge_id=f"edge-{site}", patient_id=PATIENT_OF[site])
        first = study.instances[0]
        dicom_ids[site] = DicomIds(study=str(first.StudyInstanceUID), series=str(first.SeriesInstanceUID),
                                   instance=str(first.SOPInstanceUID))

    consultations = {}
    for site, headers in doctors.items():
        created = client.post("/api/consultations", headers=headers,
                              json={"patient_id": PATIENT_OF[site], "specialty": "respiratory",
                                    "chief_complaint": "咳嗽 发热 3天"})
        assert created.status_code == 201, created.text
        consultations[site] = str(created.json()["consultation_id"])
    return SeededWorld(victim_user_id=victim.json()["user_id"], victim_expert_id=victim_expert.json()["user_id"],
                       dicom_ids=dicom_ids, consultation_ids=consultations)


# --- expectations -----------------------------------------------------------------------------------------


def expectation(rule: Rule, actor: str, site: str) -> str:
    """"public", "unauthenticated", "forbidden", "hidden" (not reached) or "allowed"."""
    if rule.roles is None:
        return "public"
    if actor == ANONYMOUS:
        return "unauthenticated"
    if rule.roles != ANY_USER and not ACTOR_ROLES[actor] & rule.roles:
        return "forbidden"
    return "allowed" if rule.reach(actor, site) else "hidden"


def judge_http(rule: Rule, expected: str, response: Any) -> str | None:
    """Why `response` breaks the expectation, or None."""
    status: int = response.status_code
    if status >= 500:
        return f"server error {status}: {response.text[:200]}"
    ok = 200 <= status < 300
    if expected == "public":
        return None if status not in (401, 403) else f"a public route answered {status}"
    if expected == "unauthenticated":
        return None if status == 401 else f"anonymous call answered {status}, expected 401"
    if expected in ("forbidden", "hidden"):
        if status in (401, 403, 404):
            return None
        if ok and expected == "hidden" and rule.hidden is not None and rule.hidden(response):
            return None
        return f"should be refused but answered {status}: {response.text[:200]}"
    if ok or status in rule.also:
        return None
    return f"should be allowed but answered {status}: {response.text[:200]}"


def fill(path: str, rule: Rule, walk: Walk, site: str) -> str:
    return _PARAM.sub(lambda m: rule.param(m.group(1))(walk.world, site), path)


def call_http(walk: Walk, method: str, path: str, rule: Rule, actor: str, site: str) -> str | None:
    headers = dict(rule.headers)
    if actor != ANONYMOUS:
        headers.update(bearer(walk.token(actor)))
    request: dict[str, Any] = {"headers": headers}
    if rule.query is not None:
        request["params"] = rule.query(walk.world, site)
    if rule.body is not None:
        request["json"] = rule.body(walk.world, site)
    response = walk.client.request(method, fill(path, rule, walk, site), **request)
    walk.client.cookies.clear()
    return judge_http(rule, expectation(rule, actor, site), response)


def call_websocket(walk: Walk, path: str, rule: Rule, actor: str, site: str) -> str | None:
    protocols = ["telemed.live.v1"] + ([f"bearer.{walk.token(actor)}"] if actor != ANONYMOUS else [])
    try:
        with walk.client.websocket_connect(fill(path, rule, walk, site), subprotocols=protocols):
            accepted = True
    except (WebSocketDisconnect, WebSocketDenialResponse):
        accepted = False
    expected = expectation(rule, actor, site)
    if accepted == (expected in ("public", "allowed")):
        return None
    return f"handshake {'accepted' if accepted else 'refused'}, expected {expected}"


# --- tests ------------------------------------------------------------------------------------------------


def test_every_route_has_an_access_rule(walk: Walk) -> None:
    served = set(route_keys(walk.client.app))  # type: ignore[arg-type]
    missing = sorted(served - set(RULES))
    stale = sorted(set(RULES) - served)
    assert not missing, f"routes without an access rule (add them to tests/integration/access_rules.py): {missing}"
    assert not stale, f"access rules for routes the app no longer serves: {stale}"


def test_no_route_serves_anyone_it_should_refuse(walk: Walk) -> None:
    failures: list[str] = []
    calls = 0
    for method, path in route_keys(walk.client.app):  # type: ignore[arg-type]
        rule = RULES.get((method, path))
        if rule is None:
            continue  # reported by test_every_route_has_an_access_rule
        for actor in ACTORS:
            for site in SITES if rule.per_site else SITES[:1]:
                calls += 1
                if method == "WS":
                    problem = call_websocket(walk, path, rule, actor, site)
                else:
                    problem = call_http(walk, method, path, rule, actor, site)
                if problem is not None:
                    failures.append(f"{method} {path} as {actor} on {site}'s resource: {problem}")
    assert calls > 300
    assert not failures, "\n".join(failures)
