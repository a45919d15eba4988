"""The local stack: a private PostgreSQL and a private Mosquitto under `var/`, or existing ones from settings.

`Stack` is the composition root of `make run` (and of tests that want both servers): it starts what the
settings do not point elsewhere, exposes the endpoints, writes them to `var/endpoints.json`, and stops
everything in reverse order. Later services (cloud, edges) join with `enter_context` so they stop first.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from deploy import pgadmin
from deploy.accounts import write_file
from deploy.errors import DeployError, ServiceStateError
from deploy.mosquitto import MosquittoServer, MqttCredentials
from deploy.mosquitto_files import InvalidUsernameError, validate_username
from deploy.pgadmin import Mode
from deploy.ports import accepts_connections
from deploy.postgres import PostgresServer
from proto.settings import SettingsError

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MQTT_PORT = 1883  # IANA-registered MQTT port, for an existing broker given without a port


@dataclass(frozen=True)
class DatabaseSettings:
    """`database.*`: set `url` to use an existing PostgreSQL instead of starting one."""

    url: str | None = None
    port: int | None = None  # the private cluster's port; None: a free one (the last one if still free)


@dataclass(frozen=True)
class MqttSettings:
    """`mqtt.*`: set `host` to use an existing broker (with the cloud's `username`/`password`)."""

    host: str | None = None
    port: int | None = None  # the existing broker's port (default 1883), or the private broker's port
    username: str = "cloud"
    password: str | None = None


@dataclass(frozen=True)
class StackSettings:
    """Settings of the local stack (TOML file plus `TELEMED_*` variables, see proto.settings)."""

    var_dir: Path = Path("var")
    edges: tuple[str, ...] = ()  # edge ids to provision on the private broker
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)

    def __post_init__(self) -> None:
        for edge in self.edges:
            try:
                validate_username(edge)
            except InvalidUsernameError as exc:
                raise SettingsError("edges", str(exc)) from exc


@dataclass(frozen=True)
class DatabaseEndpoints:
    """Where the application's database is; `admin_url` only when we run the server."""

    url: str
    mode: Mode
    managed: bool
    admin_url: str | None = None


@dataclass(frozen=True)
class MqttEndpoints:
    """Where the broker is, the cloud's login, and the provisioned edges' logins (private broker only)."""

    host: str
    port: int
    cloud: MqttCredentials
    managed: bool
    edges: Mapping[str, MqttCredentials] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoints:
    """Everything a service of the stack needs to connect; `to_dict` is the endpoints.json document."""

    database: DatabaseEndpoints
    mqtt: MqttEndpoints

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["mqtt"]["edges"] = {k: asdict(v) for k, v in self.mqtt.edges.items()}
        return doc


class Stack:
    """Start (or adopt) the database and the broker; a context manager that stops what it started."""

    def __init__(self, settings: StackSettings, *, ephemeral: bool = False) -> None:
        self.settings = settings
        self.var_dir = settings.var_dir.absolute()
        self._ephemeral = ephemeral
        self._exit = contextlib.ExitStack()
        self.postgres: PostgresServer | None = None
        self.mosquitto: MosquittoServer | None = None
        self._database: DatabaseEndpoints | None = None
        self._mqtt_external: MqttEndpoints | None = None

    def start(self) -> Endpoints:
        """Start the private servers (those the settings do not replace); the endpoints."""
        try:
            self._database = self._start_database()
            self._start_broker()
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def stop(self) -> None:
        """Stop everything entered, last first."""
        self._exit.close()
        self._exit = contextlib.ExitStack()
        self.postgres = self.mosquitto = None
        self._database = self._mqtt_external = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def enter_context(self, service: contextlib.AbstractContextManager[T]) -> T:
        """Run another service (cloud, an edge...) as part of the stack; it is stopped before the servers."""
        return self._exit.enter_context(service)

    # -- endpoints -----------------------------------------------------------------------------------------

    @property
    def endpoints(self) -> Endpoints:
        if self._database is None:
            raise ServiceStateError("the stack is not started")
        return Endpoints(database=self._database, mqtt=self._mqtt_endpoints())

    def write_endpoints(self, path: Path | None = None, *, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the endpoints (and `extra` sections) as JSON, mode 0600 since it holds passwords."""
        target = (path or self.var_dir / "endpoints.json").absolute()
        target.parent.mkdir(parents=True, exist_ok=True)
        document = {**self.endpoints.to_dict(), **(extra or {})}
        write_file(target, json.dumps(document, indent=2) + "\n", mode=0o600)
        return target

    def add_edge(self, edge_id: str) -> MqttCredentials:
        """Provision an edge's broker login (private broker only)."""
        return self._own_broker().add_edge(edge_id)

    def remove_edge(self, edge_id: str) -> bool:
        """Revoke an edge's broker login (private broker only)."""
        return self._own_broker().remove_user(edge_id)

    def dead_services(self) -> list[str]:
        """Names of servers we started that have exited since."""
        dead = []
        if self.postgres is not None and not self.postgres.is_running():
            dead.append("postgres")
        if self.mosquitto is not None and not self.mosquitto.is_running():
            dead.append("mosquitto")
        return dead

    # -- steps -----------------------------------------------------------------------------------------------

    def _start_database(self) -> DatabaseEndpoints:
        url = self.settings.database.url
        if url is not None:
            mode = pgadmin.detect_mode(url)
            log.info("stack.database_external url=%s mode=%s", pgadmin.redact_url(url), mode)
            return DatabaseEndpoints(url=url, mode=mode, managed=False)
        server = PostgresServer(self.var_dir / "postgres", port=self.settings.database.port, ephemeral=self._ephemeral)
        self.postgres = self._exit.enter_context(server)
        endpoint = server.endpoint
        return DatabaseEndpoints(url=endpoint.url, mode=endpoint.mode, managed=True, admin_url=endpoint.admin_url)

    def _start_broker(self) -> None:
        mqtt = self.settings.mqtt
        if mqtt.host is not None:
            port = mqtt.port or DEFAULT_MQTT_PORT
            if not accepts_connections(mqtt.host, port, timeout=5.0):
                raise DeployError(f"the MQTT broker at {mqtt.host}:{port} (mqtt.host/mqtt.port) is not reachable")
            if mqtt.password is None:
                raise DeployError("mqtt.password is required with an existing broker (mqtt.host)")
            self._mqtt_external = MqttEndpoints(
                host=mqtt.host, port=port, cloud=MqttCredentials(mqtt.username, mqtt.password), managed=False
            )
            log.info("stack.broker_external host=%s port=%d", mqtt.host, port)
            return
        server = MosquittoServer(self.var_dir / "mosquitto", port=mqtt.port, cloud_user=mqtt.username)
        for edge in self.settings.edges:
            server.add_edge(edge, reload=False)
        self.mosquitto = self._exit.enter_context(server)

    def _mqtt_endpoints(self) -> MqttEndpoints:
        if self._mqtt_external is not None:
            return self._mqtt_external
        broker = self._own_broker()
        edges = {user: broker.credentials(user) for user in broker.users if user != broker.cloud.username}
        return MqttEndpoints(host=broker.host, port=broker.port, cloud=broker.cloud, managed=True, edges=edges)

    def _own_broker(self) -> MosquittoServer:
        if self.mosquitto is None:
            raise ServiceStateError("no private broker: the stack uses an existing one (mqtt.host)")
        return self.mosquitto
