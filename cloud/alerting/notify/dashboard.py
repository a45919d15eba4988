"""Dashboard push: an incident change as a `telemed_events` notification of type "alert".

The payload follows the cloud contract ({"type", "edge_id", "site_id", "body"}, via cloud.ingest.notify so the
8000-byte NOTIFY limit is handled in one place); the API's live WebSocket forwards it to the dashboards of
the site. `body` is the alarm's wire JSON (proto.messages.Alert fields) plus an `incident` object with the
incident's state and the transition that caused the notification. It is sent with pg_notify inside the
transaction that changes the incident, so dashboards hear only about committed changes.
"""

from __future__ import annotations

from typing import Any

from cloud.alerting.incidents import Incident, Transition
from cloud.ingest.notify import EVENTS_CHANNEL, event_payload
from proto.schema import format_time

__all__ = ["EVENTS_CHANNEL", "incident_body", "incident_payload"]


def _time(value: Any) -> str | None:
    return None if value is None else format_time(value)


def incident_body(incident: Incident, transition: Transition) -> dict[str, Any]:
    """The alarm fields (as on the wire) and the incident's state."""
    return {
        "alert_id": str(incident.incident_id), "patient_id": incident.patient_id, "rule": incident.rule,
        "priority": incident.priority, "category": incident.category, "state": incident.alarm_state,
        "raised_at": _time(incident.alarm_changed_at), "message": incident.message, "kind": incident.kind,
        "value": incident.value, "news2_total": incident.news2_total, "device_id": incident.device_id,
        "incident": {
            "incident_id": str(incident.incident_id), "state": incident.state, "event": transition.event.value,
            "from_state": transition.from_state, "actor": transition.actor.name,
            "department_id": incident.department_id, "opened_at": _time(incident.opened_at),
            "first_raised_at": _time(incident.raised_at),
            "acknowledged_by": incident.acknowledged_by.name if incident.acknowledged_by else None,
            "resolution": incident.resolution, "next_page_at": _time(incident.next_page_at),
            "sources": sorted(incident.sources),
        },
    }


def incident_payload(incident: Incident, transition: Transition) -> str:
    """The NOTIFY payload for the incident after `transition`."""
    return event_payload("alert", edge_id=incident.edge_id or "", site_id=incident.site_id,
                         body=incident_body(incident, transition))
