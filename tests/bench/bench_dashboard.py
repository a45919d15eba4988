"""Dashboard latency through the HTTP API: the ward overview with 200 patients and a rendered 512x512 CT slice.

A private PostgreSQL started here holds one county site with 200 patients, each with a device and two hours
of six vital signs at one sample a minute (binary COPY), and one CT slice from the modality simulator in the
DICOM object store and `dicom_instances`. Requests go through the whole app in-process (ASGI): bearer
session, role and site checks, queries, the audit records and the response encoding.

- ward_overview_p50/p95: GET /api/ward/overview as the site's county doctor, refreshing (target p95 < 100 ms);
  baseline in the same run: GET /api/patients, the vitals API's patient list with the same content (it audits
  every patient on every call). ward_overview_first_load_p95: a new session's first load, which records every
  patient in the audit log (refreshes within the audit window do not: cloud/web/audit_window.py).
- rendered_png_p50/p95: GET .../frames/1/rendered?window=-600,1500 as image/png (target p95 < 50 ms); baseline:
  cloud.dicomweb.render.render on the same bytes, without HTTP, database or audit (its decoded-frame cache
  warm, as in the server). JPEG next to it, and wado_frame_p95: GET .../frames/1 (the raw frame through the same
  session, scope, object store and audit path, no rendering), the floor the rendered frame stands on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import io
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import psycopg
from pydicom import dcmwrite

from cloud.api.app import create_app
from cloud.api.auth.passwords import hash_password
from cloud.api.policy import ApiPolicy
from cloud.db.migrate import migrate
from cloud.dicomweb import render
from cloud.dicomweb.store import FileObjectStore, ObjectKey
from cloud.settings import CloudSettings, DatabaseSettings, DicomSettings, KeysSettings
from deploy.postgres import PostgresServer
from devices.modality import generate_ct_study
from proto.vocabulary import kind
from tests.bench.harness import BenchContext, percentile

SITE = "site-bench"
PASSWORD = "bench-password"
OVERVIEW_TARGET_P95_MS = 100.0
RENDERED_TARGET_P95_MS = 50.0
VITALS = {"heart_rate": 78.0, "spo2": 97.0, "respiratory_rate": 16.0, "systolic_bp": 122.0, "diastolic_bp": 76.0,
          "body_temperature": 36.8}
LUNG = "-600,1500"


def load_ward(url: str, *, patients: int, minutes: int, now: dt.datetime) -> None:
    """Schema, the site, its doctor, patients with devices and `minutes` of vitals each."""
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO sites (site_id, name, name_zh) VALUES (%s, 'Bench County', '基准县医院')", (SITE,))
        conn.execute("INSERT INTO users (username, display_name, password_hash, roles, site_id)"
                     " VALUES ('doctor', 'Doctor', %s, '{county_doctor}', %s)", (hash_password(PASSWORD), SITE))
        ids = [f"P-{n:04d}" for n in range(patients)]
        with conn.transaction():
            conn.cursor().executemany(
                "INSERT INTO patients (patient_id, site_id, ward, bed) VALUES (%s, %s, 'ICU', %s)",
                [(pid, SITE, str(n + 1)) for n, pid in enumerate(ids)])
            conn.cursor().executemany(
                "INSERT INTO devices (device_id, site_id, device_type, model, battery_pct, state, last_seen_at)"
                " VALUES (%s, %s, 'pulse_oximeter', 'PO-1', %s, 'connected', now())",
                [(f"dev-{pid}", SITE, 20 + n % 80) for n, pid in enumerate(ids)])
            conn.cursor().executemany(
                "INSERT INTO device_assignments (device_id, patient_id, assigned_at)"
                " VALUES (%s, %s, now() - interval '1 day')",
                [(f"dev-{pid}", pid) for pid in ids])
        start = now - dt.timedelta(minutes=minutes)
        day = start.date()
        while day <= now.date():
            conn.execute("SELECT telemed_ensure_vitals_partition(%s)", (day,))
            day += dt.timedelta(days=1)
        with conn.transaction(), conn.cursor() as cur, cur.copy(
            "COPY vitals (time, patient_id, kind_id, value, device_id, quality, edge_id)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["timestamptz", "text", "int2", "float8", "text", "int4", "text"])
            for n, pid in enumerate(ids):
                for m in range(minutes):
                    at = start + dt.timedelta(minutes=m + 1)
                    for name, value in VITALS.items():
                        value_now = value + (n + m) % 7 - 3
                        copy.write_row((at, pid, kind(name).wire_id, value_now, f"dev-{pid}", 0, "edge-b"))
        # Loaded around the ingest writer: bring the latest values up to date as it would have.
        conn.execute("SELECT telemed_refresh_vitals_latest('-infinity')")
        conn.execute("ANALYZE")


def store_slice(url: str, store_dir: Path) -> tuple[str, bytes]:
    """One 512x512 CT slice in the object store and the index; its rendered-frame path and its bytes."""
    ds = generate_ct_study(slices=1, seed=3).instances[0]
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    data = buffer.getvalue()
    key = ObjectKey(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    location = FileObjectStore(store_dir).put(key, data)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dicom_instances (sop_instance_uid, study_instance_uid, series_instance_uid,"
                     " sop_class_uid, transfer_syntax_uid, size_bytes, sha256, edge_id, patient_id, path)"
                     " VALUES (%s, %s, %s, %s, %s, %s, %s, 'edge-b', 'P-0000', %s)",
                     (key.sop_instance_uid, key.study_instance_uid, key.series_instance_uid, str(ds.SOPClassUID),
                      str(ds.file_meta.TransferSyntaxUID), len(data), hashlib.sha256(data).hexdigest(), location))
    path = (f"/dicomweb/studies/{key.study_instance_uid}/series/{key.series_instance_uid}"
            f"/instances/{key.sop_instance_uid}/frames/1/rendered")
    return path, data


async def timed(call: Callable[[], Awaitable[httpx.Response]], rounds: int, warmup: int = 3) -> list[float]:
    """Latencies in ms of `rounds` calls after `warmup` uncounted ones (each must succeed)."""
    out = []
    for i in range(rounds + warmup):
        t0 = time.perf_counter()
        response = await call()
        elapsed = (time.perf_counter() - t0) * 1000
        response.raise_for_status()
        if i >= warmup:
            out.append(elapsed)
    return out


async def login(client: httpx.AsyncClient) -> dict[str, str]:
    """A fresh session's bearer header."""
    response = await client.post("/api/auth/login", json={"username": "doctor", "password": PASSWORD})
    response.raise_for_status()
    client.cookies.clear()
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def first_views(client: httpx.AsyncClient, rounds: int) -> list[float]:
    """The overview's latency on a session's first load, when every patient is recorded in the audit log."""
    out = []
    for _ in range(rounds):
        headers = await login(client)
        t0 = time.perf_counter()
        response = await client.get("/api/ward/overview", headers=headers)
        out.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
    return out


