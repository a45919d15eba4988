"""A private PostgreSQL cluster: initdb on first use, then `postgres` run as our child on a loopback port.

Layout of `data_dir` (the PGDATA): initdb's files, our `telemed.conf` (included from postgresql.conf),
`pg_hba.conf` (SCRAM only), the unix socket, and `telemed.json` (0600: generated passwords and last port).
The server log is the sibling file `<data_dir>.log`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from deploy import pgadmin, pgconfig
from deploy.accounts import ServiceUser, chown, ensure_traversable, make_dir, service_user, write_file
from deploy.binaries import postgres_pkglibdir, require_postgres_bin
from deploy.children import (
    StopPlan,
    log_tail,
    pid_cmdline,
    pid_cwd,
    pid_running,
    processes,
    read_pid_file,
    run_tool,
    server_env,
    spawn,
    stop_child,
    stop_pid,
)
from deploy.errors import ServiceStartError, ServiceStateError
from deploy.pgadmin import Mode
from deploy.ports import LOOPBACK, free_loopback_port, is_port_free

log = logging.getLogger(__name__)

SERVICE = "postgres"
STATE_NAME = "telemed.json"
SUPERUSER = "postgres"
# SIGINT is PostgreSQL's "fast shutdown" (roll back, checkpoint, exit); SIGQUIT "immediate" (crash-like);
# see PostgreSQL docs 19.5 "Shutting Down the Server".
_STOP_PLAN: StopPlan = ((signal.SIGINT, 30.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0))
# Unix socket paths are limited to 108 bytes (sun_path, unix(7)); PostgreSQL appends "/.s.PGSQL.<port>".
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")
_START_ATTEMPTS = 3


@dataclass(frozen=True)
class PostgresEndpoint:
    """How to reach one database of a running server, as the application role and as superuser."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    admin_user: str
    admin_password: str = field(repr=False)
    mode: Mode

    @property
    def url(self) -> str:
        """The application role's connection URL."""
        return pgadmin.make_url(
            host=self.host, port=self.port, user=self.user, password=self.password, database=self.database
        )

    @property
    def admin_url(self) -> str:
        """The superuser's connection URL (same database)."""
        return pgadmin.make_url(
            host=self.host, port=self.port, user=self.admin_user, password=self.admin_password,
            database=self.database,
        )

    def with_database(self, database: str) -> PostgresEndpoint:
        """The same server and roles, another database."""
        return replace(self, database=database)


@dataclass(frozen=True)
class _Credentials:
    superuser_password: str
    app_user: str
    app_password: str


