"""Live updates from database notifications (pure): parse the NOTIFY payloads of the ingest writer.

Channels and payloads are fixed by the cloud contract: `telemed_vitals` carries
{"patient_id", "site_id", "latest": {kind: {"time", "value", "quality"}}} once per patient and ingest
transaction; `telemed_events` carries {"type", "edge_id", "site_id", "body"}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from proto.quality import Quality
from proto.vocabulary import VOCABULARY

VITALS_CHANNEL = "telemed_vitals"
EVENTS_CHANNEL = "telemed_events"
CHANNELS: tuple[str, ...] = (VITALS_CHANNEL, EVENTS_CHANNEL)


class LiveUpdateError(ValueError):
    """A notification payload that does not follow the contract."""


@dataclass(frozen=True, slots=True)
class LiveUpdate:
    """One message for WebSocket clients allowed to see `site_id` (and `patient_id`, when set)."""

    site_id: str
    patient_id: str | None
    message: dict[str, Any]


def parse_notification(channel: str, payload: str) -> LiveUpdate:
    """The update for one notification; LiveUpdateError when the payload breaks the contract."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise LiveUpdateError(f"{channel}: payload is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("site_id"), str):
        raise LiveUpdateError(f"{channel}: payload lacks a site_id")
    if channel == VITALS_CHANNEL:
        return _vitals(data)
    if channel == EVENTS_CHANNEL:
        return _event(data)
    raise LiveUpdateError(f"unknown channel {channel!r}")


def _vitals(data: dict[str, Any]) -> LiveUpdate:
    patient_id = data.get("patient_id")
    latest = data.get("latest")
    if not isinstance(patient_id, str) or not isinstance(latest, dict):
        raise LiveUpdateError("telemed_vitals: payload lacks patient_id or latest")
    values: dict[str, Any] = {}
    for name, sample in latest.items():
        vital = VOCABULARY.get(name)
        if vital is None or not isinstance(sample, dict):
            continue  # a kind from a newer edge: skip it, keep the rest
        quality = sample.get("quality", 0)
        quality = quality if isinstance(quality, int) else 0
        values[name] = {
            "time": sample.get("time"), "value": sample.get("value"), "unit": vital.unit, "quality": quality,
            "quality_names": list(Quality(quality).names),
        }
    message = {"type": "vitals", "patient_id": patient_id, "site_id": data["site_id"], "latest": values}
    return LiveUpdate(site_id=data["site_id"], patient_id=patient_id, message=message)


def _event(data: dict[str, Any]) -> LiveUpdate:
    event_type = data.get("type")
    if not isinstance(event_type, str):
        raise LiveUpdateError("telemed_events: payload lacks a type")
    body = data.get("body")
    patient_id = body.get("patient_id") if isinstance(body, dict) else None
    message = {
        "type": "event", "event_type": event_type, "edge_id": data.get("edge_id"), "site_id": data["site_id"],
        "patient_id": patient_id if isinstance(patient_id, str) else None, "body": body,
    }
    return LiveUpdate(site_id=data["site_id"], patient_id=message["patient_id"], message=message)