async def measure(url: str, store_dir: Path, keys_dir: Path, frame_path: str, *, patients: int,
                  rounds: int, cold_rounds: int) -> dict[str, list[float]]:
    settings = CloudSettings(database=DatabaseSettings(url=url, pool_min=2, pool_max=4),
                             dicom=DicomSettings(store_dir=store_dir), keys=KeysSettings(dir=keys_dir))
    app = create_app(settings, policy=ApiPolicy(cookie_secure=False), freeze_gc=True)  # as `serve` runs it
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as client:
        cold = await first_views(client, cold_rounds)
        headers = await login(client)
        overview = await client.get("/api/ward/overview", headers=headers)
        assert len(overview.json()["patients"]) == patients, overview.text
        png = {**headers, "Accept": "image/png"}
        jpeg = {**headers, "Accept": "image/jpeg"}
        raw = {**headers, "Accept": 'multipart/related; type="application/octet-stream"'}
        return {
            "first": cold,
            "overview": await timed(lambda: client.get("/api/ward/overview", headers=headers), rounds),
            "patients": await timed(lambda: client.get("/api/patients", headers=headers), rounds),
            "png": await timed(lambda: client.get(frame_path, params={"window": LUNG}, headers=png), rounds),
            "jpeg": await timed(lambda: client.get(frame_path, params={"window": LUNG}, headers=jpeg), rounds),
            "frame": await timed(lambda: client.get(frame_path.removesuffix("/rendered"), headers=raw), rounds),
        }


def render_alone(data: bytes, rounds: int) -> list[float]:
    spec = render.RenderRequest(window=render.parse_window(LUNG), media_type="image/png")
    out = []
    for i in range(rounds + 3):
        t0 = time.perf_counter()
        render.render(data, spec)
        if i >= 3:
            out.append((time.perf_counter() - t0) * 1000)
    return out


def run(ctx: BenchContext) -> None:
    patients = ctx.scale(200, 20)
    minutes = ctx.scale(120, 10)
    rounds = ctx.scale(100, 5)
    cold_rounds = ctx.scale(20, 3)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp, PostgresServer(
        Path(tmp) / "data", ephemeral=True
    ) as server:
        url = server.endpoint.url
        load_ward(url, patients=patients, minutes=minutes, now=now)
        frame_path, data = store_slice(url, Path(tmp) / "dicom")
        load_before = os.getloadavg()[0]
        results = asyncio.run(measure(url, Path(tmp) / "dicom", Path(tmp) / "keys", frame_path, patients=patients,
                                      rounds=rounds, cold_rounds=cold_rounds))
        alone = render_alone(data, rounds)
        load_note = f"load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    for pct in (50, 95):
        ctx.record(f"ward_overview_p{pct}", percentile(results["overview"], pct), "ms",
                   baseline=percentile(results["patients"], pct), baseline_name="GET /api/patients",
                   target=OVERVIEW_TARGET_P95_MS if pct == 95 else None, higher_is_better=False,
                   notes=f"{patients} patients x 6 kinds, {minutes} min at 1/min, {rounds} requests, {load_note}")
    ctx.record("ward_overview_first_load_p95", percentile(results["first"], 95), "ms", higher_is_better=False,
               notes=f"a session's first load, which records all {patients} patients in the hash-chained audit log"
                     f" ({cold_rounds} sessions)")
    for pct in (50, 95):
        ctx.record(f"rendered_png_p{pct}", percentile(results["png"], pct), "ms",
                   baseline=percentile(alone, pct), baseline_name="render() alone, cache warm",
                   target=RENDERED_TARGET_P95_MS if pct == 95 else None, higher_is_better=False,
                   notes=f"512x512 CT slice, window {LUNG}, {rounds} requests")
    ctx.record("rendered_jpeg_p95", percentile(results["jpeg"], 95), "ms", higher_is_better=False,
               target=RENDERED_TARGET_P95_MS, notes="same slice as image/jpeg (quality 90)")
    ctx.record("wado_frame_p95", percentile(results["frame"], 95), "ms", higher_is_better=False,
               notes="GET .../frames/1 as application/octet-stream: the same request path without rendering")
