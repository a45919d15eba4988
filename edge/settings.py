"""The edge service's settings: the config bundle's edge.toml plus TELEMED_* environment overrides.

The bundle (written by `telemed-cloud edge add`, /work/briefs/edge-bundle.md) holds [edge], [mqtt] and
[keys]; the edge's own optional sections are [outbox], [ble], [dicom], [http] and [alerting]. Relative
file names are relative to the bundle directory (`load_edge_settings` resolves them). Environment
variables follow proto.settings: `TELEMED_MQTT__HOST` or `TELEMED_MQTT_HOST`, and so on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

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
    """[ble]: the wearable collector (docs/edge.md, "Wearables").

    `backend`: "bleak" talks to a real adapter (BlueZ), "simulated" runs the devices/sim ward in-process
    (`sim_*` below, or `telemed-edge --simulate-ward N`), "none" collects no wearables (imaging-only box).
    `simulated = true` is shorthand for backend "simulated".
    """

    simulated: bool = False  # use the in-process simulated radio instead of BlueZ
    adapter: str = "hci0"
    scan_timeout_s: float = 10.0
    max_concurrent_connects: int = 3  # BlueZ adapters have few connection slots
    allowlist: tuple[str, ...] = ()  # device addresses; empty = every device offering a health service
    backend: Literal["bleak", "simulated", "none"] = "bleak"
    registry_path: Path = Path("devices.sqlite3")  # the device registry (relative: to the bundle directory)
    pair: bool = False  # bond just-works devices on connect (docs/ble-hardware.md, "Pairing and bonding")
    use_cached_services: bool = False  # bleak's dangerous_use_bleak_cache: faster reconnects of known models
    connect_timeout_s: float = 20.0
    retry_max_delay_s: float = 60.0  # bedside devices are retried for ever, at most this far apart
    lost_retry_s: float = 300.0  # a link that gave up (pairing needed, missing characteristic) is retried this often
    # Device time stamps are naive local time (GATT Date Time); China has one zone and no daylight saving.
    device_utc_offset: str = "+08:00"
    max_backfill_s: float = 86_400.0  # stored results older than this (by device clock) get the receive time
    max_clock_skew_s: float = 120.0  # device times further ahead of the receive time are not trusted
    registry_poll_s: float = 2.0  # how often changes made by `telemed-edge devices ...` are picked up
    sim_patients: int = 10
    sim_scenario: str = "mix"
    sim_seed: int = 0
    sim_speed: float = 1.0  # 1 = real time; the ward's clock stamps the readings
    sim_time_scale: float = 1.0  # < 1 compresses every scenario's course (devices/sim)

    def __post_init__(self) -> None:
        for name in ("scan_timeout_s", "max_concurrent_connects", "connect_timeout_s", "retry_max_delay_s",
                     "lost_retry_s", "max_backfill_s", "max_clock_skew_s", "registry_poll_s", "sim_patients",
                     "sim_speed", "sim_time_scale"):
            _positive(f"ble.{name}", getattr(self, name))
        self.parse_utc_offset(self.device_utc_offset)

    @property
    def effective_backend(self) -> Literal["bleak", "simulated", "none"]:
        return "simulated" if self.simulated else self.backend

    @property
    def device_timezone(self) -> dt.tzinfo:
        """The zone device time stamps are read in."""
        return self.parse_utc_offset(self.device_utc_offset)

    @staticmethod
    def parse_utc_offset(text: str) -> dt.timezone:
        """Parse "+08:00" / "-03:30" / "Z" into a fixed offset (ValueError otherwise)."""
        match = re.fullmatch(r"([+-])(\d{2}):(\d{2})|Z", text.strip())
        if match is None:
            raise ValueError(f"ble.device_utc_offset must look like +08:00, got {text!r}")
        if text.strip() == "Z":
            return dt.UTC
        sign = -1 if match.group(1) == "-" else 1
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 14 or minutes >= 60:
            raise ValueError(f"ble.device_utc_offset out of range: {text!r}")
        return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


@dataclass(frozen=True)
class DicomSettings:
    """[dicom]: the C-STORE SCP that modalities send to, and the STOW-RS upload to the cloud (docs/edge-dicom.md)."""

    enabled: bool = True
    ae_title: str = "TELEMED_EDGE"
    host: str = "127.0.0.1"
    port: int = 11112
    storage_dir: Path = Path("dicom")
    study_complete_timeout_s: float = 30.0
    allowed_calling_aets: tuple[str, ...] = ()  # empty: any modality may send
    max_bytes: int = 0  # disk budget for held instances; 0 = none (the store still keeps 256 MiB free)
    stow_url: str = ""  # the cloud's DICOMweb base URL (https://...); "" = manifests only, no upload
    stow_verify: str = ""  # CA bundle for the cloud's certificate ("" = system trust store)
    retention_days: float = 7.0  # kept after the cloud confirmed every instance of a study
    tls_certfile: str = ""  # DICOM TLS (PS3.15 B.1) when set, with tls_keyfile
    tls_keyfile: str = ""
    tls_cafile: str = ""  # when set, modalities must present a certificate signed by this CA
    scp_workers: int = 0  # processes running the associations: 0 = in the edge process, -1 = one per core

    def __post_init__(self) -> None:
        _port("dicom.port", self.port)
        if not 1 <= len(self.ae_title) <= 16:
            raise ValueError("dicom.ae_title must be 1..16 characters (DICOM PS3.5 AE VR)")
        if self.max_bytes < 0:
            raise ValueError("dicom.max_bytes must not be negative")
        _positive("dicom.retention_days", self.retention_days)
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("dicom.tls_certfile and dicom.tls_keyfile go together")
        if self.scp_workers < -1:
            raise ValueError("dicom.scp_workers must be -1 (one per core), 0 (in process) or a count")


@dataclass(frozen=True)
class HttpSettings:
    """[http]: the edge's local status page, /healthz and /metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8081
    language: Literal["zh-CN", "en"] = "zh-CN"  # of the status page unless ?lang= or Accept-Language says otherwise
    uplink_grace_s: float = 60.0  # /healthz stays 200 through uplink outages shorter than this

    def __post_init__(self) -> None:
        _port("http.port", self.port)
        if self.uplink_grace_s < 0:
            raise ValueError("http.uplink_grace_s must not be negative")