class PostgresServer:
    """A private PostgreSQL cluster in `data_dir`, started and stopped by us (a context manager).

    `ephemeral=True` (tests) turns off fsync and full-page writes; never use it for data you keep.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        ephemeral: bool = False,
        database: str = "telemed",
        app_user: str = "telemed",
        bin_dir: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self._requested_port = port
        self._ephemeral = ephemeral
        self._database = database
        self._app_user = app_user
        self._bin_dir = bin_dir
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._endpoint: PostgresEndpoint | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> PostgresEndpoint:
        """Initialise the cluster if needed, start it, create the app role and database; its endpoint."""
        if self._proc is not None and self._proc.poll() is None:
            raise ServiceStateError(f"postgres in {self.data_dir} is already running")
        if len(str(self.data_dir)) > _MAX_SOCKET_DIR:
            raise ServiceStateError(f"data dir path too long for a unix socket (>{_MAX_SOCKET_DIR}): {self.data_dir}")
        bin_dir = self._bin_dir or require_postgres_bin()
        user = service_user("postgres", "postgresql")
        if not self.data_dir.parent.exists():
            make_dir(self.data_dir.parent, mode=0o755)
        ensure_traversable(self.data_dir, user)
        self._clear_leftovers()
        credentials = self._initialise(bin_dir, user)
        preload = (postgres_pkglibdir(bin_dir) / "timescaledb.so").exists()
        try:
            port = self._launch(bin_dir, user, preload, credentials.superuser_password)
            admin = pgadmin.make_url(
                host=LOOPBACK, port=port, user=SUPERUSER, password=credentials.superuser_password,
                database="postgres",
            )
            pgadmin.ensure_role(admin, credentials.app_user, credentials.app_password)
            pgadmin.ensure_database(admin, self._database, owner=credentials.app_user)
            endpoint = PostgresEndpoint(
                host=LOOPBACK, port=port, database=self._database, user=credentials.app_user,
                password=credentials.app_password, admin_user=SUPERUSER,
                admin_password=credentials.superuser_password, mode="plain",
            )
            mode = pgadmin.enable_timescaledb(endpoint.admin_url) if preload else "plain"
            self._endpoint = replace(endpoint, mode=mode)
            self._save_state(credentials, port, user)
        except BaseException:
            self.stop()
            raise
        log.info("postgres.started port=%d mode=%s data_dir=%s pid=%s", port, mode, self.data_dir, self.pid)
        return self._endpoint

    def stop(self) -> None:
        """Fast shutdown (escalating if needed); safe to call when not running."""
        proc, self._proc = self._proc, None
        self._endpoint = None
        if proc is None:
            return
        status = stop_child(proc, _STOP_PLAN)
        log.info("postgres.stopped data_dir=%s status=%s", self.data_dir, status)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- state -----------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> PostgresEndpoint:
        """The `telemed` database endpoint of the running server."""
        if self._endpoint is None:
            raise ServiceStateError("postgres is not running")
        return self._endpoint

    @property
    def mode(self) -> Mode:
        """'timescale' when the timescaledb extension is active in the database, else 'plain'."""
        return self.endpoint.mode

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while running."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """Whether the postmaster we started is still alive."""
        return self._proc is not None and self._proc.poll() is None

    # -- steps -----------------------------------------------------------------------------------------------

    def _initialise(self, bin_dir: Path, user: ServiceUser | None) -> _Credentials:
        state_path = self.data_dir / STATE_NAME
        initialised = (self.data_dir / "PG_VERSION").exists()
        if initialised:
            if not state_path.exists():
                raise ServiceStateError(
                    f"{self.data_dir} holds a cluster without its {STATE_NAME} (generated passwords): "
                    "it was not created by deploy; use another directory"
                )
            return self._load_credentials(state_path)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ServiceStateError(f"{self.data_dir} is not empty and not a PostgreSQL cluster; remove it")
        credentials = _Credentials(
            superuser_password=secrets.token_urlsafe(24),
            app_user=self._app_user,
            app_password=secrets.token_urlsafe(24),
        )
        make_dir(self.data_dir, mode=0o700, owner=user)
        fd, pwfile = tempfile.mkstemp(dir=self.data_dir.parent, prefix=".pwfile-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(credentials.superuser_password + "\n")
            chown(Path(pwfile), user)
            argv = [
                str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C",
                "--no-instructions",
            ]
            if self._ephemeral:
                argv.append("--no-sync")
            run_tool(argv, service=SERVICE, user=user, cwd=self.data_dir, env=server_env(), timeout=120)
        finally:
            Path(pwfile).unlink(missing_ok=True)
        conf = self.data_dir / "postgresql.conf"
        write_file(conf, pgconfig.with_include(conf.read_text()), mode=0o600, owner=user)
        write_file(self.data_dir / "pg_hba.conf", pgconfig.render_hba(), mode=0o600, owner=user)
        self._save_state(credentials, None, user)
        log.info("postgres.initialised data_dir=%s", self.data_dir)
        return credentials

    def _launch(self, bin_dir: Path, user: ServiceUser | None, preload: bool, password: str) -> int:
        """Start the postmaster and wait for logins; retries on another port if ours was taken meanwhile."""
        port = self._choose_port()
        for attempt in range(1, _START_ATTEMPTS + 1):
            config = pgconfig.ClusterConfig(
                port=port, socket_dir=self.data_dir, ephemeral=self._ephemeral, preload_timescaledb=preload
            )
            write_file(self.data_dir / pgconfig.CONF_NAME, pgconfig.render_conf(config), mode=0o600, owner=user)
            self._proc = spawn(
                [str(bin_dir / "postgres"), "-D", str(self.data_dir)],
                service=SERVICE, log_path=self.log_path, user=user, cwd=self.data_dir, env=server_env(),
                death_signal=signal.SIGINT,
            )
            url = pgadmin.make_url(host=LOOPBACK, port=port, user=SUPERUSER, password=password, database="postgres")
            failure = pgadmin.wait_ready(url, timeout=self._start_timeout, alive=self.is_running)
            if failure is None:
                return port
            self.stop()
            tail = log_tail(self.log_path)
            port_taken = "could not bind" in tail or "Address already in use" in tail
            if port_taken and self._requested_port is None and attempt < _START_ATTEMPTS:
                log.warning("postgres.port_taken port=%d attempt=%d", port, attempt)
                port = free_loopback_port(avoid=frozenset({port}))
                continue
            raise ServiceStartError(SERVICE, failure, tail)
        raise AssertionError("unreachable")

    def _choose_port(self) -> int:
        if self._requested_port is not None:
            return self._requested_port
        state = self._read_state()
        last = state.get("port")
        if isinstance(last, int) and is_port_free(last):
            return last
        return free_loopback_port()

    def _clear_leftovers(self) -> None:
        """Stop processes left from a crashed run on this data dir, and drop a stale postmaster.pid.

        Every PostgreSQL server process runs with its data dir as working directory, which identifies them
        even after the postmaster was killed and its backends were orphaned.
        """
        if not self.data_dir.exists():
            return
        pid_file = self.data_dir / "postmaster.pid"
        postmaster = read_pid_file(pid_file)
        target = self.data_dir.resolve()
        leftovers = [pid for pid in processes() if pid != os.getpid() and pid_cwd(pid) == target]
        if postmaster is not None and postmaster in leftovers and _is_postgres(postmaster):
            log.warning("postgres.stopping_leftover_server pid=%d data_dir=%s", postmaster, self.data_dir)
            stop_pid(postmaster, _STOP_PLAN)
        for pid in leftovers:
            if pid_running(pid) and _is_postgres(pid):
                # Orphaned backends exit by themselves once they notice the postmaster is gone.
                stop_pid(pid, ((signal.SIGCONT, 5.0), (signal.SIGQUIT, 3.0), (signal.SIGKILL, 3.0)))
        if postmaster is not None and not pid_running(postmaster):
            pid_file.unlink(missing_ok=True)
            log.info("postgres.stale_pid_file_removed pid=%d", postmaster)
        # PostgreSQL tests these locks with kill(pid, 0), which succeeds on an unreaped zombie (as when PID 1
        # in a container does not reap); a lock whose process is gone or a zombie is stale.
        for lock in self.data_dir.glob(".s.PGSQL.*.lock"):
            owner = read_pid_file(lock)
            if owner is None or not pid_running(owner):
                lock.unlink(missing_ok=True)
                lock.with_suffix("").unlink(missing_ok=True)
                log.info("postgres.stale_socket_lock_removed lock=%s", lock.name)

    def _read_state(self) -> dict[str, Any]:
        try:
            data = json.loads((self.data_dir / STATE_NAME).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _load_credentials(self, path: Path) -> _Credentials:
        data = self._read_state()
        try:
            return _Credentials(
                superuser_password=str(data["superuser_password"]),
                app_user=str(data["app_user"]),
                app_password=str(data["app_password"]),
            )
        except KeyError as exc:
            raise ServiceStateError(f"{path} lacks {exc.args[0]!r}; restore it or start from a new directory") from exc

    def _save_state(self, credentials: _Credentials, port: int | None, user: ServiceUser | None) -> None:
        state = {
            "superuser": SUPERUSER,
            "superuser_password": credentials.superuser_password,
            "app_user": credentials.app_user,
            "app_password": credentials.app_password,
            "port": port if port is not None else self._read_state().get("port"),
        }
        write_file(self.data_dir / STATE_NAME, json.dumps(state, indent=2) + "\n", mode=0o600, owner=user)


def _is_postgres(pid: int) -> bool:
    argv = pid_cmdline(pid)
    return bool(argv) and (Path(argv[0]).name == "postgres" or argv[0].startswith("postgres:"))
