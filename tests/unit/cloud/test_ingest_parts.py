"""Small pure parts of ingest: plausibility flags, ack targets, signed acks and their sequence, notify payloads."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import numpy as np
import pytest

from cloud.edges.registry import EdgeRegistry
from cloud.ingest import notify
from cloud.ingest.acks import AckSequence, Outcome, group_acks, seal_acks
from cloud.ingest.intake import Accepted, AckTarget, Delivery, Rejected, open_delivery
from cloud.ingest.samples import Latest
from cloud.ingest.validate import flag_implausible, implausible
from proto import keys, topics
from proto.envelope import CLOUD_SIGNER, SignerKey, open_envelope
from proto.messages import AckEntry, CommitAck
from proto.quality import Quality
from proto.topics import Stream
from proto.vocabulary import kind
from tests.unit.cloud.ingest_messages import TestEdge, ward_batch

UTC = dt.UTC


def test_values_outside_the_plausible_range_are_flagged() -> None:
    kinds = np.array([kind(k).wire_id for k in ("spo2", "spo2", "heart_rate", "heart_rate", "on_oxygen",
                                                 "consciousness", "consciousness")], dtype=np.uint8)
    values = np.array([100.0, 100.5, 20.0, 19.9, 0.5, 4.0, 1.5])

    assert implausible(kinds, values).tolist() == [False, True, False, True, True, False, True]


def test_flagging_keeps_the_device_flags() -> None:
    kinds = np.array([kind("spo2").wire_id] * 2, dtype=np.uint8)
    quality = np.array([Quality.MOTION, Quality.NONE], dtype=np.uint16)

    flagged = flag_implausible(kinds, np.array([40.0, 97.0]), quality)

    assert flagged.tolist() == [Quality.MOTION | Quality.IMPLAUSIBLE, 0]
    assert flagged.dtype == np.int32


@pytest.fixture
def edge() -> TestEdge:
    return TestEdge("edge-a", "site-1")


def registry_of(*records: object) -> EdgeRegistry:
    return EdgeRegistry(lambda: list(records), ttl_s=60)  # type: ignore[arg-type]


def test_an_accepted_message_knows_its_site_and_ack_target(edge: TestEdge) -> None:
    result = open_delivery(edge.delivery(ward_batch(4)), registry_of(edge.record))

    assert isinstance(result, Accepted)
    assert (result.site, result.target, result.samples, result.stream) == (
        "site-1", AckTarget("site-1", "edge-a"), 4, Stream.VITALS)


def test_a_message_on_another_sites_topic_is_not_acked(edge: TestEdge) -> None:
    raw = edge.seal(ward_batch(2))
    delivery = Delivery(topics.build("site-2", "edge-a", "vitals"), raw, dt.datetime.now(UTC))

    result = open_delivery(delivery, registry_of(edge.record))

    assert isinstance(result, Rejected)
    assert (result.reason, result.target) == ("topic_mismatch", None)


def test_a_rejection_with_an_unreadable_header_is_not_acked(edge: TestEdge) -> None:
    result = open_delivery(Delivery(edge.topic("vitals"), b"TM" + b"\x00" * 10, dt.datetime.now(UTC)),
                           registry_of(edge.record))

    assert isinstance(result, Rejected)
    assert (result.reason, result.header, result.target) == ("malformed", None, None)


def entry(outcome: str = "committed", stream: Stream = Stream.VITALS) -> AckEntry:
    return AckEntry(uuid.uuid4(), stream, 7, outcome)  # type: ignore[arg-type]


def test_acks_are_grouped_per_edge_in_delivery_order() -> None:
    delivery = Delivery("t", b"", dt.datetime.now(UTC))
    a, b = AckTarget("s1", "e1"), AckTarget("s1", "e2")
    e1, e2, e3 = entry(), entry("duplicate"), entry("rejected", Stream.ALERTS)
    outcomes = [Outcome(delivery, "committed", a, e1), Outcome(delivery, "duplicate", b, e2),
                Outcome(delivery, "rejected", a, e3), Outcome(delivery, "rejected", None, None)]

    assert group_acks(outcomes) == {a: CommitAck((e1, e3)), b: CommitAck((e2,))}


def test_sealed_acks_verify_with_the_cloud_key_on_the_edges_downlink() -> None:
    cloud = keys.generate()
    target = AckTarget("s1", "e1")
    e1 = entry()
    [(topic, raw)] = seal_acks([Outcome(Delivery("t", b"", dt.datetime.now(UTC)), "committed", target, e1)],
                               signer=cloud, sequence=AckSequence(3))

    assert topic == "telemed/v1/s1/e1/down/ack"
    env = open_envelope(raw, topic=topic, keys={CLOUD_SIGNER: SignerKey(cloud.public_key())}.get)
    assert env.payload == CommitAck((e1,)) and env.edge_id == "e1"
    with pytest.raises(ValueError, match="bad_signature"):
        open_envelope(raw, topic=topic, keys={CLOUD_SIGNER: SignerKey(keys.generate().public_key())}.get)


def test_ack_sequences_increase_and_carry_the_worker_index() -> None:
    clock = iter([5_000_000, 5_000_000, 4_000_000, 9_000_000])
    sequence = AckSequence(7, clock=lambda: next(clock))

    values = [sequence() for _ in range(4)]

    assert values == sorted(set(values))
    assert all(v & 0xFF == 7 for v in values)
    assert values[0] == (5_000 << 8) | 7 and values[3] == (9_000 << 8) | 7


def test_vitals_payloads_carry_the_latest_sample_per_kind() -> None:
    t = 1_767_225_600_000_000
    rows = [Latest("pt-1", 1, t, 80.0, 0), Latest("pt-1", 2, t + 1, 95.0, int(Quality.MOTION)),
            Latest("pt-2", 1, t, 60.0, 0)]

    payloads = [json.loads(p) for p in notify.vitals_payloads(rows, {"pt-1": "s1", "pt-2": "s2"})]

    assert payloads == [
        {"patient_id": "pt-1", "site_id": "s1", "latest": {
            "heart_rate": {"time": "2026-01-01T00:00:00.000000Z", "value": 80.0, "quality": 0},
            "spo2": {"time": "2026-01-01T00:00:00.000001Z", "value": 95.0, "quality": 2}}},
        {"patient_id": "pt-2", "site_id": "s2", "latest": {
            "heart_rate": {"time": "2026-01-01T00:00:00.000000Z", "value": 60.0, "quality": 0}}},
    ]


def test_an_oversized_event_payload_keeps_only_identifying_fields() -> None:
    body = {"study_instance_uid": "1.2.3", "patient_id": "pt-1", "series": [{"x": "y" * 100}] * 100}

    small = json.loads(notify.event_payload("alert", edge_id="e", site_id="s", body={"alert_id": "a"}))
    big_text = notify.event_payload("dicom_manifest", edge_id="e", site_id="s", body=body)

    assert small == {"type": "alert", "edge_id": "e", "site_id": "s", "body": {"alert_id": "a"}}
    assert len(big_text.encode()) < 8000
    assert json.loads(big_text)["body"] == {"study_instance_uid": "1.2.3", "patient_id": "pt-1", "truncated": True}
