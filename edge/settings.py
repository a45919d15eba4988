"""The edge service's settings: the config bundle's edge.toml plus TELEMED_* environment overrides.

The bundle (written by `telemed-cloud edge add`, /work/briefs/edge-bundle.md) holds [edge], [mqtt] and
[keys]; the edge's own optional sections are [outbox], [ble], [dicom], [http] and [alerting]. Relative
file names are relative to the bundle directory (`load_edge_settings` resolves them). Environment
variables follow proto.settings: `TELEMED_MQTT__HOST` or `TELEMED_MQTT_HOST`, and so on.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from proto import keys, topics
from proto.settings import SettingsError, load_settings

__all__ = [
    "AlertingSettings",
    "BleSettings",
    "DicomSettings",
    "EdgeIdentity",
    "EdgeSettings",
    "HttpSettings",
    "KeySettings",
    "MqttSettings",
    "OutboxSettings",
    "SettingsError",
    "load_edge_settings",
]


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _port(name: str, value: int) -> None:
    if not 0 < value < 65536:
        raise ValueError(f"{name} must be a TCP port (1..65535), got {value}")


@dataclass(frozen=True)
class EdgeIdentity:
    """[edge]: who this edge is; `id` is its topic segment and broker username."""

    id: str
    site: str
    name: str = ""

    def __post_init__(self) -> None:
        topics.check_id(self.id, "edge")
        topics.check_id(self.site, "site")


@dataclass(frozen=True)
class MqttSettings:
    """[mqtt]: the broker connection (bundle) and the uplink's delivery tunables (edge defaults)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    cafile: str = ""  # CA certificate (PEM) that signed the broker's certificate; "" = system trust store
    certfile: str = ""  # client certificate for mutual TLS (optional)
    keyfile: str = ""
    client_id: str = ""  # "" = the edge id (one session per edge)
    keepalive_s: int = 30
    connect_timeout_s: float = 10.0
    session_expiry_s: int = 3600  # the broker keeps our subscriptions and queued acks/commands this long
    inflight_window: int = 64  # most uplink messages published and not yet acked by the cloud
    alerts_reserved: int = 8  # window slots only the alerts lane may use, so alerts never wait behind bulk
    ack_timeout_s: float = 30.0  # resend (in order) when the cloud has not acked a message this long
    heartbeat_s: float = 30.0  # EdgeStatus online, retained
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.5  # fraction of each delay that is randomised (0 = none, 1 = full jitter)

    def __post_init__(self) -> None:
        _port("mqtt.port", self.port)
        for name in ("keepalive_s", "connect_timeout_s", "ack_timeout_s", "heartbeat_s", "backoff_initial_s",
                     "backoff_max_s", "inflight_window"):
            _positive(f"mqtt.{name}", getattr(self, name))
        if not 0 <= self.alerts_reserved < self.inflight_window:
            raise ValueError("mqtt.alerts_reserved must be at least 0 and below mqtt.inflight_window")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError("mqtt.backoff_jitter must be within 0..1")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("mqtt.backoff_max_s must not be below mqtt.backoff_initial_s")
        if bool(self.certfile) != bool(self.keyfile):
            raise ValueError("mqtt.certfile and mqtt.keyfile go together (mutual TLS)")


@dataclass(frozen=True)
class KeySettings:
    """[keys]: the edge's signing key file and the cloud's public key (verifies acks and commands)."""

    private_key_file: str = "edge_ed25519.key"
    cloud_public_key: str = ""

    def __post_init__(self) -> None:
        if self.cloud_public_key:
            try:
                keys.public_from_text(self.cloud_public_key)
            except keys.KeyFormatError as exc:
                raise ValueError(f"keys.cloud_public_key: {exc}") from None

    def signing_key(self) -> Ed25519PrivateKey:
        """Read the edge's private key (proto.keys format)."""
        return keys.read_private(Path(self.private_key_file))

    def cloud_key(self) -> Ed25519PublicKey:
        if not self.cloud_public_key:
            raise SettingsError("keys.cloud_public_key", "required: the edge cannot verify acks without it")
        return keys.public_from_text(self.cloud_public_key)


