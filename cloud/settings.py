"""The cloud service's settings: one frozen object from a TOML file plus `TELEMED_*` variables (proto.settings).

Every section has working defaults for the local stack except `database.url`, which must be given
(`TELEMED_DATABASE_URL`). Nested keys map to `TELEMED_<SECTION>__<KEY>` (or the flat `TELEMED_<SECTION>_<KEY>`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from proto import topics
from proto.settings import SettingsError, load_settings

__all__ = [
    "ApiSettings",
    "CloudSettings",
    "DatabaseSettings",
    "DicomSettings",
    "EdgeBrokerSettings",
    "IngestSettings",
    "KeysSettings",
    "MqttSettings",
    "PartitionSettings",
    "RetentionSettings",
    "SettingsError",
    "load",
]


@dataclass(frozen=True)
class DatabaseSettings:
    """`database.*`: the PostgreSQL (or TimescaleDB) the cloud writes to."""

    url: str = ""
    pool_min: int = 1
    pool_max: int = 8
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.pool_min <= self.pool_max:
            raise ValueError(f"need 1 <= pool_min <= pool_max, got {self.pool_min}..{self.pool_max}")


@dataclass(frozen=True)
class MqttSettings:
    """`mqtt.*`: the broker the cloud consumes from and publishes acks and commands to."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = "cloud"
    password: str = ""
    tls: bool = False
    cafile: Path | None = None
    keepalive_s: int = 30
    # The broker's directory when it is our private Mosquitto (deploy.mosquitto): edge provisioning manages
    # its password file there and makes it reload. Empty: provisioning cannot create broker logins.
    admin_dir: Path | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"mqtt port out of range: {self.port}")


@dataclass(frozen=True)
class EdgeBrokerSettings:
    """`edges.*`: the broker address written into edge config bundles (edges may reach it by another name)."""

    mqtt_host: str = ""  # empty: mqtt.host
    mqtt_port: int = 0  # 0: mqtt.port
    tls: bool = False
    cafile: str = ""  # path of the CA certificate on the edge box, when tls


@dataclass(frozen=True)
class IngestSettings:
    """`ingest.*`: the MQTT ingest workers."""

    workers: int = 2
    # Messages taken off the broker but not yet written; a full queue blocks the MQTT callback (backpressure).
    queue_size: int = 64
    # MQTT v5 Receive Maximum: how many unacknowledged QoS 1 messages the broker may send one worker.
    receive_maximum: int = 64
    batch_max_messages: int = 32
    batch_max_delay_ms: float = 5.0
    group: str = "ingest"  # shared-subscription group
    # Client ids are `<client_id_prefix>-<instance>-<worker index>`: stable, so a restarted worker resumes its
    # persistent session and gets its unacknowledged messages back. Empty instance: the host name.
    client_id_prefix: str = "telemed-ingest"
    instance: str = ""
    # How long the broker keeps a disconnected worker's session and queues its share of messages. A worker
    # restarted within it gets its unacknowledged messages back; past it, edges resend what was never acked.
    session_expiry_s: int = 600
    edge_cache_ttl_s: float = 5.0
    retry_initial_s: float = 0.1
    retry_max_s: float = 5.0
    poison_attempts: int = 3
    maintenance_interval_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("ingest.workers must be at least 1")
        if self.queue_size < 1 or self.batch_max_messages < 1:
            raise ValueError("ingest.queue_size and ingest.batch_max_messages must be at least 1")
        if not 1 <= self.receive_maximum <= 65_535:  # MQTT v5 section 3.1.2.11.3
            raise ValueError("ingest.receive_maximum must be 1..65535")
        if self.poison_attempts < 1:
            raise ValueError("ingest.poison_attempts must be at least 1")
        topics.check_id(self.group, "shared-subscription group")

    @property
    def instance_name(self) -> str:
        """This host's part of the client ids."""
        raw = self.instance or socket.gethostname().split(".")[0]
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in raw) or "host"

    def client_id(self, index: int) -> str:
        return f"{self.client_id_prefix}-{self.instance_name}-{index}"


@dataclass(frozen=True)
class KeysSettings:
    """`keys.*`: where the cloud's Ed25519 signing key lives (cloud_ed25519.key, created on first start)."""

    dir: Path = Path("var/keys")

    @property
    def cloud_key_path(self) -> Path:
        return self.dir / "cloud_ed25519.key"


@dataclass(frozen=True)
class ApiSettings:
    """`api.*`: the HTTP service."""

    host: str = "127.0.0.1"
    port: int = 8000


@dataclass(frozen=True)
class RetentionSettings:
    """`retention.*`: how long raw samples and the dedupe record of messages are kept."""

    raw_days: int = 30
    dedupe_days: int = 30

    def __post_init__(self) -> None:
        if self.raw_days < 1 or self.dedupe_days < 1:
            raise ValueError("retention days must be at least 1")


@dataclass(frozen=True)
class DicomSettings:
    """`dicom.*`: the DICOMweb object store (a filesystem directory; S3-compatible stores implement the same port)."""

    store_dir: Path = Path("var/dicom")


@dataclass(frozen=True)
class PartitionSettings:
    """`partitions.*`: daily partitions of `vitals` created ahead of time (plain PostgreSQL mode)."""

    ahead_days: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.ahead_days <= 366:
            raise ValueError("partitions.ahead_days must be 1..366")


@dataclass(frozen=True)
class CloudSettings:
    """All cloud settings."""

    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    edges: EdgeBrokerSettings = field(default_factory=EdgeBrokerSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    keys: KeysSettings = field(default_factory=KeysSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    partitions: PartitionSettings = field(default_factory=PartitionSettings)
    dicom: DicomSettings = field(default_factory=DicomSettings)

    def require_database(self) -> str:
        """The database URL, or a SettingsError saying how to set it."""
        if not self.database.url:
            raise SettingsError("database.url", "required: set it in the settings file or as TELEMED_DATABASE_URL")
        return self.database.url


def load(path: Path | None = None, *, environ: Mapping[str, str] = os.environ) -> CloudSettings:
    """The cloud settings from `path` (TOML, optional) and the environment."""
    return load_settings(CloudSettings, path=path, environ=environ)
