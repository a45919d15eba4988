"""The disk budget: only the oldest, lowest-priority data goes; alerts never; the drop is counted and announced."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.metrics import Registry
from edge.outbox import EVICTION_RULE, EvictionReport, Lane, Outbox, OutboxPolicy, StoredMessage
from proto import envelope, keys, topics
from proto.envelope import Payload, SignerKey
from proto.messages import Alert, Event
from tests.unit.edge.test_outbox_queue import EDGE, SITE, alert, drain_lane, event, manifest, vitals

BUDGET = 12_000


@pytest.fixture
def signer() -> Ed25519PrivateKey:
    return keys.generate()


def opened(message: StoredMessage, signer: Ed25519PrivateKey) -> Payload:
    topic = topics.build(SITE, EDGE, message.stream)
    return envelope.open_envelope(message.envelope, topic=topic, keys={EDGE: SignerKey(signer.public_key())}.get
                                  ).payload


def fill_until_evicted(box: Outbox, reports: list[EvictionReport]) -> list[str]:
    """Enqueue vitals until the budget bites; returns the vitals' message ids in enqueue order."""
    ids: list[str] = []
    while not reports:
        ids.append(str(box.enqueue(vitals(patient=f"pt-{len(ids)}")).result(5).message_id))
        assert len(ids) < 1000, "the budget never triggered"
    return ids


def test_eviction_takes_bulk_first_then_the_oldest_vitals_and_never_alerts(tmp_path: Path,
                                                                         signer: Ed25519PrivateKey) -> None:
    reports: list[EvictionReport] = []
    policy = OutboxPolicy(max_bytes=BUDGET, low_watermark=0.5)
    with Outbox(tmp_path / "o.sqlite3", edge_id=EDGE, signer=signer, policy=policy, on_eviction=reports.append) as box:
        alerts = [box.enqueue(alert()).result(5).message_id for _ in range(3)]
        events = [box.enqueue(event()).result(5).message_id for _ in range(2)]
        bulk = [box.enqueue(manifest()).result(5) for _ in range(2)]
        vital_ids = fill_until_evicted(box, reports)

        [report] = reports
        bulk_out, vitals_out = report.evicted
        assert (bulk_out.lane, bulk_out.messages, bulk_out.bytes) == (Lane.BULK, 2, sum(b.size for b in bulk))
        assert vitals_out.lane is Lane.VITALS and vitals_out.messages > 0
        # The survivors are exactly the newest vitals, in order; alerts and events are all still there.
        kept = [str(m.message_id) for m in drain_lane(box, Lane.VITALS)]
        assert kept == vital_ids[vitals_out.messages:]
        assert drain_lane(box, Lane.BULK) == []
        assert [m.message_id for m in drain_lane(box, Lane.ALERTS)][:3] == alerts
        assert [m.message_id for m in drain_lane(box, Lane.EVENTS)][:2] == events
        assert box.total_bytes() <= BUDGET
        assert box.totals() == {"evicted_messages:bulk": 2, "evicted_bytes:bulk": bulk_out.bytes,
                                "evicted_messages:vitals": vitals_out.messages,
                                "evicted_bytes:vitals": vitals_out.bytes}


def test_the_cloud_is_told_by_an_event_per_lane_and_one_technical_alert(tmp_path: Path,
                                                                        signer: Ed25519PrivateKey) -> None:
    reports: list[EvictionReport] = []
    policy = OutboxPolicy(max_bytes=BUDGET, low_watermark=0.5)
    with Outbox(tmp_path / "o.sqlite3", edge_id=EDGE, signer=signer, policy=policy, on_eviction=reports.append) as box:
        box.enqueue(event()).result(5)
        box.enqueue(manifest()).result(5)
        fill_until_evicted(box, reports)
        [report] = reports
        events = [opened(m, signer) for m in drain_lane(box, Lane.EVENTS)]
        [technical] = [opened(m, signer) for m in drain_lane(box, Lane.ALERTS)]
        sequences = [m.sequence for m in drain_lane(box, Lane.EVENTS)]

    notices = [e.outbox_eviction for e in events[1:] if isinstance(e, Event)]
    assert [(n.lane, n.messages, n.bytes) for n in notices if n is not None] == [
        (e.lane.label, e.messages, e.bytes) for e in report.evicted]
    assert sequences == [1, 2, 3]  # the notices follow the stream's earlier events
    assert isinstance(technical, Alert)
    assert (technical.category, technical.rule, technical.priority, technical.state) == (
        "technical", EVICTION_RULE, "medium", "active")
    assert technical.patient_id == f"edge:{EDGE}"
    assert technical.alert_id == report.cloud_alert_id
    dropped = report.evicted[-1]
    assert f"dropped 1 bulk messages ({report.evicted[0].bytes} bytes), {dropped.messages} vitals messages" \
        in technical.message


def test_alerts_are_kept_even_when_they_alone_exceed_the_budget(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    reports: list[EvictionReport] = []
    policy = OutboxPolicy(max_bytes=2_000)
    with Outbox(tmp_path / "o.sqlite3", edge_id=EDGE, signer=signer, policy=policy, on_eviction=reports.append) as box:
        ids = [box.enqueue(alert()).result(5).message_id for _ in range(20)]
        assert box.total_bytes() > 2_000
        assert [m.message_id for m in drain_lane(box, Lane.ALERTS)] == ids
        assert reports == [] and box.totals() == {}


def test_repeated_evictions_send_events_but_rate_limit_the_alert(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    reports: list[EvictionReport] = []
    policy = OutboxPolicy(max_bytes=BUDGET, low_watermark=0.8, eviction_alert_interval_s=3600)
    with Outbox(tmp_path / "o.sqlite3", edge_id=EDGE, signer=signer, policy=policy, on_eviction=reports.append) as box:
        fill_until_evicted(box, reports)
        first = reports.pop()
        fill_until_evicted(box, reports)
        second = reports.pop()
        assert first.cloud_alert_id is not None and second.cloud_alert_id is None
        assert len(drain_lane(box, Lane.ALERTS)) == 1
        assert len(drain_lane(box, Lane.EVENTS)) == 2
        total = first.messages + second.messages
        assert box.totals()["evicted_messages:vitals"] == total


def test_eviction_totals_survive_restart_and_show_in_metrics(tmp_path: Path, signer: Ed25519PrivateKey) -> None:
    path = tmp_path / "o.sqlite3"
    reports: list[EvictionReport] = []
    policy = OutboxPolicy(max_bytes=BUDGET, low_watermark=0.5)
    with Outbox(path, edge_id=EDGE, signer=signer, policy=policy, on_eviction=reports.append) as box:
        fill_until_evicted(box, reports)
    with Outbox(path, edge_id=EDGE, signer=signer, policy=policy) as box:
        registry = Registry()
        box.register_metrics(registry)
        text = registry.render()
    evicted = reports[0].evicted[0]
    assert f'telemed_outbox_evicted_messages_total{{lane="vitals"}} {evicted.messages}' in text
    assert f'telemed_outbox_evicted_bytes_total{{lane="vitals"}} {evicted.bytes}' in text
    assert 'telemed_outbox_evicted_messages_total{lane="alerts"} 0' in text
    assert 'telemed_outbox_depth{lane="alerts"} 1' in text