@dataclass(frozen=True)
class OutboxSettings:
    """[outbox]: the durable queue and the vitals batcher in front of it (docs/edge-outbox.md)."""

    path: Path = Path("outbox.sqlite3")
    max_bytes: int = 1 << 30
    low_watermark: float = 0.9
    linger_ms: float = 0.0
    max_batch: int = 1024
    eviction_alert_interval_s: float = 300.0
    dead_letters_kept: int = 10_000
    vitals_batch_max_samples: int = 2000
    vitals_batch_max_age_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_batch", "vitals_batch_max_samples", "vitals_batch_max_age_s"):
            _positive(f"outbox.{name}", getattr(self, name))
        if not 0 < self.low_watermark <= 1:
            raise ValueError("outbox.low_watermark must be within (0, 1]")
        if self.linger_ms < 0:
            raise ValueError("outbox.linger_ms must not be negative")


@dataclass(frozen=True)
class BleSettings:
    """[ble]: the wearable collector."""

    simulated: bool = False  # use the in-process simulated radio instead of BlueZ
    adapter: str = "hci0"
    scan_timeout_s: float = 10.0
    max_concurrent_connects: int = 3  # BlueZ adapters have few connection slots
    allowlist: tuple[str, ...] = ()  # device addresses; empty = every device offering a health service


@dataclass(frozen=True)
class DicomSettings:
    """[dicom]: the C-STORE SCP that modalities send to."""

    enabled: bool = True
    ae_title: str = "TELEMED_EDGE"
    host: str = "127.0.0.1"
    port: int = 11112
    storage_dir: Path = Path("dicom")
    study_complete_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        _port("dicom.port", self.port)
        if not 1 <= len(self.ae_title) <= 16:
            raise ValueError("dicom.ae_title must be 1..16 characters (DICOM PS3.5 AE VR)")


@dataclass(frozen=True)
class HttpSettings:
    """[http]: the edge's local status and /metrics endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8081

    def __post_init__(self) -> None:
        _port("http.port", self.port)


@dataclass(frozen=True)
class AlertingSettings:
    """[alerting]: offline alerting at the edge (NEWS2 aggregate thresholds: 5 medium, 7 high, RCP 2017)."""

    enabled: bool = True
    news2_medium: int = 5
    news2_high: int = 7


@dataclass(frozen=True)
class EdgeSettings:
    edge: EdgeIdentity
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    keys: KeySettings = field(default_factory=KeySettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)
    ble: BleSettings = field(default_factory=BleSettings)
    dicom: DicomSettings = field(default_factory=DicomSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    alerting: AlertingSettings = field(default_factory=AlertingSettings)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or self.edge.id


def _resolve(base: Path, name: str) -> str:
    return "" if not name else str(base / Path(name).expanduser())


def load_edge_settings(path: Path, *, environ: Mapping[str, str] = os.environ) -> EdgeSettings:
    """Load edge.toml (and TELEMED_* overrides), with relative file names resolved against its directory."""
    settings = load_settings(EdgeSettings, path=path, environ=environ)
    base = path.parent.absolute()
    return dataclasses.replace(
        settings,
        mqtt=dataclasses.replace(settings.mqtt, cafile=_resolve(base, settings.mqtt.cafile),
                                 certfile=_resolve(base, settings.mqtt.certfile),
                                 keyfile=_resolve(base, settings.mqtt.keyfile)),
        keys=dataclasses.replace(settings.keys, private_key_file=_resolve(base, settings.keys.private_key_file)),
        outbox=dataclasses.replace(settings.outbox, path=base / settings.outbox.path.expanduser()),
        dicom=dataclasses.replace(settings.dicom, storage_dir=base / settings.dicom.storage_dir.expanduser()),
    )
