"""The local stack launcher with real servers: start, restart, crash recovery, signals and orphans."""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from deploy.binaries import postgres_pkglibdir, require_postgres_bin
from deploy.children import pid_running
from deploy.mosquitto import MosquittoServer, MqttCredentials
from deploy.ports import LOOPBACK, accepts_connections, wait_until
from deploy.postgres import PostgresEndpoint, PostgresServer
from deploy.stack import DatabaseSettings, MqttSettings, Stack, StackSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def expected_mode() -> str:
    """'timescale' exactly when the TimescaleDB library is installed for this PostgreSQL ('plain' here)."""
    return "timescale" if (postgres_pkglibdir(require_postgres_bin()) / "timescaledb.so").exists() else "plain"


def query(endpoint: PostgresEndpoint, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(endpoint.url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


def execute(endpoint: PostgresEndpoint, sql: str) -> None:
    with psycopg.connect(endpoint.url, autocommit=True) as conn:
        conn.execute(sql)


def mqtt_login_works(host: str, port: int, login: MqttCredentials) -> bool:
    replies: queue.Queue[bool] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, reconnect_on_failure=False)
    client.username_pw_set(login.username, login.password)
    client.on_connect = lambda c, u, flags, rc, props: replies.put(not rc.is_failure)
    client.connect(host, port)
    client.loop_start()
    try:
        return replies.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def descendants(root: int) -> set[int]:
    """All live processes below `root` in the process tree."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {pid for pid in found if pid_running(pid)}


# -- PostgreSQL ------------------------------------------------------------------------------------------------


def test_postgres_starts_answers_reports_its_mode_and_restarts_on_the_same_data(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    with PostgresServer(data, ephemeral=True) as server:
        first = server.endpoint
        assert server.mode == expected_mode() == first.mode
        assert query(first, "SELECT current_user, current_database()") == [("telemed", "telemed")]
        assert query(first, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") == [(False,)]
        assert query(first, "SHOW listen_addresses") == [("127.0.0.1",)]
        assert query(first, "SHOW fsync") == [("off",)]
        execute(first, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        assert stat.S_IMODE((data / "telemed.json").stat().st_mode) == 0o600
    assert not server.is_running()
    assert not accepts_connections(LOOPBACK, first.port)

    with PostgresServer(data, ephemeral=True) as again:
        assert again.endpoint.password == first.password  # generated once, at initdb
        assert query(again.endpoint, "SELECT v FROM kept") == [(42,)]


def test_postgres_refuses_a_wrong_password(postgres: PostgresEndpoint) -> None:
    wrong = PostgresEndpoint(**{**postgres.__dict__, "password": "wrong"})
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        query(wrong, "SELECT 1")


def test_persistent_cluster_keeps_fsync_on(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as server:
        assert query(server.endpoint, "SHOW fsync") == [("on",)]


def test_postgres_killed_by_sigkill_does_not_block_the_next_start(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    crashed = PostgresServer(data, ephemeral=True)
    crashed.start()
    pid = crashed.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_running(pid), timeout=10)
        assert (data / "postmaster.pid").exists()  # stale: its process is gone

        with PostgresServer(data, ephemeral=True) as server:
            assert query(server.endpoint, "SELECT 1") == [(1,)]
    finally:
        crashed.stop()  # reaps the dead child


def test_a_server_still_running_on_the_data_dir_is_stopped_first(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    leftover = PostgresServer(data, ephemeral=True)
    leftover.start()
    try:
        with PostgresServer(data, ephemeral=True) as server:
            assert not leftover.is_running()
            assert query(server.endpoint, "SELECT 1") == [(1,)]
    finally:
        leftover.stop()


def test_database_fixture_gives_an_empty_database_of_the_app_role(database: PostgresEndpoint) -> None:
    assert database.database.startswith("test_")
    assert query(database, "SELECT current_database(), current_user") == [(database.database, database.user)]
    assert query(database, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    execute(database, "CREATE TABLE mine (v int)")


# -- Mosquitto -------------------------------------------------------------------------------------------------


def test_mosquitto_killed_by_sigkill_does_not_block_the_next_start_and_keeps_logins(tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    crashed = MosquittoServer(directory)
    crashed.start()
    login = crashed.add_edge("edge-k")
    pid = crashed.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not pid_running(pid), timeout=10)
        assert (directory / "mosquitto.pid").exists()  # stale: its process is gone

        with MosquittoServer(directory) as broker:
            assert broker.credentials("edge-k") == login
            assert mqtt_login_works(broker.host, broker.port, login)
            assert mqtt_login_works(broker.host, broker.port, broker.cloud)
    finally:
        crashed.stop()


def test_a_broker_still_running_on_the_directory_is_stopped_first(tmp_path: Path) -> None:
    leftover = MosquittoServer(tmp_path / "broker")
    leftover.start()
    try:
        with MosquittoServer(tmp_path / "broker") as broker:
            assert not leftover.is_running()
            assert mqtt_login_works(broker.host, broker.port, broker.cloud)
    finally:
        leftover.stop()


def test_broker_files_are_private_to_the_broker(mosquitto: MosquittoServer) -> None:
    for name in ("passwd", "acl", "state.json"):
        assert stat.S_IMODE((mosquitto.directory / name).stat().st_mode) == 0o600
    assert "cloud:$7$101$" in (mosquitto.directory / "passwd").read_text()


# -- Stack -----------------------------------------------------------------------------------------------------


def test_stack_pointed_at_existing_servers_starts_nothing(
    tmp_path: Path, postgres: PostgresEndpoint, mosquitto: MosquittoServer
) -> None:
    settings = StackSettings(
        var_dir=tmp_path / "var",
        database=DatabaseSettings(url=postgres.url),
        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port, password=mosquitto.cloud.password),
    )
    with Stack(settings) as stack:
        assert stack.postgres is None and stack.mosquitto is None
        endpoints = stack.endpoints
        assert (endpoints.database.url, endpoints.database.mode, endpoints.database.managed) == (
            postgres.url, postgres.mode, False
        )
        assert (endpoints.mqtt.host, endpoints.mqtt.port, endpoints.mqtt.cloud) == (
            mosquitto.host, mosquitto.port, mosquitto.cloud
        )
        path = stack.write_endpoints(extra={"dashboard": {"url": "http://127.0.0.1:1/"}})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document["database"]["url"] == postgres.url
    assert document["mqtt"]["cloud"] == {"username": "cloud", "password": mosquitto.cloud.password}
    assert document["dashboard"] == {"url": "http://127.0.0.1:1/"}
    assert not (tmp_path / "var" / "postgres").exists()
    assert not (tmp_path / "var" / "mosquitto").exists()


def test_stack_starts_both_servers_and_provisions_edges(tmp_path: Path) -> None:
    settings = StackSettings(var_dir=tmp_path / "var", edges=("county-a",))
    with Stack(settings, ephemeral=True) as stack:
        endpoints = stack.endpoints
        assert endpoints.database.managed and endpoints.mqtt.managed
        assert set(endpoints.mqtt.edges) == {"county-a"}
        assert mqtt_login_works(endpoints.mqtt.host, endpoints.mqtt.port, endpoints.mqtt.edges["county-a"])
        county_b = stack.add_edge("county-b")
        assert mqtt_login_works(endpoints.mqtt.host, endpoints.mqtt.port, county_b)
        assert set(stack.endpoints.mqtt.edges) == {"county-a", "county-b"}
        with psycopg.connect(endpoints.database.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert stack.dead_services() == []
    assert stack.dead_services() == []  # stopped servers are forgotten, not reported dead


# -- The launcher process --------------------------------------------------------------------------------------


class Launcher:
    """`python -m deploy` as a subprocess, its stdout collected line by line."""

    def __init__(self, var: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
        self.var = var
        self.stderr_path = var.with_name(var.name + "-launcher.err")
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploy", "--var", str(var), "--edge", "county-a"],
                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_until_up(self, timeout: float = 60.0) -> list[str]:
        seen: list[str] = []
        while not seen or seen[-1] != "stack up; Ctrl-C to stop":
            try:
                seen.append(self.lines.get(timeout=timeout))
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"launcher not up; stdout={seen} stderr={self.stderr_path.read_text()}")
        return seen


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    started = Launcher(tmp_path / "var")
    yield started
    if started.proc.poll() is None:
        started.proc.kill()
        started.proc.wait()


def test_launcher_prints_endpoints_writes_them_and_exits_cleanly_on_sigint(launcher: Launcher) -> None:
    output = launcher.wait_until_up()
    endpoints_path = launcher.var / "endpoints.json"
    document = json.loads(endpoints_path.read_text())
    assert stat.S_IMODE(endpoints_path.stat().st_mode) == 0o600
    assert any(line.startswith("database  postgresql://telemed:***@127.0.0.1:") for line in output)
    assert f"mqtt      127.0.0.1:{document['mqtt']['port']}  cloud user: cloud" in output
    assert all(document["database"]["url"].split("@")[0].split(":")[-1] not in line for line in output)
    assert document["database"]["mode"] == expected_mode()
    with psycopg.connect(document["database"]["url"]) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    edge = MqttCredentials(**document["mqtt"]["edges"]["county-a"])
    assert mqtt_login_works(LOOPBACK, document["mqtt"]["port"], edge)
    children = descendants(launcher.proc.pid)
    assert len(children) >= 2  # the postmaster (and its backends) and mosquitto

    launcher.proc.send_signal(signal.SIGINT)

    assert launcher.proc.wait(timeout=60) == 0
    assert not any(pid_running(pid) for pid in children)


def test_launcher_killed_by_sigkill_leaves_no_orphans_and_restarts(launcher: Launcher) -> None:
    launcher.wait_until_up()
    children = descendants(launcher.proc.pid)
    assert len(children) >= 2

    launcher.proc.kill()
    launcher.proc.wait()

    # PR_SET_PDEATHSIG: the kernel signals each server when the launcher dies; they shut down by themselves.
    assert wait_until(lambda: not any(pid_running(pid) for pid in children), timeout=30)
    again = Launcher(launcher.var)
    try:
        again.wait_until_up()
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(timeout=60) == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()
