"""What one ingest transaction writes, computed from the new (not duplicate) messages: pure, no I/O.

The store executes a WritePlan statement by statement. Rows that are upserted (DO UPDATE) are reduced to
one per key here, since PostgreSQL refuses to update a row twice in one statement, and every list is
sorted by its key so that concurrent workers lock shared rows in the same order.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cloud.ingest import notify
from cloud.ingest.copy_binary import copy_stream, rollup_rows, vitals_rows
from cloud.ingest.intake import Accepted, Rejected
from cloud.ingest.samples import Latest, Rollup, SampleTable, latest, rollup
from proto.messages import Alert, DicomManifest, EdgeStatus, Event
from proto.schema import to_wire
from proto.vitals import VitalsBatch, from_micros

ROLLUP_WIDTHS_S = (60, 900, 3600)  # vitals_1m, vitals_15m, vitals_1h


@dataclass(frozen=True, slots=True)
class IngestedRow:
    message_id: uuid.UUID
    edge_id: str
    stream: str
    sequence: int
    samples: int


@dataclass(frozen=True, slots=True)
class EventRow:
    event_id: uuid.UUID
    edge_id: str
    event_type: str
    at: dt.datetime
    body: str


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: uuid.UUID
    edge_id: str
    patient_id: str
    rule: str
    priority: str
    category: str
    state: str
    raised_at: dt.datetime
    body: str


@dataclass(frozen=True, slots=True)
class ManifestRow:
    study_instance_uid: str
    edge_id: str
    patient_id: str
    completed_at: dt.datetime
    body: str


@dataclass(frozen=True, slots=True)
class StatusRow:
    edge_id: str
    state: str
    at: dt.datetime
    body: str


@dataclass(frozen=True, slots=True)
class DeviceStateRow:
    device_id: str
    site_id: str
    state: str
    device_type: str | None
    battery_pct: float | None
    seen_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    topic: str
    edge_id: str | None
    message_id: uuid.UUID | None
    reason: str
    detail: str
    raw: bytes


@dataclass(frozen=True)
class WritePlan:
    """Everything a transaction writes for its new messages."""

    vitals_copy: bytes | None = None
    samples: int = 0
    rollups: tuple[Rollup, ...] = ()
    rollup_copy: bytes | None = None  # the rollups as rows of the staging table (ROLLUP_STAGE_COLUMNS)
    latest: list[Latest] = field(default_factory=list)  # newest sample per (patient, kind), in that order
    patients: list[tuple[str, str]] = field(default_factory=list)  # (patient_id, site_id), first sight
    devices: list[tuple[str, str]] = field(default_factory=list)  # (device_id, site_id), first sight
    device_states: list[DeviceStateRow] = field(default_factory=list)
    device_seen: dict[str, dt.datetime] = field(default_factory=dict)
    edge_seen: dict[str, dt.datetime] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    manifests: list[ManifestRow] = field(default_factory=list)
    statuses: list[StatusRow] = field(default_factory=list)
    notifications: list[tuple[str, str]] = field(default_factory=list)  # (channel, payload)


def vitals_copy(table: SampleTable) -> bytes | None:
    """The samples as one binary COPY stream for `vitals`, in the table's row order (None when empty)."""
    if not len(table):
        return None
    no_device = np.zeros(len(table), dtype=np.intp)  # devices[0] is "", NULL
    return copy_stream([vitals_rows(
        time_us=table.time_us, kind_id=table.kind_id, value=table.value, quality=table.quality,
        patient_idx=table.patient, device_idx=table.device if table.device is not None else no_device,
        patients=table.patients, devices=table.devices, edges=table.edges, edge_idx=table.edge,
    )])


def ingested_rows(messages: Iterable[Accepted]) -> list[IngestedRow]:
    """The dedupe records, sorted by message id (the lock order of the claim)."""
    rows = [IngestedRow(m.message_id, m.edge_id, m.stream.value, m.envelope.sequence, m.samples) for m in messages]
    return sorted(rows, key=lambda r: r.message_id.bytes)


def dead_letter_rows(rejected: Iterable[Rejected]) -> list[DeadLetterRow]:
    return [
        DeadLetterRow(r.delivery.topic, r.topic_edge or (r.header.edge_id if r.header else None), r.message_id,
                      r.reason.value, r.detail[:2000], r.delivery.payload)
        for r in rejected
    ]


