"""Helpers (no tests) for the consultation integration tests: a world with expert profiles, a DICOM study and
deteriorating vitals, an app driven by a fake clock, and logins for the experts."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from cloud.api.app import create_app
from cloud.api.auth.passwords import hash_password
from cloud.api.policy import ApiPolicy
from cloud.consult.policy import ConsultPolicy
from cloud.settings import CloudSettings, DatabaseSettings, KeysSettings
from tests.integration.test_api_support import insert_vitals, seed_world

SICHUAN = "510000"
STUDY_A1 = "1.2.826.0.1.3680043.10.511.1"
STUDY_B1 = "1.2.826.0.1.3680043.10.511.2"


@dataclass(frozen=True)
class Expert:
    username: str
    title: str
    years: int
    specialties: tuple[str, ...]
    prefixes: tuple[str, ...]
    languages: tuple[str, ...]
    region: str
    on_duty: bool = True

    @property
    def password(self) -> str:
        return f"pw-{self.username}-Expert!"


# Cardiology for site-a (Sichuan): the chief ranks first, the attending second; one cardiologist is licensed
# in another province, one expert is off duty, one is a respiratory physician.
EXPERTS = {e.username: e for e in (
    Expert("card-chief", "chief", 25, ("cardiology",), ("I2",), ("zh", "en"), SICHUAN),
    Expert("card-att", "attending", 8, ("cardiology",), (), ("zh",), SICHUAN),
    Expert("card-guizhou", "chief", 30, ("cardiology",), (), ("zh",), "520000"),
    Expert("card-off", "chief", 30, ("cardiology",), (), ("zh",), SICHUAN, on_duty=False),
    Expert("resp-chief", "chief", 20, ("respiratory",), (), ("zh",), SICHUAN),
)}


def seed_consult_world(url: str, now: dt.datetime) -> None:
    """seed_world plus: site-a in Sichuan, the EXPERTS with profiles, a study per county patient, and a
    deteriorating P-A1 (NEWS2 high)."""
    seed_world(url)
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("UPDATE sites SET region = %s WHERE site_id = 'site-a'", (SICHUAN,))
        for e in EXPERTS.values():
            row = conn.execute(
                "INSERT INTO users (username, display_name, password_hash, roles) VALUES (%s, %s, %s, '{expert}')"
                " RETURNING user_id", (e.username, e.username.replace("-", " ").title(), hash_password(e.password)),
            ).fetchone()
            assert row is not None
            conn.execute(
                "INSERT INTO expert_profiles (user_id, specialties, icd10_prefixes, title, years_practice, languages,"
                " licence_region, max_concurrent, on_duty, online) VALUES (%s, %s, %s, %s, %s, %s, %s, 5, %s, true)",
                (row[0], list(e.specialties), list(e.prefixes), e.title, e.years, list(e.languages), e.region,
                 e.on_duty),
            )
        for uid, patient in ((STUDY_A1, "P-A1"), (STUDY_B1, "P-B1")):
            conn.execute(
                "INSERT INTO dicom_manifests (study_instance_uid, edge_id, patient_id, completed_at, body)"
                " VALUES (%s, 'edge-test', %s, %s, %s)",
                (uid, patient, now, Jsonb({"study_instance_uid": uid, "patient_id": patient,
                                            "series": [{"modality": "CT", "instances": []}]})),
            )
    at = now - dt.timedelta(minutes=3)
    insert_vitals(url, [
        (at, "P-A1", "heart_rate", 128.0, None, 0), (at, "P-A1", "spo2", 89.0, None, 0),
        (at, "P-A1", "respiratory_rate", 27.0, None, 0), (at, "P-A1", "systolic_bp", 92.0, None, 0),
        (at, "P-A1", "body_temperature", 38.6, None, 0),
    ])


class FakeClock:
    """The consultation clock of the app under test: time moves only when told."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@contextlib.contextmanager
def consult_client(url: str, keys_dir: Path, clock: FakeClock, *, refresh_s: float = 0.5) -> Iterator[TestClient]:
    """A started app on `url` whose consultation clock is `clock`, whose SLA scheduler ticks every 20 ms and
    whose expert matrix is rebuilt every `refresh_s`."""
    settings = CloudSettings(database=DatabaseSettings(url=url, pool_min=1, pool_max=6),
                             keys=KeysSettings(dir=keys_dir))
    app = create_app(settings, policy=ApiPolicy(cookie_secure=False))
    app.state.consult_clock = clock
    app.state.consult_policy = ConsultPolicy(scheduler_interval_s=0.02, matrix_refresh_s=refresh_s)
    with TestClient(app) as client:
        yield client


def expert_login(client: TestClient, username: str) -> str:
    response = client.post("/api/auth/login",
                           json={"username": username, "password": EXPERTS[username].password})
    assert response.status_code == 200, response.text
    client.cookies.clear()
    token: str = response.json()["token"]
    return token


def user_id(url: str, username: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT user_id FROM users WHERE username = %s", (username,)).fetchone()
    assert row is not None
    return str(row[0])


def wait_for(probe: Callable[[], Any], *, timeout: float = 10.0) -> Any:
    """Poll `probe` until it returns something truthy (the scheduler runs in the app's own thread)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
