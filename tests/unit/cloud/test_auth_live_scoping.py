"""Live fan-out honours site scoping and drops slow clients without blocking others (no database)."""

from __future__ import annotations

import asyncio
import json

import pytest

from cloud.api.auth.scoping import SiteScope
from cloud.api.live_hub import DROPPED, LiveHub
from cloud.api.live_updates import LiveUpdate, LiveUpdateError, parse_notification

SITE_A = SiteScope(False, frozenset({"site-a"}))
SITE_B = SiteScope(False, frozenset({"site-b"}))
EVERYWHERE = SiteScope(True, frozenset())


def vitals_payload(patient: str, site: str) -> str:
    return json.dumps({"patient_id": patient, "site_id": site, "latest": {
        "heart_rate": {"time": "2024-05-01T08:00:00Z", "value": 72.0, "quality": 2},
        "from_a_newer_edge": {"time": "2024-05-01T08:00:00Z", "value": 1.0, "quality": 0},
    }})


def test_vitals_notifications_become_enriched_messages() -> None:
    update = parse_notification("telemed_vitals", vitals_payload("P-1", "site-a"))
    assert (update.site_id, update.patient_id) == ("site-a", "P-1")
    assert update.message == {"type": "vitals", "patient_id": "P-1", "site_id": "site-a", "latest": {
        "heart_rate": {"time": "2024-05-01T08:00:00Z", "value": 72.0, "unit": "/min", "quality": 2,
                       "quality_names": ["motion"]},
    }}


def test_event_notifications_carry_the_body_and_its_patient() -> None:
    payload = json.dumps({"type": "alert", "edge_id": "e1", "site_id": "site-b", "body": {"patient_id": "P-9"}})
    update = parse_notification("telemed_events", payload)
    assert update.patient_id == "P-9" and update.message["event_type"] == "alert"


@pytest.mark.parametrize(("channel", "payload"), [
    ("telemed_vitals", "not json"),
    ("telemed_vitals", json.dumps({"patient_id": "P-1", "latest": {}})),  # no site
    ("telemed_vitals", json.dumps({"site_id": "a", "latest": {}})),  # no patient
    ("telemed_events", json.dumps({"site_id": "a"})),  # no type
    ("elsewhere", json.dumps({"site_id": "a"})),
])
def test_payloads_breaking_the_contract_are_refused(channel: str, payload: str) -> None:
    with pytest.raises(LiveUpdateError):
        parse_notification(channel, payload)


def test_updates_reach_only_subscribers_whose_scope_includes_the_site() -> None:
    async def scenario() -> None:
        hub = LiveHub("postgresql://unused", queue_size=8)
        a, b, admin = hub.subscribe(SITE_A), hub.subscribe(SITE_B), hub.subscribe(EVERYWHERE)
        hub.publish(parse_notification("telemed_vitals", vitals_payload("P-1", "site-a")))
        assert a.queue.qsize() == 1 and b.queue.qsize() == 0 and admin.queue.qsize() == 1
        hub.unsubscribe(a)
        hub.publish(parse_notification("telemed_vitals", vitals_payload("P-2", "site-a")))
        assert a.queue.qsize() == 1 and admin.queue.qsize() == 2
        assert hub.subscriber_count == 2

    asyncio.run(scenario())


def test_a_slow_subscriber_is_dropped_and_the_others_keep_receiving() -> None:
    async def scenario() -> None:
        hub = LiveHub("postgresql://unused", queue_size=3)
        slow, fast = hub.subscribe(SITE_A), hub.subscribe(SITE_A)
        for i in range(10):
            hub.publish(LiveUpdate("site-a", f"P-{i}", {"i": i}))
            item = await fast.queue.get()  # the fast client keeps up
            assert isinstance(item, LiveUpdate) and item.message == {"i": i}
        assert slow.dropped and slow.queue.qsize() == 1 and slow.queue.get_nowait() is DROPPED
        assert not fast.dropped

    asyncio.run(scenario())
