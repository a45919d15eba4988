"""`telemed-cloud oncall seed-demo` and `telemed-cloud alerting` as an operator runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from cloud.alerting.channel_secrets import open_config
from cloud.api.auth.passwords import hash_password
from cloud.cli import main
from cloud.db.migrate import migrate
from cloud.identity.keys import KeySource
from cloud.settings import load as load_settings
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresEndpoint
from tests.integration.test_alerting_support import rows

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# The demo's users (deploy/system.py DEMO_USERS): who serves which county hospital.
DEMO = (("admin", ["admin"], None), ("dr.wang", ["county_doctor"], "anxian"),
        ("dr.li", ["county_doctor", "on_call"], "pingxiang"), ("prof.zhang", ["expert"], None),
        ("dr.zhao", ["on_call"], None))


def demo_database(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO sites (site_id, name, name_zh) VALUES ('anxian', 'Anxian', '安县人民医院'),"
                     " ('pingxiang', 'Pingxiang', '平乡县医院')")
        conn.execute("INSERT INTO patients (patient_id, site_id, ward, bed) VALUES ('ax-1', 'anxian', 'ICU', '1'),"
                     " ('ax-2', 'anxian', 'Ward 3', '2')")
        for username, roles, site in DEMO:
            conn.execute("INSERT INTO users (username, password_hash, roles, site_id) VALUES (%s, %s, %s, %s)",
                         (username, hash_password("x-Secret-1"), roles, site))


def test_seed_demo_builds_rotas_from_the_existing_users_and_can_run_again(
        database: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    demo_database(database.url)
    monkeypatch.setenv("TELEMED_DATABASE__URL", database.url)
    monkeypatch.setenv("TELEMED_KEYS__DIR", str(tmp_path / "keys"))
    for _ in range(2):  # idempotent
        assert main(["oncall", "seed-demo", "--webhook", "http://127.0.0.1:9/hook", "--webhook-secret", "s"]) == 0
    printed = capsys.readouterr().out
    assert "anxian: head dr.wang; primary dr.zhao; secondary dr.wang" in printed
    assert "pingxiang: head dr.li; primary dr.li, dr.zhao; secondary dr.zhao, dr.li" in printed
    departments = rows(database.url, "SELECT site_id, department_id, is_default, wards FROM alerting_departments"
                                     " ORDER BY site_id")
    assert departments == [("anxian", "general", True, ["ICU", "Ward 3"]), ("pingxiang", "general", True, [])]
    rotas = rows(database.url, "SELECT r.site_id, r.tier, array(SELECT u.username FROM unnest(r.members)"
                               " WITH ORDINALITY m(id, n) JOIN users u ON u.user_id = m.id ORDER BY n), r.timezone"
                               " FROM oncall_rotations r ORDER BY 1, 2")
    assert rotas == [("anxian", "primary", ["dr.zhao"], "Asia/Shanghai"),
                     ("anxian", "secondary", ["dr.wang"], "Asia/Shanghai"),
                     ("pingxiang", "primary", ["dr.li", "dr.zhao"], "Asia/Shanghai"),
                     ("pingxiang", "secondary", ["dr.zhao", "dr.li"], "Asia/Shanghai")]
    assert rows(database.url, "SELECT site_id, department_id FROM escalation_policies ORDER BY 1") == [
        ("anxian", ""), ("pingxiang", "")]
    reached = rows(database.url, "SELECT u.username FROM user_contacts c JOIN users u USING (user_id) ORDER BY 1")
    assert [r[0] for r in reached] == ["dr.li", "dr.wang", "dr.zhao"]
    assert main(["oncall", "seed-demo", "--webhook", "http://127.0.0.1:9/hook"]) == 1  # a webhook needs its secret

    # A restarted demo re-points its one pager channel and leaves rotas an admin may have edited alone.
    with psycopg.connect(database.url, autocommit=True) as conn:
        conn.execute("UPDATE oncall_rotations SET members = members[1:1] WHERE site_id = 'pingxiang'"
                     " AND tier = 'primary'")
    assert main(["oncall", "seed-demo", "--webhook", "http://127.0.0.1:7/new", "--webhook-secret", "t",
                 "--webhook-only"]) == 0
    (channel_id, config), = rows(database.url, "SELECT channel_id, config FROM notification_channels")
    assert "127.0.0.1" not in json.dumps(config)  # sealed at rest under the identity keys
    ring = KeySource.from_settings(load_settings()).ring()
    assert open_config(ring, channel_id, config) == {"url": "http://127.0.0.1:7/new", "secret": "t"}
    assert rows(database.url, "SELECT cardinality(members) FROM oncall_rotations WHERE site_id = 'pingxiang'"
                              " AND tier = 'primary'") == [(1,)]
    assert main(["oncall", "seed-demo", "--webhook-only"]) == 1  # nothing to point


def test_the_alerting_command_runs_until_sigterm(database: PostgresEndpoint, mosquitto: MosquittoServer,
                                                 tmp_path: Path) -> None:
    demo_database(database.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")} | {
        "TELEMED_DATABASE__URL": database.url, "TELEMED_MQTT__HOST": mosquitto.host,
        "TELEMED_MQTT__PORT": str(mosquitto.port), "TELEMED_MQTT__USERNAME": mosquitto.cloud.username,
        "TELEMED_MQTT__PASSWORD": mosquitto.cloud.password,
        "TELEMED_ALERTING__CLIENT_ID": f"alerting-cli-{uuid.uuid4().hex[:8]}",
    }
    log = tmp_path / "alerting.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cloud.cli", "alerting"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "alerting.started" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "alerting.stopped" in log.read_text(errors="replace")
