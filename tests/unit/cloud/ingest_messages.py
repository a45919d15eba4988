"""Test helpers shared by the ingest tests: a registered test edge that seals every kind of uplink message."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from itertools import count

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.edges.registry import EdgeRecord
from cloud.ingest.intake import Delivery
from proto import keys, topics
from proto.envelope import seal
from proto.messages import Alert, DeviceStatus, DicomManifest, EdgeStatus, Event, InstanceEntry, SeriesEntry
from proto.vitals import VitalsBatch, VitalsBatchBuilder

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


@dataclass
class TestEdge:
    """An edge with a key pair, a site, and per-stream sequence numbers."""

    __test__ = False  # not a pytest test class

    edge_id: str
    site: str
    key: Ed25519PrivateKey = field(default_factory=keys.generate)
    _sequence: count[int] = field(default_factory=lambda: count(1))

    @property
    def record(self) -> EdgeRecord:
        return EdgeRecord(self.edge_id, self.site, keys.public_to_text(self.key.public_key()), "active")

    def topic(self, stream: str) -> str:
        return topics.build(self.site, self.edge_id, stream)

    def seal(self, payload: object, *, message_id: uuid.UUID | None = None, key: Ed25519PrivateKey | None = None,
             edge_id: str | None = None) -> bytes:
        return seal(payload, edge_id=edge_id or self.edge_id, sequence=next(self._sequence),  # type: ignore[arg-type]
                    signer=key or self.key, message_id=message_id)

    def delivery(self, payload: object, *, stream: str | None = None, **kwargs: object) -> Delivery:
        stream = stream or _stream_of(payload)
        return Delivery(self.topic(stream), self.seal(payload, **kwargs), dt.datetime.now(UTC))  # type: ignore[arg-type]


def _stream_of(payload: object) -> str:
    if isinstance(payload, VitalsBatch):
        return "vitals"
    if isinstance(payload, Alert):
        return "alerts"
    if isinstance(payload, Event):
        return "events"
    if isinstance(payload, DicomManifest):
        return "dicom"
    return "status"


def vitals(samples: list[tuple[float, str, str, float]], *, device: str = "dev-1", start: dt.datetime = T0,
           quality: int = 0) -> VitalsBatch:
    """A batch from (seconds after start, patient, kind, value)."""
    builder = VitalsBatchBuilder()
    for seconds, patient, kind, value in samples:
        builder.add(start + dt.timedelta(seconds=seconds), patient, kind, value, device_id=device, quality=quality)
    return builder.build()


def ward_batch(n: int, *, start: dt.datetime = T0, patients: int = 5, offset_s: float = 0.0) -> VitalsBatch:
    """n samples of heart rate and SpO2 for a few patients, 1 per second each."""
    builder = VitalsBatchBuilder()
    for i in range(n):
        kind = "heart_rate" if i % 2 == 0 else "spo2"
        value = 70.0 + (i * 7) % 23 if kind == "heart_rate" else 93.0 + (i * 3) % 7
        builder.add(start + dt.timedelta(seconds=offset_s + i), f"pt-{i % patients:02d}", kind, value,
                    device_id=f"dev-{i % patients:02d}")
    return builder.build()


def alert(patient: str = "pt-01", *, message: str = "NEWS2 7", state: str = "active") -> Alert:
    return Alert(alert_id=uuid.uuid4(), patient_id=patient, rule="news2.high", priority="high", category="clinical",
                 state=state, raised_at=T0, message=message, news2_total=7)  # type: ignore[arg-type]


def device_event(device: str = "dev-01", *, state: str = "connected", at: dt.datetime = T0,
                 battery: float | None = 80.0) -> Event:
    return Event(event_id=uuid.uuid4(), event_type="device_status", at=at,
                 device_status=DeviceStatus(device_id=device, state=state, patient_id="pt-01",  # type: ignore[arg-type]
                                            device_type="pulse_oximeter", battery_pct=battery))


def manifest(patient: str = "pt-01") -> DicomManifest:
    instance = InstanceEntry("1.2.3.4.5.6", "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", 1024, "a" * 64)
    series = SeriesEntry("1.2.3.4.5", "CT", (instance,), series_number=1)
    return DicomManifest(study_instance_uid="1.2.3.4", patient_id=patient, completed_at=T0, series=(series,))


def status(state: str = "online", at: dt.datetime = T0) -> EdgeStatus:
    return EdgeStatus(state=state, at=at, software_version="0.1.0")  # type: ignore[arg-type]
