"""Helpers for the alerting tests (no tests here): a migrated database with a site, departments, a rota and
contact points; an in-test webhook receiver that checks the HMAC of every request; a fake clock; the
simulated ward turned into VitalsBatches; and a running AlertingService."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from cloud.alerting.config import AlertingSettings
from cloud.alerting.feed import Inbound
from cloud.alerting.notify.webhook import verify_signature
from cloud.alerting.service import AlertingService
from cloud.api.auth.passwords import hash_password
from cloud.db.migrate import migrate
from cloud.settings import CloudSettings, DatabaseSettings
from devices.sim import Cohort
from devices.sim.sensors import SENSORS
from proto.messages import Alert
from proto.quality import Quality
from proto.vitals import VitalsBatch, VitalsBatchBuilder
from proto.vocabulary import CONSCIOUSNESS_CODES

CST = dt.timezone(dt.timedelta(hours=8))
SITE = "county-a"
OTHER_SITE = "county-b"
EDGE = "edge-a"
SECRET = "webhook-secret-for-tests"
TIMEOUT = 20.0
# name -> (roles, site)
PEOPLE: dict[str, tuple[tuple[str, ...], str | None]] = {
    "admin": (("admin",), None),
    "dr-primary": (("on_call",), SITE),
    "dr-secondary": (("county_doctor",), SITE),
    "dr-head": (("county_doctor",), SITE),
    "dr-other": (("county_doctor",), OTHER_SITE),
    "expert": (("expert",), None),
}


def password(username: str) -> str:
    return f"pw-{username}-Secret!"


@dataclass
class World:
    """The seeded database: its URL and the ids tests refer to."""

    url: str
    users: dict[str, uuid.UUID]
    webhook_channel: uuid.UUID


def migrate_and_seed(url: str, webhook_url: str) -> World:
    """Migrate, then two sites, patients, users, an ICU department with a daily rota (dr-primary primary,
    dr-secondary secondary, dr-head head) and everybody reachable on the test webhook."""
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        with conn.transaction():
            conn.execute("INSERT INTO sites (site_id, name, name_zh) VALUES (%s, 'County A', '甲县医院'),"
                         " (%s, 'County B', '乙县医院')", (SITE, OTHER_SITE))
            users = {}
            for name, (roles, site) in PEOPLE.items():
                row = conn.execute(
                    "INSERT INTO users (username, display_name, password_hash, roles, site_id)"
                    " VALUES (%s, %s, %s, %s, %s) RETURNING user_id",
                    (name, name.title(), hash_password(password(name)), list(roles), site)).fetchone()
                assert row is not None
                users[name] = row[0]
            conn.execute("INSERT INTO alerting_departments (site_id, department_id, name, name_zh, head_user_id,"
                         " wards, is_default) VALUES (%s, 'icu', 'ICU', '重症医学科', %s, '{ICU}', true)",
                         (SITE, users["dr-head"]))
            for tier, who in (("primary", "dr-primary"), ("secondary", "dr-secondary")):
                conn.execute("INSERT INTO oncall_rotations (site_id, department_id, tier, members, anchor_date)"
                             " VALUES (%s, 'icu', %s, %s, '2026-01-05')", (SITE, tier, [users[who]]))
            channel = uuid.uuid4()
            conn.execute("INSERT INTO notification_channels (channel_id, kind, name, config) VALUES"
                         " (%s, 'webhook', 'test pager', %s)",
                         (channel, Jsonb({"url": webhook_url, "secret": SECRET, "timeout_s": 5})))
            for user_id in users.values():
                conn.execute("INSERT INTO user_contacts (user_id, channel_id) VALUES (%s, %s)", (user_id, channel))
    return World(url, users, channel)


def add_patients(url: str, *patients: str, site: str = SITE, ward: str = "ICU") -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for i, patient in enumerate(patients):
            conn.execute("INSERT INTO patients (patient_id, site_id, ward, bed) VALUES (%s, %s, %s, %s)"
                         " ON CONFLICT DO NOTHING", (patient, site, ward, str(i + 1)))


def rows(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


# --- the webhook receiver -------------------------------------------------------------------------------------


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    valid: bool

    @property
    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.body)
        return doc


@dataclass
class WebhookSink:
    """Receives webhook POSTs on a free loopback port; `fail_next` answers 503 that many times first."""

    secret: str = SECRET
    fail_next: int = 0
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def pages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r.document for r in self.received if r.valid]

    async def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = TIMEOUT
                       ) -> list[dict[str, Any]]:
        """The pages once `predicate` holds (the event loop keeps running: the service delivers meanwhile)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pages = self.pages()
            if predicate(pages):
                return pages
            await asyncio.sleep(0.02)
        raise AssertionError(f"webhook condition not met; received {self.pages()}")