@dataclass(frozen=True)
class AlertingSettings:
    """[alerting]: offline alerting at the edge (NEWS2 aggregate thresholds: 5 medium, 7 high, RCP 2017).

    The local webhook (a nurse-station or paging gateway) is told of every alert change while the uplink
    is down (`webhook_when = "offline"`) or always; see docs/edge.md, "Local alerting".
    """

    enabled: bool = True
    news2_medium: int = 5
    news2_high: int = 7
    state_path: Path = Path("alerting.sqlite3")  # engine state across restarts (relative: to the bundle directory)
    evaluate_interval_s: float = 1.0
    save_interval_s: float = 30.0
    webhook_url: str = ""
    webhook_secret: str = field(default="", repr=False)  # HMAC-SHA256 key of the X-Telemed-Signature header
    webhook_when: Literal["offline", "always"] = "offline"
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 6
    webhook_backoff_initial_s: float = 1.0
    webhook_backoff_max_s: float = 30.0
    webhook_queue: int = 1000  # deliveries waiting beyond this are dropped (and counted), oldest first

    def __post_init__(self) -> None:
        if not 0 < self.news2_medium <= self.news2_high <= 20:
            raise ValueError("alerting: need 0 < news2_medium <= news2_high <= 20")
        for name in ("evaluate_interval_s", "save_interval_s", "webhook_timeout_s", "webhook_max_attempts",
                     "webhook_backoff_initial_s", "webhook_backoff_max_s", "webhook_queue"):
            _positive(f"alerting.{name}", getattr(self, name))
        if self.webhook_url and not re.match(r"^https?://", self.webhook_url):
            raise ValueError("alerting.webhook_url must be an http:// or https:// URL")
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("alerting.webhook_secret is required with a webhook_url (receivers verify the HMAC)")


_SIZE: Final = re.compile(r"^(\d{2,5})x(\d{2,5})$")


def parse_size(text: str) -> tuple[int, int]:
    """"640x480" -> (640, 480); ValueError otherwise."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError(f"a frame size looks like 640x480, got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if width % 2 or height % 2:
        raise ValueError(f"frame sizes must be even for 4:2:0 chroma, got {text!r}")
    return width, height


@dataclass(frozen=True)
class VideoSettings:
    """What the edge can show in a consultation and how it serves it.

    Sources are named: `camera` (a V4L2 webcam at the bedside), `ultrasound` (the ultrasound machine's
    video output through a V4L2 capture card) and `synthetic` (a generated test pattern stamped with its
    capture time, for tests and `make run`). A source with an empty device is absent.
    """

    enabled: bool = True
    camera_device: str = ""  # e.g. /dev/video0
    camera_size: str = "1280x720"
    camera_fps: int = 30
    ultrasound_device: str = ""  # e.g. /dev/video2 (HDMI/S-Video to USB capture card)
    ultrasound_size: str = "1280x720"
    ultrasound_fps: int = 30
    ultrasound_input_format: str = ""  # V4L2 pixel format of the card ("mjpeg", "yuyv422"); "" = driver default
    microphone: str = ""  # ALSA device ("default", "hw:1,0") for the bedside microphone; "" = none
    synthetic: bool = False
    synthetic_size: str = "640x480"
    synthetic_fps: int = 30
    default_source: str = ""  # "" = the first present of camera, ultrasound, synthetic
    max_viewers_per_source: int = 4  # aiortc encodes once per viewer: CPU bounds this (docs/video.md)
    stats_interval_s: float = 1.0  # how often each peer's RTCP statistics are read for the ladder
    stun_urls: tuple[str, ...] = ()  # used when the cloud's signal carries no ICE servers
    recording_dir: Path = Path("recordings")  # relative: to the bundle directory
    # Where sealed recordings go: the cloud API's base URL ("" = dicom.stow_url's; neither: no recording).
    recording_upload_url: str = ""

    def __post_init__(self) -> None:
        for name in ("camera_size", "ultrasound_size", "synthetic_size"):
            parse_size(getattr(self, name))
        for name in ("camera_fps", "ultrasound_fps", "synthetic_fps"):
            if not 1 <= getattr(self, name) <= 60:
                raise ValueError(f"video.{name} must be 1..60")
        if not 1 <= self.max_viewers_per_source <= 64:
            raise ValueError("video.max_viewers_per_source must be 1..64")
        if self.stats_interval_s <= 0:
            raise ValueError("video.stats_interval_s must be positive")
        if self.default_source and self.default_source not in ("camera", "ultrasound", "synthetic"):
            raise ValueError("video.default_source must be camera, ultrasound or synthetic")


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
    video: VideoSettings = field(default_factory=VideoSettings)

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
