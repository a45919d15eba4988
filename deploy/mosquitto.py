"""A private Mosquitto broker: generated config, password file and ACL, run as our child on a loopback port.

Layout of `directory`: `mosquitto.conf`, `passwd`, `acl` (owned by the broker's account, 0600), `data/`
(persistence), `mosquitto.pid`, and `state.json` (ours, 0600: the port and the generated plaintext passwords,
which endpoints.json hands to the cloud and the edges). The broker log is the sibling file `<directory>.log`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy.accounts import ServiceUser, ensure_traversable, make_dir, service_user, write_file
from deploy.binaries import require_binary
from deploy.children import (
    StopPlan,
    log_tail,
    pid_cmdline,
    pid_running,
    processes,
    read_pid_file,
    server_env,
    spawn,
    stop_child,
    stop_pid,
)
from deploy.errors import DeployError, ServiceStartError, ServiceStateError
from deploy.mosquitto_files import (
    TlsListener,
    render_acl,
    render_config,
    render_password_file,
    validate_username,
)
from deploy.ports import LOOPBACK, accepts_connections, free_loopback_port, is_port_free, wait_until

log = logging.getLogger(__name__)

SERVICE = "mosquitto"
# SIGTERM: mosquitto saves its persistence file and exits (mosquitto(8), SIGNALS).
_STOP_PLAN: StopPlan = ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0))
_START_ATTEMPTS = 3
_RELOAD_LINE = "Reloading config."


@dataclass(frozen=True)
class MqttCredentials:
    """A broker login."""

    username: str
    password: str = field(repr=False)


class MosquittoServer:
    """A private broker in `directory`, started and stopped by us (a context manager).

    Users: the cloud user (created at first start) and any edge added with `add_edge`; passwords are
    generated and kept in state.json so they survive restarts.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        cloud_user: str = "cloud",
        tls: TlsListener | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        self.directory = directory.absolute()
        self.log_path = self.directory.with_name(self.directory.name + ".log")
        self.host = LOOPBACK
        self._requested_port = port
        self._cloud_user = validate_username(cloud_user)
        self._tls = tls
        self._tls_active: TlsListener | None = None
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._user: ServiceUser | None = None
        self._port: int | None = None
        self._passwords: dict[str, str] = {}
        self._loaded = False

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    def start(self) -> None:
        """Write the config and credentials, start the broker and wait until it accepts connections."""
        if self.is_running():
            raise ServiceStateError(f"mosquitto in {self.directory} is already running")
        binary = require_binary("mosquitto", "mosquitto")
        self._ensure_loaded()
        ensure_traversable(self.config_path, self._user)
        make_dir(self.directory / "data", mode=0o700, owner=self._user)
        self._clear_leftovers()
        self._write_auth_files()
        state = self._read_state()
        port = self._choose_port(state)
        try:
            self._install_tls(state, avoid=port)
            self._port = self._launch(binary, port)
            write_file(self.directory / "mosquitto.pid", f"{self.pid}\n", mode=0o644)
            self._save_state()
        except BaseException:
            self.stop()
            raise
        log.info("mosquitto.started port=%d users=%d dir=%s pid=%s", self._port, len(self._passwords),
                 self.directory, self.pid)

    def stop(self) -> None:
        """Stop the broker (it saves its persistence on SIGTERM); safe to call when not running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        status = stop_child(proc, _STOP_PLAN)
        (self.directory / "mosquitto.pid").unlink(missing_ok=True)
        log.info("mosquitto.stopped dir=%s status=%s", self.directory, status)

    def __enter__(self) -> MosquittoServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The plain MQTT listener's port (while running)."""
        if self._port is None or not self.is_running():
            raise ServiceStateError("mosquitto is not running")
        return self._port

    @property
    def tls_port(self) -> int | None:
        """The TLS listener's port, when one is configured."""
        return self._tls_active.port if self._tls_active is not None else None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def cloud(self) -> MqttCredentials:
        """The cloud service's login."""
        return self.credentials(self._cloud_user)

    @property
    def users(self) -> tuple[str, ...]:
        self._ensure_loaded()
        return tuple(sorted(self._passwords))

    def credentials(self, username: str) -> MqttCredentials:
        """The login of an existing user."""
        self._ensure_loaded()
        try:
            return MqttCredentials(username, self._passwords[username])
        except KeyError as exc:
            raise DeployError(f"no broker user {username!r}") from exc

    # -- provisioning -------------------------------------------------------------------------------------------

    def add_edge(self, edge_id: str, *, reload: bool = True) -> MqttCredentials:
        """Create (or return) the login of edge `edge_id`; its username is the edge id, as the ACL expects."""
        if edge_id == self._cloud_user:
            raise DeployError(f"an edge cannot be named like the cloud user {self._cloud_user!r}")
        return self.add_user(edge_id, reload=reload)

    def add_user(self, username: str, password: str | None = None, *, reload: bool = True) -> MqttCredentials:
        """Create or update a login (a generated password unless given); reloads a running broker."""
        validate_username(username)
        self._ensure_loaded()
        if password is None and username in self._passwords:
            return self.credentials(username)
        self._passwords[username] = password if password is not None else secrets.token_urlsafe(24)
        self._persist_users(reload)
        log.info("mosquitto.user_added username=%s", username)
        return self.credentials(username)

    def remove_user(self, username: str, *, reload: bool = True) -> bool:
        """Revoke a login (whether it existed); after the reload, the broker refuses and drops that user."""
        if username == self._cloud_user:
            raise DeployError("the cloud user cannot be removed")
        self._ensure_loaded()
        if self._passwords.pop(username, None) is None:
            return False
        self._persist_users(reload)
        log.info("mosquitto.user_removed username=%s", username)
        return True

    def reload(self, *, timeout: float = 5.0) -> None:
        """Make the broker re-read its password and ACL files (SIGHUP) and wait until it has."""
        if self._proc is None or not self.is_running():
            raise ServiceStateError("mosquitto is not running")
        offset = self.log_path.stat().st_size
        self._proc.send_signal(signal.SIGHUP)
        # Mosquitto logs the line and re-reads the files in the same main-loop pass, before serving anyone.
        if not wait_until(functools.partial(self._logged_since, offset, _RELOAD_LINE), timeout=timeout):
            raise ServiceStateError(f"mosquitto did not reload within {timeout:.0f} s")

    # -- steps -----------------------------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        """Read the saved logins once (before start, users can be provisioned already)."""
        if self._loaded:
            return
        self._user = service_user("mosquitto", "mosquitto")
        # Ours, but enterable by the broker's account, which must read its files and write data/.
        make_dir(self.directory, mode=0o711)
        saved = self._read_state().get("passwords", {})
        self._passwords = {str(k): str(v) for k, v in dict(saved).items()}
        self._passwords.setdefault(self._cloud_user, secrets.token_urlsafe(24))
        self._loaded = True

    def _logged_since(self, offset: int, text: str) -> bool:
        with self.log_path.open("rb") as handle:
            handle.seek(offset)
            return text.encode() in handle.read()

    def _persist_users(self, reload: bool) -> None:
        self._write_auth_files()
        self._save_state()
        if reload and self.is_running():
            self.reload()

    def _write_auth_files(self) -> None:
        write_file(self.directory / "passwd", render_password_file(self._passwords), owner=self._user)
        write_file(self.directory / "acl", render_acl(self._cloud_user), owner=self._user)

    def _launch(self, binary: Path, port: int) -> int:
        for attempt in range(1, _START_ATTEMPTS + 1):
            config = render_config(
                host=self.host, port=port, password_file=self.directory / "passwd", acl_file=self.directory / "acl",
                persistence_dir=self.directory / "data", tls=self._tls_active,
            )
            write_file(self.config_path, config, owner=self._user)
            self._proc = spawn(
                [str(binary), "-c", str(self.config_path)],
                service=SERVICE, log_path=self.log_path, user=self._user, cwd=self.directory, env=server_env(),
                death_signal=signal.SIGTERM,
            )
            ports = [port] if self._tls_active is None else [port, self._tls_active.port]
            ready = all(
                wait_until(functools.partial(self._up_or_dead, p), timeout=self._start_timeout) for p in ports
            )
            if ready and self.is_running():
                return port
            reason = "exited during start-up" if ready else f"not accepting connections after {self._start_timeout} s"
            self.stop()
            tail = log_tail(self.log_path)
            if "Address already in use" in tail and self._requested_port is None and attempt < _START_ATTEMPTS:
                log.warning("mosquitto.port_taken port=%d attempt=%d", port, attempt)
                port = free_loopback_port(avoid=frozenset(ports))
                if self._tls is not None and self._tls.port == 0 and self._tls_active is not None:
                    self._tls_active = replace(self._tls_active, port=free_loopback_port(avoid=frozenset(ports)))
                continue
            raise ServiceStartError(SERVICE, reason, tail)
        raise AssertionError("unreachable")

    def _install_tls(self, state: dict[str, Any], *, avoid: int) -> None:
        """Copy the certificate files into the broker's directory, readable by its account only."""
        if self._tls is None:
            return
        tls_dir = self.directory / "tls"
        make_dir(tls_dir, mode=0o700, owner=self._user)
        installed = {}
        for name, source in (("ca.pem", self._tls.cafile), ("cert.pem", self._tls.certfile),
                             ("key.pem", self._tls.keyfile)):
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise ServiceStateError(f"cannot read TLS file {source}: {exc.strerror}") from exc
            write_file(tls_dir / name, data, mode=0o600, owner=self._user)
            installed[name] = tls_dir / name
        port = self._tls.port
        if port == 0:
            last = state.get("tls_port")
            if isinstance(last, int) and last != avoid and is_port_free(last):
                port = last
            else:
                port = free_loopback_port(avoid=frozenset({avoid}))
        self._tls_active = replace(
            self._tls, port=port, cafile=installed["ca.pem"], certfile=installed["cert.pem"],
            keyfile=installed["key.pem"],
        )

    def _up_or_dead(self, port: int) -> bool:
        return not self.is_running() or accepts_connections(self.host, port)

    def _choose_port(self, state: dict[str, Any]) -> int:
        if self._requested_port is not None:
            return self._requested_port
        last = state.get("port")
        if isinstance(last, int) and is_port_free(last):
            return last
        return free_loopback_port()

    def _clear_leftovers(self) -> None:
        """Stop a broker left running on this directory by a crashed launcher; drop a stale pid file."""
        config = str(self.config_path)
        for pid in processes():
            argv = pid_cmdline(pid)
            if pid != os.getpid() and argv and Path(argv[0]).name == "mosquitto" and config in argv:
                log.warning("mosquitto.stopping_leftover_broker pid=%d dir=%s", pid, self.directory)
                stop_pid(pid, _STOP_PLAN)
        pid_file = self.directory / "mosquitto.pid"
        stale = read_pid_file(pid_file)
        if stale is not None and not (pid_running(stale) and config in pid_cmdline(stale)):
            pid_file.unlink(missing_ok=True)
            log.info("mosquitto.stale_pid_file_removed pid=%d", stale)

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.directory / "state.json").read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ServiceStateError(f"unreadable {self.directory / 'state.json'}: {exc}") from exc
        return data if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        previous = self._read_state()
        state = {
            "port": self._port if self._port is not None else previous.get("port"),
            "tls_port": self.tls_port if self.tls_port is not None else previous.get("tls_port"),
            "cloud_user": self._cloud_user,
            "passwords": self._passwords,
        }
        write_file(self.directory / "state.json", json.dumps(state, indent=2) + "\n", mode=0o600)
