"""Golden test vectors of wire protocol v1: fixed inputs whose encoding must never change.

`python -m tests.golden.vectors` rewrites tests/golden/protocol_v1.json; do that only for a deliberate,
versioned protocol change (docs/protocol.md, "Evolving the protocol"). The signing key is a fixed
seed printed below (a test key, used nowhere else), so anyone can reproduce the signatures: Ed25519
signatures are deterministic (RFC 8032, section 5.1.6).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proto import envelope
from proto.messages import (
    AckEntry,
    Alert,
    Command,
    CommitAck,
    DeviceStatus,
    DicomManifest,
    EdgeStatus,
    Event,
    InstanceEntry,
    LaneStatus,
    SeriesEntry,
)
from proto.quality import Quality
from proto.topics import Stream
from proto.vitals import VitalsBatchBuilder

PATH = Path(__file__).with_name("protocol_v1.json")
# A fixed test seed; public key c3e9001a...fe ac6806 (see protocol_v1.json).
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bad55fb7e6bdb")
SIGNER = Ed25519PrivateKey.from_private_bytes(SEED)
T0 = dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.UTC)


def _vitals() -> envelope.Payload:
    b = VitalsBatchBuilder()
    b.add(T0, "pt-0001", "heart_rate", 72.0, device_id="hrs-01")
    b.add(T0, "pt-0001", "spo2", 97.0, device_id="plx-01")
    b.add(T0 + dt.timedelta(seconds=1), "pt-0001", "heart_rate", 74.0, device_id="hrs-01",
          quality=Quality.MOTION)
    b.add(T0 + dt.timedelta(seconds=1), "pt-0002", "body_temperature", 38.4, device_id="hts-07")
    b.add(T0 + dt.timedelta(seconds=2), "pt-0002", "consciousness", 0.0, quality=Quality.MANUAL_ENTRY)
    return b.build()


def payloads() -> dict[str, tuple[str, envelope.Payload]]:
    """name -> (topic, payload) of every vector."""
    up = "telemed/v1/county-a/edge-a/up/"
    down = "telemed/v1/county-a/edge-a/down/"
    return {
        "vitals_batch": (up + Stream.VITALS, _vitals()),
        "alert": (up + Stream.ALERTS, Alert(
            alert_id=uuid.UUID(int=1), patient_id="pt-0001", rule="spo2_low", priority="high",
            category="clinical", state="active", raised_at=T0, message="SpO2 87% for 15 s",
            kind="spo2", value=87.0, news2_total=7, device_id="plx-01")),
        "event_device_status": (up + Stream.EVENTS, Event(
            event_id=uuid.UUID(int=2), event_type="device_status", at=T0,
            device_status=DeviceStatus(device_id="plx-01", state="disconnected", patient_id="pt-0001",
                                       device_type="pulse_oximeter", battery_pct=41.0, rssi_dbm=-71.0,
                                       last_seen=T0))),
        "dicom_manifest": (up + Stream.DICOM, DicomManifest(
            study_instance_uid="1.2.826.0.1.3680043.8.498.1", patient_id="pt-0002", completed_at=T0,
            series=(SeriesEntry(series_instance_uid="1.2.826.0.1.3680043.8.498.2", modality="CT",
                                series_number=1, instances=(InstanceEntry(
                                    sop_instance_uid="1.2.826.0.1.3680043.8.498.3",
                                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                                    transfer_syntax_uid="1.2.840.10008.1.2.1", size_bytes=39_424,
                                    sha256="0" * 63 + "1"),)),),
            accession_number="A2026-0001", study_date="20261101")),
        "edge_status": (up + Stream.STATUS, EdgeStatus(
            state="online", at=T0, software_version="0.1.0", uptime_s=3600.0,
            outbox={"vitals": LaneStatus(depth=12, bytes=4096, oldest_age_s=1.5)}, devices_connected=9)),
        "commit_ack": (down + Stream.ACK, CommitAck(acks=(
            AckEntry(message_id=uuid.UUID(int=3), stream=Stream.VITALS, sequence=41, outcome="committed"),
            AckEntry(message_id=uuid.UUID(int=4), stream=Stream.VITALS, sequence=42, outcome="duplicate"),
        ))),
        "command": (down + Stream.CMD, Command(
            command_id=uuid.UUID(int=5), name="assign_device",
            args={"device_id": "plx-01", "patient_id": "pt-0001"})),
    }


def build() -> dict[str, Any]:
    vectors = {}
    for seq, (name, (topic, payload)) in enumerate(payloads().items(), start=1):
        edge = "edge-a"
        raw = envelope.seal(payload, edge_id=edge, sequence=seq, signer=SIGNER,
                            message_id=uuid.UUID(int=0x1000 + seq), created_at=T0)
        _, _, flags = envelope.encode_body(payload)
        vectors[name] = {"topic": topic, "sequence": seq, "compressed": bool(flags & envelope.FLAG_COMPRESSED),
                         "envelope_hex": raw.hex()}
    return {"public_key_hex": SIGNER.public_key().public_bytes_raw().hex(), "vectors": vectors}


if __name__ == "__main__":
    PATH.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {PATH}")
