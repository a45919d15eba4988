"""Broker logins of edges (port), for provisioning and revocation.

`BrokerAdmin` is what provisioning needs from any broker: create a login, remove one, and have the broker
apply the change at once (a removed edge's CONNECT is refused; mosquitto also drops its open connection
on reload). `MosquittoAdmin` implements it for our private Mosquitto (deploy.mosquitto), whether this
process runs it (tests, `make run`) or another one does (`telemed-cloud edge add` against the broker
directory of `mqtt.admin_dir`). `InMemoryBrokerAdmin` is the fake for unit tests.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Protocol

from deploy.errors import DeployError
from deploy.mosquitto import MosquittoServer

log = logging.getLogger(__name__)

_RELOAD_LINE = b"Reloading config."  # what mosquitto logs when SIGHUP made it re-read its files


class BrokerAdminError(Exception):
    """The broker's logins could not be changed or reloaded."""


class BrokerAdmin(Protocol):
    def add_user(self, username: str, password: str) -> None:
        """Create (or reset) a login; effective when this returns."""

    def remove_user(self, username: str) -> bool:
        """Remove a login (whether it existed); effective when this returns."""


class InMemoryBrokerAdmin:
    """Logins in a dict (unit tests)."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.fail_next: Exception | None = None

    def add_user(self, username: str, password: str) -> None:
        self._maybe_fail()
        self.users[username] = password

    def remove_user(self, username: str) -> bool:
        self._maybe_fail()
        return self.users.pop(username, None) is not None

    def _maybe_fail(self) -> None:
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure


class MosquittoAdmin:
    """Logins of a deploy.mosquitto broker: edits its password file and makes the broker reload it."""

    def __init__(self, broker: MosquittoServer | Path, *, reload_timeout_s: float = 5.0) -> None:
        self._server = broker if isinstance(broker, MosquittoServer) else MosquittoServer(broker)
        self._reload_timeout_s = reload_timeout_s

    def add_user(self, username: str, password: str) -> None:
        try:
            self._server.add_user(username, password, reload=False)
        except DeployError as exc:
            raise BrokerAdminError(f"cannot add broker login {username!r}: {exc}") from exc
        self._reload()

    def remove_user(self, username: str) -> bool:
        try:
            removed = self._server.remove_user(username, reload=False)
        except DeployError as exc:
            raise BrokerAdminError(f"cannot remove broker login {username!r}: {exc}") from exc
        self._reload()
        return removed

    def _reload(self) -> None:
        server = self._server
        try:
            if server.is_running():
                server.reload(timeout=self._reload_timeout_s)
                return
        except DeployError as exc:
            raise BrokerAdminError(f"broker reload failed: {exc}") from exc
        self._reload_foreign()

    def _reload_foreign(self) -> None:
        """SIGHUP the broker another process runs on this directory, and wait until it has reloaded."""
        directory = self._server.directory
        pid = _read_pid(directory / "mosquitto.pid")
        if pid is None or not _is_broker_of(pid, self._server.config_path):
            # Not running: it reads the new files when it starts.
            log.info("edges.broker_not_running dir=%s", directory)
            return
        log_path = self._server.log_path
        offset = log_path.stat().st_size if log_path.exists() else 0
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise BrokerAdminError(f"cannot signal the broker (pid {pid}): {exc.strerror}") from exc
        deadline = time.monotonic() + self._reload_timeout_s
        while time.monotonic() < deadline:
            if _logged_since(log_path, offset):
                return
            time.sleep(0.05)
        raise BrokerAdminError(f"the broker (pid {pid}) did not reload within {self._reload_timeout_s:.0f} s")


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def _is_broker_of(pid: int, config: Path) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and Path(argv[0].decode(errors="replace")).name == "mosquitto" and str(config).encode() in argv


def _logged_since(path: Path, offset: int) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return _RELOAD_LINE in handle.read()
    except OSError:
        return False