@contextlib.contextmanager
def webhook_sink(**kwargs: Any) -> Iterator[WebhookSink]:
    sink = WebhookSink(**kwargs)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            headers = dict(self.headers.items())
            valid = verify_signature(sink.secret.encode(), headers, body, now=time.time())
            with sink.lock:
                failing = sink.fail_next > 0
                if failing:
                    sink.fail_next -= 1
                else:
                    sink.received.append(Received(time.time(), headers, body, valid))
            self.send_response(503 if failing else (200 if valid else 401))
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/page"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


# --- time and the service --------------------------------------------------------------------------------------


class FakeClock:
    """The wall clock as the tests set it."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, when: dt.datetime) -> None:
        self.now = max(self.now, when)

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


def quick_settings(**changes: Any) -> AlertingSettings:
    base: dict[str, Any] = {"sweep_interval_s": 3600.0, "state_save_interval_s": 3600.0,
                            "directory_refresh_s": 3600.0, "anomaly_enabled": False, "retry_initial_s": 0.05,
                            "retry_max_s": 0.2, "link_base": "https://telemed.example/incidents"}
    base.update(changes)
    return AlertingSettings(**base)


@contextlib.asynccontextmanager
async def running_service(url: str, clock: Callable[[], dt.datetime], *, use_feed: bool = False,
                          cloud: CloudSettings | None = None, **settings: Any) -> AsyncIterator[AlertingService]:
    """A started AlertingService (periodic jobs effectively off unless asked: tests call them)."""
    cloud = cloud or CloudSettings(database=DatabaseSettings(url=url, pool_min=1, pool_max=4))
    service = AlertingService(cloud, quick_settings(**settings), clock=clock, use_feed=use_feed)
    await service.start()
    try:
        yield service
    finally:
        await service.stop(drain_s=5.0)


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def vitals_in(batch: VitalsBatch, *, edge: str = EDGE, site: str = SITE) -> Inbound:
    return Inbound(edge, site, batch, dt.datetime.now(dt.UTC))


def alert_in(alert: Alert, *, edge: str = EDGE, site: str = SITE) -> Inbound:
    return Inbound(edge, site, alert, dt.datetime.now(dt.UTC))


# --- the simulated ward as batches -----------------------------------------------------------------------------

CHART_EVERY_S = 3600  # ACVPU and air/oxygen are charted hourly (and when they change)


def ward_batches(cohort: Cohort, seconds: int, *, batch_s: int = 5) -> Iterator[VitalsBatch]:
    """What an edge would upload from the simulated ward: every delivered reading of every worn device at
    its schedule (1 Hz wearables, cuff every 30 min, thermometer every 4 min), with its quality flags, and
    ACVPU / air-oxygen charted by the nurse; cut into `batch_s`-second batches."""
    builder = VitalsBatchBuilder()
    charted: dict[str, tuple[str, bool]] = {}
    devices = [d for d in SENSORS if any(d in worn for worn in cohort.devices)]
    for step in range(seconds):
        cohort.advance(1.0)
        t = cohort.time
        for device in devices:
            readings = cohort.batch(device)
            send = readings.delivered & readings.due
            for row in np.flatnonzero(send).tolist():
                patient = cohort.patient_ids[int(readings.patients[row])]
                quality = int(readings.quality[row])
                for j, kind_name in enumerate(readings.kinds):
                    value = float(readings.values[row, j])
                    if not np.isnan(value):
                        builder.add(t, patient, kind_name, value, device_id=f"{device[:5]}-{patient}",
                                    quality=quality)
        if step % 60 == 0:
            for i, patient in enumerate(cohort.patient_ids):
                state = cohort.state(i)
                now = (state.consciousness, state.on_oxygen)
                if charted.get(patient) != now or step % CHART_EVERY_S == 0:
                    charted[patient] = now
                    manual = int(Quality.MANUAL_ENTRY)
                    builder.add(t, patient, "consciousness", float(CONSCIOUSNESS_CODES.index(state.consciousness)),
                                quality=manual)
                    builder.add(t, patient, "on_oxygen", float(state.on_oxygen), quality=manual)
        if (step + 1) % batch_s == 0 and len(builder):
            yield builder.build()
    if len(builder):
        yield builder.build()


def newest(batch: VitalsBatch) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(batch.time_us.max()) / 1e6, dt.UTC)
