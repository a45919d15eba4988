"""`telemed-cloud user add` and `telemed-cloud serve` (a real uvicorn on loopback, migrating an empty database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from cloud.api.auth.passwords import verify_password
from cloud.cli import main
from deploy.ports import free_loopback_port
from deploy.postgres import PostgresEndpoint

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_user_add_hashes_the_password_from_a_file(
    database: PostgresEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEMED_DATABASE_URL", database.url)
    assert main(["migrate"]) == 0
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (site_id, name) VALUES ('site-a', 'County A')")
    secret = tmp_path / "pw"
    secret.write_text("s3cret-horse\n")
    args = ["user", "add", "--username", "Dr.Li", "--role", "county_doctor", "--role", "expert", "--site", "site-a",
            "--password-file", str(secret)]
    assert main(args) == 0
    assert "user dr.li (county_doctor, expert) created" in capsys.readouterr().out
    with psycopg.connect(database.url) as conn:
        row = conn.execute("SELECT roles, site_id, password_hash FROM users WHERE username = 'dr.li'").fetchone()
    assert row is not None and sorted(row[0]) == ["county_doctor", "expert"] and row[1] == "site-a"
    assert "s3cret-horse" not in row[2] and verify_password("s3cret-horse", row[2])

    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    no_site = ["user", "add", "--username", "x", "--role", "county_doctor", "--password-file", str(secret)]
    assert main(no_site) == 1
    assert "needs a site" in capsys.readouterr().err
    wrong_site = [*no_site[:-2], "--site", "nowhere", "--password-file", str(secret)]
    assert main(wrong_site) == 1
    assert "no site" in capsys.readouterr().err


def test_serve_migrates_then_answers_on_loopback_and_stops_on_sigint(database: PostgresEndpoint) -> None:
    port = free_loopback_port()
    env = {**os.environ, "TELEMED_DATABASE_URL": database.url, "TELEMED_API__HOST": "127.0.0.1",
           "TELEMED_API__PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "cloud.cli", "serve"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)
        with psycopg.connect(database.url) as conn:  # the schema was created by serve itself
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        assert row is not None and row[0] >= 2
        response = httpx.get(f"{base}/api/patients", timeout=5)
        assert response.status_code == 401 and response.headers["cache-control"] == "no-store"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            status = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert status == 0
