"""A demo world for the browser tests, put in through the real paths: sites and edges with the provisioning
store, users and an expert profile through the admin API, patients through the registration API, vitals,
device status and DICOM manifests through the ingest writer (signed envelopes, the same pipeline the MQTT
workers run, so pg_notify reaches the live WebSocket), CT and ultrasound studies through the signed STOW-RS
route, and an alert incident through the alerting workflow."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import psycopg

from cloud.alerting.demo import seed_demo
from cloud.alerting.workflow import AlarmInput, apply_alarms, load_directory
from cloud.api.auth.models import Role
from cloud.api.auth.service import add_user
from cloud.edges import store as edge_store
from cloud.edges.registry import EdgeRegistry
from cloud.ingest.pipeline import Pipeline, RetryPolicy
from cloud.ingest.store import PgIngestStore
from cloud.settings import DatabaseSettings
from devices.modality import generate_ct_study, generate_us_study
from devices.modality.dataset_modules import CHINA_STANDARD_TIME
from devices.modality.studies import Study
from proto import keys
from proto.messages import (
    Alert,
    DeviceStatus,
    DicomManifest,
    EdgeStatus,
    Event,
    InstanceEntry,
    LaneStatus,
    SeriesEntry,
)
from proto.quality import Quality
from proto.vitals import VitalsBatchBuilder
from tests.integration.test_dicomweb_support import part10, stow
from tests.unit.cloud.ingest_messages import TestEdge

T = TypeVar("T")
PASSWORD = "Demo-Passw0rd!"
REGION = "510000"  # Sichuan (GB/T 2260): sites and the expert share it, so matching may offer across them
SITES = {"site-qc": ("Qingchuan County People's Hospital", "青川县人民医院"),
         "site-wx": ("Wangcang County People's Hospital", "旺苍县人民医院")}
USERS: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "doc-qc": (("county_doctor",), "site-qc", "李医生"),
    "doc-wx": (("county_doctor",), "site-wx", "王医生"),
    "oncall-qc": (("on_call",), "site-qc", "赵值班"),
    "expert-chen": (("expert",), None, "陈主任"),
}

Profile = Callable[[float], dict[str, float]]  # fraction of the history (0 old .. 1 now) -> kind: value


def _linear(start: dict[str, float], end: dict[str, float]) -> Profile:
    return lambda f: {k: start[k] + (end[k] - start[k]) * f for k in start}


STABLE = {"heart_rate": 72, "spo2": 98, "respiratory_rate": 14, "systolic_bp": 124, "diastolic_bp": 78,
          "body_temperature": 36.7}
PATIENTS: dict[str, tuple[str, str, str, Profile]] = {
    # patient: site, ward, bed, vitals over time
    "P-QC-001": ("site-qc", "内科一病区", "1", _linear(
        {"heart_rate": 96, "spo2": 95, "respiratory_rate": 19, "systolic_bp": 118, "diastolic_bp": 74,
         "body_temperature": 38.1},
        {"heart_rate": 131, "spo2": 90, "respiratory_rate": 27, "systolic_bp": 92, "diastolic_bp": 55,
         "body_temperature": 39.3})),
    "P-QC-002": ("site-qc", "内科一病区", "2", _linear(
        {"heart_rate": 88, "spo2": 96, "respiratory_rate": 17, "systolic_bp": 112, "diastolic_bp": 70,
         "body_temperature": 37.6},
        {"heart_rate": 113, "spo2": 94, "respiratory_rate": 22, "systolic_bp": 104, "diastolic_bp": 66,
         "body_temperature": 38.4})),
    "P-QC-003": ("site-qc", "内科一病区", "3", _linear(STABLE, STABLE)),
    "P-QC-004": ("site-qc", "内科一病区", "5", _linear({**STABLE, "respiratory_rate": 21},
                                                    {**STABLE, "respiratory_rate": 25})),
    "P-WX-001": ("site-wx", "外科病区", "8", _linear(STABLE, {**STABLE, "heart_rate": 80})),
    "P-WX-002": ("site-wx", "外科病区", "9", _linear(STABLE, STABLE)),
}
HISTORY = dt.timedelta(hours=3)


@dataclass
class Demo:
    """What the tests need to know about the seeded world."""

    base_url: str
    db_url: str
    edges: dict[str, TestEdge] = field(default_factory=dict)
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    ct_study: str = ""
    us_study: str = ""
    pipeline: Pipeline | None = None

    def ingest(self, edge: TestEdge, payloads: Iterable[object]) -> None:
        """Write messages through the ingest writer (committed, acked, notified)."""
        assert self.pipeline is not None
        results: list[Any] = []
        for payload in payloads:
            self.pipeline.process([edge.delivery(payload)], results.append)
        assert results and all(r.count("committed") for r in results), results

    def send_vitals(self, patient_id: str, values: dict[str, float], *, at: dt.datetime | None = None,
                    quality: int = 0) -> None:
        """One sample of each kind for a patient, now (the live test's update)."""
        site = PATIENTS[patient_id][0]
        builder = VitalsBatchBuilder()
        for kind, value in values.items():
            builder.add(at or dt.datetime.now(dt.UTC), patient_id, kind, value, device_id=_device(patient_id),
                        quality=quality)
        self.ingest(self.edges[site], [builder.build()])

    def raise_alert(self, patient_id: str, *, priority: str = "high", message: str = "NEWS2 9") -> uuid.UUID:
        """An alarm message applied by the alerting workflow (opens an incident and starts its escalation)."""
        alert = Alert(alert_id=uuid.uuid4(), patient_id=patient_id, rule="news2.high" if priority == "high"
                      else "news2.medium", priority=priority, category="clinical", state="active",  # type: ignore[arg-type]
                      raised_at=dt.datetime.now(dt.UTC), message=message, news2_total=9 if priority == "high" else 5,
                      kind=None, value=None, device_id=None)
        site = PATIENTS[patient_id][0]

        async def apply() -> None:
            async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as conn:
                now = dt.datetime.now(dt.UTC)
                ctx = await load_directory(conn, now=now)
                async with conn.transaction():
                    await apply_alarms(conn, [AlarmInput(alert, "edge", site, f"edge-{site[5:]}-1")], now=now, ctx=ctx)

        run_async(apply)
        return alert.alert_id


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on its own thread (Playwright's sync API owns this thread's event loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _device(patient_id: str) -> str:
    return "po-" + patient_id.lower().removeprefix("p-")


def _admin_session(client: httpx.Client, username: str) -> None:
    response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    response.raise_for_status()
    client.headers["Authorization"] = f"Bearer {response.json()['token']}"
    client.cookies.clear()


async def _bootstrap_admin(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await add_user(conn, username="admin", password=PASSWORD, roles=frozenset({Role.ADMIN}), site_id=None,
                       display_name="系统管理员")


async def _on_call(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn, conn.transaction():
        await seed_demo(conn, now=dt.datetime.now(dt.UTC))


def _register_sites_and_edges(db_url: str) -> dict[str, TestEdge]:
    edges = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for site_id, (name, name_zh) in SITES.items():
            edge_store.ensure_site(conn, site_id, name)
            # The provisioning store names sites; the Chinese name and the province are site data an admin keeps.
            conn.execute("UPDATE sites SET name_zh = %s, region = %s WHERE site_id = %s", (name_zh, REGION, site_id))
            edge = TestEdge(f"edge-{site_id[5:]}-1", site_id)
            edge_store.insert_edge(conn, edge_id=edge.edge_id, site_id=site_id, name=f"{name_zh} 边缘节点",
                                   public_key=keys.public_to_text(edge.key.public_key()))
            edges[site_id] = edge
    return edges


def _users(client: httpx.Client) -> dict[str, uuid.UUID]:
    ids = {}
    for username, (roles, site, name) in USERS.items():
        response = client.post("/api/admin/users", json={"username": username, "password": PASSWORD,
                                                         "roles": list(roles), "site_id": site, "display_name": name})
        response.raise_for_status()
        ids[username] = uuid.UUID(response.json()["user_id"])
    profile = {"specialties": ["cardiology", "respiratory", "infectious"], "icd10_prefixes": [],
               "title": "chief", "years_practice": 22, "licence_region": REGION,
               "availability": {"languages": ["zh", "en"], "max_concurrent": 5, "on_duty": True, "online": True}}
    response = client.put(f"/api/admin/users/{ids['expert-chen']}/profile", json=profile)
    if response.status_code == 422:  # a specialty this build's controlled list does not know
        profile["specialties"] = ["cardiology", "respiratory"]
        response = client.put(f"/api/admin/users/{ids['expert-chen']}/profile", json=profile)
    response.raise_for_status()
    return ids


def _patients(base_url: str) -> None:
    for username, site in (("doc-qc", "site-qc"), ("doc-wx", "site-wx")):
        with httpx.Client(base_url=base_url, timeout=30) as doctor:
            _admin_session(doctor, username)
            for patient_id, (patient_site, ward, bed, _) in PATIENTS.items():
                if patient_site != site:
                    continue
                response = doctor.post("/api/patients", json={"patient_id": patient_id, "ward": ward, "bed": bed})
                response.raise_for_status()


def _history(now: dt.datetime) -> dict[str, list[object]]:
    """Per site: a vitals batch of every patient's last hours at one sample per minute, and device states."""
    per_site: dict[str, list[object]] = {}
    statuses: dict[str, EdgeStatus] = {}
    for patient_id, (site, _, _, profile) in PATIENTS.items():
        builder = VitalsBatchBuilder()
        minutes = int(HISTORY.total_seconds() // 60)
        for m in range(minutes + 1):
            fraction = m / minutes
            at = now - HISTORY + dt.timedelta(minutes=m)
            for kind, value in profile(fraction).items():
                wobble = ((m * 7919 + len(kind) * 31) % 11 - 5) / 5.0  # deterministic noise, +-1
                scale = 0.1 if kind == "body_temperature" else 1.0
                quality = int(Quality.MOTION) if patient_id == "P-QC-004" and kind == "spo2" and m == minutes else 0
                builder.add(at, patient_id, kind, round(value + wobble * scale, 1), device_id=_device(patient_id),
                            quality=quality)
        per_site.setdefault(site, []).append(builder.build())
        if site not in statuses:  # each edge's heartbeat: site-qc online with a backlog, site-wx gone offline
            statuses[site] = EdgeStatus(
                state="online" if site == "site-qc" else "offline", at=now, software_version="0.1.0", uptime_s=86_400,
                outbox={"alerts": LaneStatus(0, 0), "vitals": LaneStatus(37, 48_210, 4.5),
                        "dicom": LaneStatus(2, 1_048_576, 31.0)} if site == "site-qc" else {},
                devices_connected=4 if site == "site-qc" else None)
            per_site[site].append(statuses[site])
        battery = 12.0 if patient_id == "P-QC-002" else 83.0
        state = "disconnected" if patient_id == "P-WX-002" else "connected"
        per_site[site].append(Event(event_id=uuid.uuid4(), event_type="device_status", at=now,
                                    device_status=DeviceStatus(device_id=_device(patient_id), state=state,  # type: ignore[arg-type]
                                                               patient_id=patient_id, device_type="pulse_oximeter",
                                                               battery_pct=battery)))
    return per_site


def manifest_of(study: Study, files: list[bytes], patient_id: str) -> DicomManifest:
    """The edge's completion manifest for a study, with the size and SHA-256 of each instance file."""
    by_series: dict[str, list[InstanceEntry]] = {}
    modality: dict[str, str] = {}
    for ds, data in zip(study.instances, files, strict=True):
        series = str(ds.SeriesInstanceUID)
        modality[series] = str(ds.Modality)
        by_series.setdefault(series, []).append(InstanceEntry(
            str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID), len(data),
            hashlib.sha256(data).hexdigest()))
    return DicomManifest(study_instance_uid=str(study.study_instance_uid), patient_id=patient_id,
                         completed_at=dt.datetime.now(dt.UTC),
                         series=tuple(SeriesEntry(uid, modality[uid], tuple(items), series_number=n + 1)
                                      for n, (uid, items) in enumerate(by_series.items())))


def _study(demo: Demo, study: Study, patient_id: str) -> str:
    files = [part10(ds) for ds in study.instances]
    site = PATIENTS[patient_id][0]
    edge = demo.edges[site]
    demo.ingest(edge, [manifest_of(study, files, patient_id)])
    for start in range(0, len(files), 8):
        response = stow(demo.base_url, files[start:start + 8], edge_id=edge.edge_id, key=edge.key)
        assert response.status_code == 200, response.text
    return str(study.study_instance_uid)


def seed(base_url: str, db_url: str) -> Demo:
    """The whole demo world on a migrated, empty database behind a running server."""
    demo = Demo(base_url=base_url, db_url=db_url)
    demo.edges = _register_sites_and_edges(db_url)
    store = PgIngestStore(DatabaseSettings(url=db_url))
    demo.pipeline = Pipeline(store, EdgeRegistry(store.all_edges, ttl_s=60), retry=RetryPolicy(0.05, 0.5))
    run_async(lambda: _bootstrap_admin(db_url))
    with httpx.Client(base_url=base_url, timeout=30) as admin:
        _admin_session(admin, "admin")
        demo.users = _users(admin)
    _patients(base_url)
    run_async(lambda: _on_call(db_url))  # what `telemed-cloud oncall seed-demo` does for `make run`
    now = dt.datetime.now(dt.UTC)
    for site, payloads in _history(now).items():
        demo.ingest(demo.edges[site], payloads)
    when = dt.datetime.now(CHINA_STANDARD_TIME) - dt.timedelta(hours=1)
    demo.ct_study = _study(demo, generate_ct_study(slices=24, seed=7, when=when, patient_name="张伟"), "P-QC-001")
    demo.us_study = _study(demo, generate_us_study(frames=16, seed=8, color=True, when=when, patient_name="刘芳"),
                           "P-QC-002")
    return demo
