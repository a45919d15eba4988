"""Vitals query latency through the HTTP API: p50/p95 of a max_points=1000 series over 24 h and 7 d.

One patient's heart rate at 1 Hz for 7 days (604,800 rows, written with binary COPY into daily partitions,
rollups filled from them) in a private PostgreSQL started here. Each request goes through the whole API
in-process (ASGI): bearer-token session lookup, role and site checks, the downsampled query, the audit
insert and JSON rendering. Baseline in the same run: the same series query alone over psycopg.
Target (issue 5): p95 < 50 ms.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from cloud.api import queries
from cloud.api.app import create_app
from cloud.api.auth.passwords import hash_password
from cloud.api.downsample import plan_buckets
from cloud.api.policy import ApiPolicy
from cloud.db.migrate import migrate
from cloud.settings import CloudSettings, DatabaseSettings
from deploy.postgres import PostgresServer
from tests.bench.harness import BenchContext, percentile

PATIENT = "P-BENCH"
KIND_ID = 1  # heart_rate
PASSWORD = "bench-password"
TARGET_P95_MS = 50.0


def load(url: str, *, seconds: int, end: dt.datetime) -> float:
    """Schema, one site/patient/user, `seconds` of 1 Hz heart rate ending at `end`, rollups and statistics;
    the COPY's duration in seconds."""
    start = end - dt.timedelta(seconds=seconds)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO sites (site_id, name) VALUES ('site-x', 'Bench County')")
        conn.execute("INSERT INTO patients (patient_id, site_id) VALUES (%s, 'site-x')", (PATIENT,))
        conn.execute("INSERT INTO users (username, password_hash, roles, site_id)"
                     " VALUES ('bench', %s, '{county_doctor}', 'site-x')", (hash_password(PASSWORD),))
        day = start.date()
        while day <= end.date():
            conn.execute("SELECT telemed_ensure_vitals_partition(%s)", (day,))
            day += dt.timedelta(days=1)
        rng = np.random.default_rng(5)
        values = (75 + 12 * np.sin(np.arange(seconds) / 900) + rng.normal(0, 2, seconds)).round(0)
        copy_started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur, cur.copy(
            "COPY vitals (time, patient_id, kind_id, value, device_id, quality, edge_id)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["timestamptz", "text", "int2", "float8", "text", "int4", "text"])
            for i, value in enumerate(values.tolist()):
                copy.write_row((start + dt.timedelta(seconds=i), PATIENT, KIND_ID, value, "hrm-1", 0, "edge-x"))
        copy_seconds = time.perf_counter() - copy_started
        for table, width in (("vitals_1m", "1 minute"), ("vitals_15m", "15 minutes"), ("vitals_1h", "1 hour")):
            conn.execute(
                f"INSERT INTO {table} (bucket, patient_id, kind_id, min, max, sum, count)"
                f" SELECT date_bin('{width}', time, 'epoch'), patient_id, kind_id, min(value), max(value),"
                " sum(value), count(*) FROM vitals GROUP BY 1, 2, 3"
            )
        conn.execute("ANALYZE")
    return copy_seconds


async def measure(url: str, *, end: dt.datetime, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per range: (API latencies, SQL-alone latencies) in ms."""
    settings = CloudSettings(database=DatabaseSettings(url=url, pool_min=2, pool_max=4))
    app = create_app(settings, policy=ApiPolicy(cookie_secure=False), freeze_gc=True)  # as `serve` runs it
    results: dict[str, tuple[list[float], list[float]]] = {}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as client:
        login = await client.post("/api/auth/login", json={"username": "bench", "password": PASSWORD})
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        client.cookies.clear()
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for label, span in (("24h", dt.timedelta(hours=24)), ("7d", dt.timedelta(days=7))):
                start = end - span
                params: dict[str, Any] = {"kind": "heart_rate", "start": start.isoformat(), "end": end.isoformat(),
                                          "max_points": 1000}
                plan = plan_buckets(start, end, 1000)
                api: list[float] = []
                sql: list[float] = []
                for i in range(rounds + 3):  # the first three warm caches and are not counted
                    t0 = time.perf_counter()
                    response = await client.get(f"/api/patients/{PATIENT}/vitals", params=params, headers=headers)
                    t1 = time.perf_counter()
                    response.raise_for_status()
                    assert len(response.json()["buckets"]) <= 1000
                    await queries.series(conn, plan, patient_id=PATIENT, kind_id=KIND_ID)
                    t2 = time.perf_counter()
                    if i >= 3:
                        api.append((t1 - t0) * 1000)
                        sql.append((t2 - t1) * 1000)
                results[label] = (api, sql)
    return results


def run(ctx: BenchContext) -> None:
    seconds = ctx.scale(7 * 86_400, 2 * 3600)
    rounds = ctx.scale(200, 10)
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, PostgresServer(
        Path(tmp) / "data", ephemeral=True
    ) as server:
        url = server.endpoint.url
        copy_seconds = load(url, seconds=seconds, end=end)
        ctx.record("copy_rows_per_s", seconds / copy_seconds, "rows/s", notes="binary COPY of the data set, context")
        load_before = os.getloadavg()[0]
        results = asyncio.run(measure(url, end=end, rounds=rounds))
        # Latency on a shared 2-core machine moves with what else runs: keep the load next to the figures.
        load_note = f"load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    for label, (api, sql) in results.items():
        for pct in (50, 95):
            ctx.record(
                f"series_{label}_p{pct}", percentile(api, pct), "ms",
                baseline=percentile(sql, pct), baseline_name="SQL alone", higher_is_better=False,
                target=TARGET_P95_MS if pct == 95 else None,
                notes=f"{seconds:,} rows at 1 Hz, max_points=1000, {len(api)} requests, {load_note}",
            )
