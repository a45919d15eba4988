"""Live-update notifications sent with pg_notify inside the ingest transaction (so only committed data).

Channels and payloads are the contract of cloud-contract.md, "Live updates":
- `telemed_vitals`: one per patient touched, `{"patient_id", "site_id", "latest": {"<kind>": {"time",
  "value", "quality"}}}` with the newest sample per kind in the transaction;
- `telemed_events`: one per alert, event, manifest or status, `{"type", "edge_id", "site_id", "body"}` where
  body is the message's wire JSON.
PostgreSQL limits a payload to 8000 bytes (NOTIFY docs); an oversized event body is replaced by a stub that
says so and keeps the identifying fields, and the listener fetches the rest from the tables.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from itertools import groupby
from typing import Any, Final

from cloud.ingest.samples import Latest
from proto.schema import format_time
from proto.vitals import from_micros
from proto.vocabulary import BY_WIRE_ID

VITALS_CHANNEL: Final = "telemed_vitals"
EVENTS_CHANNEL: Final = "telemed_events"
MAX_PAYLOAD: Final = 7999  # bytes; NOTIFY's limit is "shorter than 8000 bytes"
# Fields kept from an oversized body so a listener can still tell what it was about.
_IDENTIFYING: Final = ("alert_id", "event_id", "event_type", "patient_id", "study_instance_uid", "state", "at",
                       "raised_at", "completed_at", "rule", "priority")


def _dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def vitals_payloads(latest: Iterable[Latest], site_of: Mapping[str, str]) -> list[str]:
    """One `telemed_vitals` payload per patient, from the newest sample per (patient, kind)."""
    payloads = []
    for patient_id, rows in groupby(latest, key=lambda row: row.patient_id):
        newest = {
            BY_WIRE_ID[row.kind_id].name: {
                "time": format_time(from_micros(row.time_us)), "value": row.value, "quality": row.quality,
            }
            for row in rows
        }
        payloads.append(_dumps({"patient_id": patient_id, "site_id": site_of.get(patient_id), "latest": newest}))
    return payloads


def event_payload(event_type: str, *, edge_id: str, site_id: str, body: Mapping[str, Any]) -> str:
    """A `telemed_events` payload; a body that would exceed the limit is cut down to its identifying fields."""
    doc = {"type": event_type, "edge_id": edge_id, "site_id": site_id, "body": body}
    text = _dumps(doc)
    if len(text.encode()) <= MAX_PAYLOAD:
        return text
    stub = {key: body[key] for key in _IDENTIFYING if key in body and isinstance(body[key], str | int | None)}
    stub["truncated"] = True
    return _dumps({**doc, "body": stub})
