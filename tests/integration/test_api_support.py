"""Helpers (no tests) for the API integration tests: a migrated scratch database, a seeded world, vitals
written with binary COPY, rollups rebuilt from raw rows, an in-process client and logins."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.auth.passwords import hash_password
from cloud.api.policy import ApiPolicy
from cloud.db.migrate import migrate
from cloud.settings import CloudSettings, DatabaseSettings
from deploy import pgadmin
from deploy.postgres import PostgresEndpoint
from proto.vocabulary import kind

TEMPLATE_DATABASE = "telemed_template"  # tests/conftest.py's per-test template
Row = tuple[dt.datetime, str, str, float, str | None, int]  # time, patient, kind name, value, device, quality


@contextlib.contextmanager
def scratch_database(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    """A fresh migrated database for a module's tests, dropped afterwards."""
    name = f"api_{uuid.uuid4().hex[:16]}"
    admin = postgres.with_database("postgres").admin_url
    pgadmin.ensure_database(admin, name, owner=postgres.user, template=TEMPLATE_DATABASE)
    endpoint = postgres.with_database(name)
    try:
        with psycopg.connect(endpoint.url, autocommit=True) as conn:
            migrate(conn)
        yield endpoint
    finally:
        pgadmin.drop_database(admin, name)


@dataclass(frozen=True)
class ApiUser:
    username: str
    roles: tuple[str, ...]
    site_id: str | None

    @property
    def password(self) -> str:
        return f"pw-{self.username}-Secret!"


USERS: dict[str, ApiUser] = {u.username: u for u in (
    ApiUser("admin", ("admin",), None),
    ApiUser("doc-a", ("county_doctor",), "site-a"),
    ApiUser("doc-b", ("county_doctor",), "site-b"),
    ApiUser("expert", ("expert",), None),
    ApiUser("oncall-a", ("on_call",), "site-a"),
    ApiUser("nobody", (), None),
    ApiUser("throttled", ("expert",), None),
    ApiUser("leaver", ("expert",), None),
)}
PATIENTS = {"P-A1": "site-a", "P-A2": "site-a", "P-B1": "site-b"}


def seed_world(url: str) -> None:
    """Two county sites, their patients and a device, and one user per role (see USERS)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("INSERT INTO sites (site_id, name, name_zh) VALUES"
                     " ('site-a', 'County A Hospital', '甲县医院'), ('site-b', 'County B Hospital', '乙县医院')")
        for patient_id, site in PATIENTS.items():
            conn.execute("INSERT INTO patients (patient_id, site_id, ward, bed) VALUES (%s, %s, 'ICU', %s)",
                         (patient_id, site, patient_id[-1]))
        conn.execute("INSERT INTO devices (device_id, site_id, device_type, model, battery_pct, state)"
                     " VALUES ('hrm-a1', 'site-a', 'heart_rate_monitor', 'HRM Pro', 81, 'connected'),"
                     " ('hrm-b1', 'site-b', 'heart_rate_monitor', 'HRM Pro', 50, 'connected')")
        conn.execute("INSERT INTO device_assignments (device_id, patient_id, assigned_at)"
                     " VALUES ('hrm-a1', 'P-A1', now() - interval '1 day')")
        for user in USERS.values():
            conn.execute(
                "INSERT INTO users (username, display_name, password_hash, roles, site_id) VALUES (%s, %s, %s, %s, %s)",
                (user.username, user.username.title(), hash_password(user.password), list(user.roles), user.site_id),
            )


def insert_vitals(url: str, rows: Iterable[Row], *, edge_id: str = "edge-test") -> int:
    """Write samples with binary COPY and move vitals_latest forward as the ingest writer would; how many."""
    count = 0
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        with conn.cursor() as cur, cur.copy(
            "COPY vitals (time, patient_id, kind_id, value, device_id, quality, edge_id)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["timestamptz", "text", "int2", "float8", "text", "int4", "text"])
            for time, patient_id, kind_name, value, device_id, quality in rows:
                copy.write_row((time, patient_id, kind(kind_name).wire_id, value, device_id, quality, edge_id))
                count += 1
        conn.execute("SELECT telemed_refresh_vitals_latest('-infinity')")
    return count


def rebuild_rollups(url: str) -> None:
    """Recompute vitals_1m / vitals_15m / vitals_1h from the raw rows (plain mode tables; refresh in timescale
    mode)."""
    with psycopg.connect(url, autocommit=True) as conn:
        timescale = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        for table, width in (("vitals_1m", "1 minute"), ("vitals_15m", "15 minutes"), ("vitals_1h", "1 hour")):
            if timescale:
                conn.execute(f"CALL refresh_continuous_aggregate('{table}', NULL, NULL)")
                continue
            with conn.transaction():
                conn.execute(f"DELETE FROM {table}")
                conn.execute(
                    f"INSERT INTO {table} (bucket, patient_id, kind_id, min, max, sum, count)"
                    f" SELECT date_bin('{width}', time, 'epoch'), patient_id, kind_id, min(value), max(value),"
                    " sum(value), count(*) FROM vitals GROUP BY 1, 2, 3"
                )


def client_for(url: str, **policy: Any) -> TestClient:
    """An in-process client of a fresh app on `url` (enter it to run the lifespan)."""
    settings = CloudSettings(database=DatabaseSettings(url=url, pool_min=1, pool_max=4))
    return TestClient(create_app(settings, policy=ApiPolicy(cookie_secure=False, **policy)))


def login(client: TestClient, username: str) -> str:
    """A fresh session token for one of USERS."""
    response = client.post("/api/auth/login", json={"username": username, "password": USERS[username].password})
    assert response.status_code == 200, response.text
    client.cookies.clear()  # the login also set the session cookie: keep requests explicit
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def minute_floor(t: dt.datetime) -> dt.datetime:
    return t.replace(second=0, microsecond=0)
