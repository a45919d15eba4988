"""The message types of the wire contract (all but the columnar vitals batch, see proto.vitals).

Each is a frozen dataclass whose type hints are its wire schema (proto.schema); rules that types cannot
express live in `validate()`. Patients appear only by pseudonymous id: names never cross the wire.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from proto.schema import ValidationError
from proto.topics import Stream
from proto.vocabulary import VOCABULARY

# Pseudonymous patient and device ids: opaque tokens, never a name or national id.
OPAQUE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
# DICOM UIDs: dot-separated numeric components, at most 64 characters (PS3.5 section 9.1).
DICOM_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class PayloadType(enum.IntEnum):
    """The payload type byte of the envelope. Numbers are part of the wire contract."""

    VITALS_BATCH = 1
    ALERT = 2
    EVENT = 3
    DICOM_MANIFEST = 4
    EDGE_STATUS = 5
    COMMIT_ACK = 6
    COMMAND = 7

    @property
    def stream(self) -> Stream:
        return _STREAMS[self]


_STREAMS = {
    PayloadType.VITALS_BATCH: Stream.VITALS,
    PayloadType.ALERT: Stream.ALERTS,
    PayloadType.EVENT: Stream.EVENTS,
    PayloadType.DICOM_MANIFEST: Stream.DICOM,
    PayloadType.EDGE_STATUS: Stream.STATUS,
    PayloadType.COMMIT_ACK: Stream.ACK,
    PayloadType.COMMAND: Stream.CMD,
}


def check_opaque_id(value: str, field_name: str) -> None:
    if not OPAQUE_ID.match(value):
        raise ValidationError(field_name, f"not a valid pseudonymous id: {value!r}")


def check_uid(value: str, field_name: str) -> None:
    if len(value) > 64 or not DICOM_UID.match(value):
        raise ValidationError(field_name, f"not a valid DICOM UID: {value!r}")


# --- alerts -------------------------------------------------------------------------------------------

# IEC 60601-1-8 alarm priorities; "advisory" signals (e.g. personalised anomaly) never page on their own.
Priority = Literal["high", "medium", "low"]
AlertCategory = Literal["clinical", "technical", "advisory"]
AlertState = Literal["active", "cleared"]


@dataclass(frozen=True, slots=True)
class Alert:
    """An alarm condition for one patient and rule, raised (or cleared) by an edge.

    `alert_id` identifies the incident across updates, so an edge's offline alert and the cloud's own
    evaluation of the same patient and rule merge into one incident.
    """

    alert_id: uuid.UUID
    patient_id: str
    rule: str
    priority: Priority
    category: AlertCategory
    state: AlertState
    raised_at: dt.datetime
    message: str
    kind: str | None = None
    value: float | None = None
    news2_total: int | None = None
    device_id: str | None = None

    def validate(self) -> None:
        check_opaque_id(self.patient_id, "patient_id")
        if not re.match(r"^[a-z0-9_.:-]{1,64}$", self.rule):
            raise ValidationError("rule", f"invalid rule name {self.rule!r}")
        if self.kind is not None and self.kind not in VOCABULARY:
            raise ValidationError("kind", f"unknown vital-sign kind {self.kind!r}")
        if self.news2_total is not None and not 0 <= self.news2_total <= 20:
            raise ValidationError("news2_total", f"NEWS2 total must be 0..20, got {self.news2_total}")
        if len(self.message) > 500:
            raise ValidationError("message", "longer than 500 characters")
        if self.device_id is not None:
            check_opaque_id(self.device_id, "device_id")


# --- events -------------------------------------------------------------------------------------------

DeviceState = Literal["connected", "disconnected", "reconnecting", "lost"]


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    device_id: str
    state: DeviceState
    patient_id: str | None = None
    device_type: str | None = None
    battery_pct: float | None = None
    rssi_dbm: float | None = None
    last_seen: dt.datetime | None = None

    def validate(self) -> None:
        check_opaque_id(self.device_id, "device_id")
        if self.patient_id is not None:
            check_opaque_id(self.patient_id, "patient_id")
        if self.battery_pct is not None and not 0 <= self.battery_pct <= 100:
            raise ValidationError("battery_pct", f"must be 0..100, got {self.battery_pct}")
        if self.rssi_dbm is not None and not -127 <= self.rssi_dbm <= 20:
            raise ValidationError("rssi_dbm", f"must be -127..20 dBm, got {self.rssi_dbm}")


@dataclass(frozen=True, slots=True)
class ConsultationEvent:
    consultation_id: str
    transition: str
    actor: str | None = None
    detail: str | None = None

    def validate(self) -> None:
        check_opaque_id(self.consultation_id, "consultation_id")


@dataclass(frozen=True, slots=True)
class OutboxEviction:
    """The edge's disk budget forced it to drop queued data (always the oldest, lowest-priority first)."""

    lane: str
    messages: int
    bytes: int
    oldest: dt.datetime | None = None

    def validate(self) -> None:
        if self.messages < 0 or self.bytes < 0:
            raise ValidationError("messages", "counts must not be negative")


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened at the edge. Exactly one of the typed bodies is set, matching `event_type`."""

    event_id: uuid.UUID
    event_type: Literal["device_status", "consultation", "outbox_eviction", "signal"]
    at: dt.datetime
    device_status: DeviceStatus | None = None
    consultation: ConsultationEvent | None = None
    outbox_eviction: OutboxEviction | None = None
    signal: dict[str, Any] | None = None  # video signalling (offer/answer/candidate), opaque here

    def validate(self) -> None:
        bodies = {name: getattr(self, name) for name in ("device_status", "consultation", "outbox_eviction", "signal")}
        present = [name for name, body in bodies.items() if body is not None]
        if present != [self.event_type]:
            raise ValidationError(self.event_type, f"event_type {self.event_type!r} needs exactly that body")


# --- DICOM study manifest ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceEntry:
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    size_bytes: int
    sha256: str

    def validate(self) -> None:
        check_uid(self.sop_instance_uid, "sop_instance_uid")
        check_uid(self.sop_class_uid, "sop_class_uid")
        check_uid(self.transfer_syntax_uid, "transfer_syntax_uid")
        if self.size_bytes <= 0:
            raise ValidationError("size_bytes", "must be positive")
        if not SHA256_HEX.match(self.sha256):
            raise ValidationError("sha256", "must be 64 lowercase hex digits")


@dataclass(frozen=True, slots=True)
class SeriesEntry:
    series_instance_uid: str
    modality: str
    instances: tuple[InstanceEntry, ...]
    series_number: int | None = None
    description: str | None = None

    def validate(self) -> None:
        check_uid(self.series_instance_uid, "series_instance_uid")
        if not re.match(r"^[A-Z0-9]{2,16}$", self.modality):
            raise ValidationError("modality", f"invalid modality code {self.modality!r}")
        if not self.instances:
            raise ValidationError("instances", "a series has at least one instance")


@dataclass(frozen=True, slots=True)
class DicomManifest:
    """A complete study held by the edge (no new instance for the completion timeout)."""

    study_instance_uid: str
    patient_id: str
    completed_at: dt.datetime
    series: tuple[SeriesEntry, ...]
    accession_number: str | None = None
    study_date: str | None = None

    def validate(self) -> None:
        check_uid(self.study_instance_uid, "study_instance_uid")
        check_opaque_id(self.patient_id, "patient_id")
        if not self.series:
            raise ValidationError("series", "a study has at least one series")
        if self.study_date is not None and not re.match(r"^\d{8}$", self.study_date):
            raise ValidationError("study_date", "must be a DICOM DA (YYYYMMDD)")

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series)


# --- edge status ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LaneStatus:
    depth: int
    bytes: int
    oldest_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class EdgeStatus:
    """Heartbeat and last will on `up/status` (retained): online or offline, and the outbox backlog."""

    state: Literal["online", "offline"]
    at: dt.datetime
    software_version: str | None = None
    uptime_s: float | None = None
    outbox: dict[str, LaneStatus] = field(default_factory=dict)
    devices_connected: int | None = None


# --- downlink -------------------------------------------------------------------------------------------

AckOutcome = Literal["committed", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class AckEntry:
    """The fate of one uplink message. A rejected message is dead-lettered by the cloud: do not resend it."""

    message_id: uuid.UUID
    stream: Stream
    sequence: int
    outcome: AckOutcome
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CommitAck:
    """Sent by the cloud after the database transaction commits; the edge then deletes these from its outbox."""

    acks: tuple[AckEntry, ...]

    def validate(self) -> None:
        if not self.acks:
            raise ValidationError("acks", "an ack carries at least one entry")


CommandName = Literal["assign_device", "unassign_device", "configure", "signal", "ping"]


@dataclass(frozen=True, slots=True)
class Command:
    """An instruction from the cloud to one edge; `args` are checked by the command's handler at the edge."""

    command_id: uuid.UUID
    name: CommandName
    args: dict[str, Any] = field(default_factory=dict)
    expires_at: dt.datetime | None = None