def _json(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _event_type(payload: Alert | Event | DicomManifest | EdgeStatus) -> str:
    if isinstance(payload, Alert):
        return "alert"
    if isinstance(payload, Event):
        return payload.event_type
    if isinstance(payload, DicomManifest):
        return "dicom_manifest"
    return "edge_status"


class _Builder:
    def __init__(self, *, rollups: bool) -> None:
        self.with_rollups = rollups
        self.sample_parts: list[tuple[VitalsBatch, npt.NDArray[np.int32], str]] = []
        self.patient_site: dict[str, str] = {}
        self.devices: dict[str, str] = {}
        self.device_states: dict[str, DeviceStateRow] = {}
        self.device_seen: dict[str, dt.datetime] = {}
        self.edge_seen: dict[str, dt.datetime] = {}
        self.events: list[EventRow] = []
        self.alerts: list[AlertRow] = []
        self.manifests: dict[str, ManifestRow] = {}
        self.statuses: dict[str, StatusRow] = {}
        self.notifications: list[tuple[str, str]] = []

    def see_patient(self, patient_id: str, site: str) -> None:
        self.patient_site.setdefault(patient_id, site)

    def add(self, message: Accepted) -> None:
        heard = message.delivery.received_at  # when the cloud heard from it, not the (maybe old) creation time
        if message.edge_id not in self.edge_seen or self.edge_seen[message.edge_id] < heard:
            self.edge_seen[message.edge_id] = heard
        payload = message.envelope.payload
        if isinstance(payload, VitalsBatch):
            self.add_vitals(message, payload)
        elif isinstance(payload, Alert | Event | DicomManifest | EdgeStatus):
            self.add_json(message, payload)
        else:  # acks and commands travel downlink only; open_envelope refuses them on uplink topics
            raise TypeError(f"unexpected uplink payload {type(payload).__name__}")

    def add_vitals(self, message: Accepted, batch: VitalsBatch) -> None:
        quality = message.quality if message.quality is not None else batch.quality.astype(np.int32)
        self.sample_parts.append((batch, quality, message.edge_id))
        for patient in batch.patients:
            self.see_patient(patient, message.site)
        last = np.full(len(batch.devices), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last, batch.device_idx.astype(np.intp), batch.time_us)
        for device, newest in zip(batch.devices, last.tolist(), strict=True):
            if not device or newest == np.iinfo(np.int64).min:
                continue
            self.devices.setdefault(device, message.site)
            seen = from_micros(newest)
            if device not in self.device_seen or self.device_seen[device] < seen:
                self.device_seen[device] = seen

    def add_json(self, message: Accepted, payload: Alert | Event | DicomManifest | EdgeStatus) -> None:
        body = to_wire(payload)
        text = _json(body)
        edge = message.edge_id
        if isinstance(payload, Alert):
            self.see_patient(payload.patient_id, message.site)
            self.alerts.append(AlertRow(payload.alert_id, edge, payload.patient_id, payload.rule, payload.priority,
                                        payload.category, payload.state, payload.raised_at, text))
        elif isinstance(payload, Event):
            self.events.append(EventRow(payload.event_id, edge, payload.event_type, payload.at, text))
            status = payload.device_status
            if status is not None:
                if status.patient_id is not None:
                    self.see_patient(status.patient_id, message.site)
                row = DeviceStateRow(status.device_id, message.site, status.state, status.device_type,
                                     status.battery_pct, status.last_seen or payload.at)
                known = self.device_states.get(status.device_id)
                if known is None or known.seen_at <= row.seen_at:
                    self.device_states[status.device_id] = row
        elif isinstance(payload, DicomManifest):
            self.see_patient(payload.patient_id, message.site)
            manifest = ManifestRow(payload.study_instance_uid, edge, payload.patient_id, payload.completed_at, text)
            known_manifest = self.manifests.get(manifest.study_instance_uid)
            if known_manifest is None or known_manifest.completed_at <= manifest.completed_at:
                self.manifests[manifest.study_instance_uid] = manifest
        else:
            status_row = StatusRow(edge, payload.state, payload.at, text)
            known_status = self.statuses.get(edge)
            if known_status is None or known_status.at <= status_row.at:
                self.statuses[edge] = status_row
        self.notifications.append((
            notify.EVENTS_CHANNEL,
            notify.event_payload(_event_type(payload), edge_id=edge, site_id=message.site, body=body),
        ))

    def build(self) -> WritePlan:
        table = SampleTable.from_batches(self.sample_parts).in_series_order()
        rollups: tuple[Rollup, ...] = ()
        if self.with_rollups and len(table):
            minute = rollup(table, ROLLUP_WIDTHS_S[0])
            rollups = (minute, *(minute.coarsen(width) for width in ROLLUP_WIDTHS_S[1:]))
        newest = latest(table)
        vitals_notes = [(notify.VITALS_CHANNEL, text) for text in notify.vitals_payloads(newest, self.patient_site)]
        return WritePlan(
            vitals_copy=vitals_copy(table),
            samples=len(table),
            rollups=rollups,
            rollup_copy=copy_stream(
                rollup_rows(width_s=r.width_s, bucket_s=r.bucket_s, kind_id=r.kind_id, low=r.min, high=r.max,
                            total=r.sum, count=r.count, patient_idx=r.patient, patients=r.patients)
                for r in rollups
            ) if rollups else None,
            latest=newest,
            patients=sorted(self.patient_site.items()),
            devices=sorted(self.devices.items()),
            device_states=[self.device_states[k] for k in sorted(self.device_states)],
            device_seen=dict(sorted(self.device_seen.items())),
            edge_seen=dict(sorted(self.edge_seen.items())),
            events=self.events,
            alerts=self.alerts,
            manifests=[self.manifests[k] for k in sorted(self.manifests)],
            statuses=[self.statuses[k] for k in sorted(self.statuses)],
            notifications=vitals_notes + self.notifications,
        )


def build_plan(messages: Sequence[Accepted], *, rollups: bool) -> WritePlan:
    """The writes for `messages` (all new); `rollups` when the store maintains the rollup tables (plain mode)."""
    builder = _Builder(rollups=rollups)
    for message in messages:
        builder.add(message)
    return builder.build()
