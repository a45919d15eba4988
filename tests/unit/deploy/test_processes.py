"""deploy.ports, deploy.children, deploy.accounts, deploy.binaries: the launcher's plumbing (no servers)."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import binaries
from deploy.accounts import ServiceUser, ensure_traversable, write_file
from deploy.children import log_tail, pid_running, read_pid_file
from deploy.errors import BinaryNotFoundError
from deploy.pgadmin import make_url, redact_url
from deploy.ports import accepts_connections, free_loopback_port, is_port_free, wait_until


def test_free_port_is_bindable_and_avoids_the_given_ones() -> None:
    port = free_loopback_port()
    assert is_port_free(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not is_port_free(port)
        assert accepts_connections("127.0.0.1", port)
    assert not accepts_connections("127.0.0.1", port)
    assert all(free_loopback_port(avoid=frozenset({port})) != port for _ in range(20))


def test_wait_until_reports_timeout() -> None:
    calls = iter(range(10))
    assert wait_until(lambda: next(calls) >= 3, timeout=5, interval=0.001)
    assert not wait_until(lambda: False, timeout=0.05, interval=0.01)


def test_zombies_and_reaped_processes_are_not_running() -> None:
    assert pid_running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_until(lambda: not pid_running(child.pid), timeout=10)  # exited, not yet reaped: a zombie
    assert child.poll() == 0
    assert not pid_running(child.pid)


def test_log_tail_starts_at_the_latest_start_marker(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(
        "--- telemed deploy: starting x at 1 ---\nold failure\n--- telemed deploy: starting x at 2 ---\nnew 1\nnew 2\n"
    )
    assert log_tail(log) == "new 1\nnew 2"
    assert log_tail(log, lines=1) == "new 2"
    assert log_tail(tmp_path / "absent.log") == ""


def test_read_pid_file(tmp_path: Path) -> None:
    pid_file = tmp_path / "postmaster.pid"
    pid_file.write_text("4242\n/data\n")
    assert read_pid_file(pid_file) == 4242
    pid_file.write_text("garbage\n")
    assert read_pid_file(pid_file) is None
    assert read_pid_file(tmp_path / "absent") is None


def test_write_file_is_atomic_with_mode(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    write_file(target, "one", mode=0o600)
    write_file(target, b"two", mode=0o640)
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]


def test_ensure_traversable_adds_search_permission_only_where_missing(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    user = ServiceUser("nobody", nobody.pw_uid, nobody.pw_gid)
    closed = tmp_path / "closed"
    (closed / "open" / "data").mkdir(parents=True)
    closed.chmod(0o700)
    (closed / "open").chmod(0o755)
    tmp_path.chmod(0o755)

    changed = ensure_traversable(closed / "open" / "data", user)
    # pytest's own base temp dirs are 0700 too, so they may be in the list; the open dir is not.
    assert changed[-1] == closed
    assert all(closed.is_relative_to(p) for p in changed)
    assert stat.S_IMODE(closed.stat().st_mode) == 0o701  # search, still no listing
    assert ensure_traversable(closed / "open" / "data", user) == []
    assert ensure_traversable(closed / "open" / "data", None) == []


def test_find_postgres_bin_picks_the_newest_debian_version_with_initdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version, has_initdb in (("9.6", True), ("13", True), ("16", False)):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        if has_initdb:
            (bin_dir / "initdb").touch()
    monkeypatch.setattr(binaries, "_DEBIAN_PG_ROOT", tmp_path)
    monkeypatch.setattr(binaries, "_pg_config_value", lambda exe, flag: None)
    assert binaries.find_postgres_bin() == tmp_path / "13" / "bin"

    monkeypatch.setattr(binaries, "_pg_config_value", lambda exe, flag: tmp_path / "9.6" / "bin")
    assert binaries.find_postgres_bin() == tmp_path / "9.6" / "bin"  # pg_config on PATH wins

    monkeypatch.setattr(binaries, "_DEBIAN_PG_ROOT", tmp_path / "none")
    monkeypatch.setattr(binaries, "_pg_config_value", lambda exe, flag: None)
    assert binaries.find_postgres_bin() is None
    with pytest.raises(BinaryNotFoundError, match="apt install postgresql"):
        binaries.require_postgres_bin()


def test_missing_binary_names_its_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BinaryNotFoundError) as info:
        binaries.require_binary("mosquitto-not-installed", "mosquitto")
    assert info.value.package == "mosquitto"
    assert "apt install mosquitto" in str(info.value)


def test_urls_quote_credentials_and_redact_passwords() -> None:
    url = make_url(host="127.0.0.1", port=5, user="app", password="p@ss:/w", database="telemed")
    assert url == "postgresql://app:p%40ss%3A%2Fw@127.0.0.1:5/telemed"
    assert redact_url(url) == "postgresql://app:***@127.0.0.1:5/telemed"
    assert redact_url("postgresql://127.0.0.1/db") == "postgresql://127.0.0.1/db"
