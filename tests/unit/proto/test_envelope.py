"""Envelope sealing and verification: every rejection reason, golden vectors, tampering."""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
import zlib

import pytest

from proto import envelope, keys
from proto.envelope import CLOUD_SIGNER, EnvelopeRejected, RejectReason, SignerKey
from proto.messages import AckEntry, Alert, CommitAck, PayloadType
from proto.topics import Stream
from tests.golden import vectors

EDGE_A = keys.generate()
EDGE_B = keys.generate()
CLOUD = keys.generate()
REGISTRY = {
    "edge-a": SignerKey(EDGE_A.public_key(), site="county-a"),
    "edge-b": SignerKey(EDGE_B.public_key(), site="county-b"),
    CLOUD_SIGNER: SignerKey(CLOUD.public_key()),
}
UP_ALERTS = "telemed/v1/county-a/edge-a/up/alerts"


def _alert() -> Alert:
    return Alert(alert_id=uuid.uuid4(), patient_id="pt-1", rule="news2", priority="medium", category="clinical",
                 state="active", raised_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), message="NEWS2 5",
                 news2_total=5)


def _reject(raw: bytes, topic: str = UP_ALERTS, registry: dict[str, SignerKey] = REGISTRY) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as caught:
        envelope.open_envelope(raw, topic=topic, keys=registry.get)
    return caught.value


def test_sealed_alert_opens_with_its_header() -> None:
    alert = _alert()
    mid = uuid.uuid4()
    raw = envelope.seal(alert, edge_id="edge-a", sequence=7, signer=EDGE_A, message_id=mid)
    opened = envelope.open_envelope(raw, topic=UP_ALERTS, keys=REGISTRY.get)
    assert opened.payload == alert
    assert (opened.message_id, opened.edge_id, opened.sequence) == (mid, "edge-a", 7)
    assert opened.header.payload_type is PayloadType.ALERT


def test_forged_signature_is_rejected() -> None:
    raw = envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_B)  # B's key claiming to be A
    assert _reject(raw).reason is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize("position", [5, 30, 60, -70, -1])
def test_any_tampered_byte_is_rejected(position: int) -> None:
    raw = bytearray(envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_A))
    raw[position] ^= 0x01
    assert _reject(bytes(raw)).reason in (RejectReason.BAD_SIGNATURE, RejectReason.MALFORMED)


def test_tampered_body_is_a_bad_signature() -> None:
    raw = bytearray(envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_A))
    body_start = raw.index(b'{"')
    raw[body_start + 10] ^= 0x20
    assert _reject(bytes(raw)).reason is RejectReason.BAD_SIGNATURE


def test_edge_publishing_for_another_edge_is_a_topic_mismatch() -> None:
    raw = envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_A)
    rejected = _reject(raw, topic="telemed/v1/county-b/edge-b/up/alerts")
    assert rejected.reason is RejectReason.TOPIC_MISMATCH
    assert "edge-a" in rejected.detail and rejected.header is not None


def test_edge_on_another_site_is_a_topic_mismatch() -> None:
    raw = envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_A)
    assert _reject(raw, topic="telemed/v1/county-b/edge-a/up/alerts").reason is RejectReason.TOPIC_MISMATCH


def test_payload_on_the_wrong_stream_is_a_topic_mismatch() -> None:
    raw = envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_A)
    assert _reject(raw, topic="telemed/v1/county-a/edge-a/up/vitals").reason is RejectReason.TOPIC_MISMATCH


def test_unknown_and_revoked_edges_are_rejected() -> None:
    stranger = keys.generate()
    raw = envelope.seal(_alert(), edge_id="edge-x", sequence=1, signer=stranger)
    assert _reject(raw, topic="telemed/v1/county-a/edge-x/up/alerts").reason is RejectReason.UNKNOWN_EDGE
    revoked = dict(REGISTRY, **{"edge-a": SignerKey(EDGE_A.public_key(), site="county-a", revoked=True)})
    raw = envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_A)
    assert _reject(raw, registry=revoked).reason is RejectReason.REVOKED_EDGE


def test_unknown_version_is_rejected_before_anything_else() -> None:
    raw = bytearray(envelope.seal(_alert(), edge_id="edge-a", sequence=1, signer=EDGE_A))
    raw[2] = 2
    assert _reject(bytes(raw)).reason is RejectReason.UNKNOWN_VERSION


@pytest.mark.parametrize("garbage", [b"", b"hello", b"TM" + b"\x01" * 200, bytes(range(256)), b"{}" * 80])
def test_garbage_is_malformed(garbage: bytes) -> None:
    assert _reject(garbage).reason in (RejectReason.MALFORMED, RejectReason.UNKNOWN_VERSION)


def test_signed_but_invalid_payload_is_malformed_and_names_the_field() -> None:
    """A correctly signed message whose body breaks the schema (an edge bug) is dead-lettered as malformed."""
    body = json.dumps({"acks": [{"message_id": "not-a-uuid", "stream": "vitals", "sequence": 1,
                                 "outcome": "committed"}]}).encode()
    edge = b"edge-a"
    unsigned = struct.pack(">2sBBB16sQqB", b"TM", 1, PayloadType.COMMIT_ACK, 0, uuid.uuid4().bytes, 1,
                           1_700_000_000_000_000, len(edge)) + edge + struct.pack(">I", len(body)) + body
    raw = unsigned + CLOUD.sign(unsigned)
    rejected = _reject(raw, topic="telemed/v1/county-a/edge-a/down/ack")
    assert rejected.reason is RejectReason.MALFORMED
    assert "acks[0].message_id" in rejected.detail


def test_decompression_bomb_is_refused() -> None:
    body = zlib.compress(b"[" * (envelope.MAX_BODY_SIZE + 10), 9)
    edge = b"edge-a"
    unsigned = struct.pack(">2sBBB16sQqB", b"TM", 1, PayloadType.ALERT, 1, uuid.uuid4().bytes, 1,
                           1_700_000_000_000_000, len(edge)) + edge + struct.pack(">I", len(body)) + body
    rejected = _reject(unsigned + EDGE_A.sign(unsigned))
    assert rejected.reason is RejectReason.MALFORMED and "inflates beyond" in rejected.detail


def test_downlink_is_verified_against_the_cloud_key() -> None:
    ack = CommitAck(acks=(AckEntry(message_id=uuid.uuid4(), stream=Stream.VITALS, sequence=3, outcome="committed"),))
    raw = envelope.seal(ack, edge_id="edge-a", sequence=1, signer=CLOUD)
    assert envelope.open_envelope(raw, topic="telemed/v1/county-a/edge-a/down/ack", keys=REGISTRY.get).payload == ack
    forged = envelope.seal(ack, edge_id="edge-a", sequence=1, signer=EDGE_A)  # an edge cannot forge acks
    assert _reject(forged, topic="telemed/v1/county-a/edge-a/down/ack").reason is RejectReason.BAD_SIGNATURE


# --- golden vectors -------------------------------------------------------------------------------------

GOLDEN = json.loads(vectors.PATH.read_text())


@pytest.mark.parametrize("name", sorted(GOLDEN["vectors"]))
def test_golden_vector_opens_to_its_payload(name: str) -> None:
    vector = GOLDEN["vectors"][name]
    topic, payload = vectors.payloads()[name]
    registry = {"edge-a": SignerKey(vectors.SIGNER.public_key(), site="county-a"),
                CLOUD_SIGNER: SignerKey(vectors.SIGNER.public_key())}
    opened = envelope.open_envelope(bytes.fromhex(vector["envelope_hex"]), topic=topic, keys=registry.get)
    assert opened.payload == payload
    assert opened.sequence == vector["sequence"]
    assert opened.header.created_at == vectors.T0


@pytest.mark.parametrize("name", sorted(GOLDEN["vectors"]))
def test_encoding_reproduces_the_golden_bytes(name: str) -> None:
    """Uncompressed vectors must match byte for byte; compressed ones must match before compression
    (zlib's exact output may differ between zlib builds, which the protocol allows)."""
    vector = GOLDEN["vectors"][name]
    built = vectors.build()["vectors"][name]
    golden = bytes.fromhex(vector["envelope_hex"])
    if not vector["compressed"]:
        assert built["envelope_hex"] == vector["envelope_hex"]
        return
    header, offset, length = envelope.read_header(golden)
    ptype, body = envelope.serialize(vectors.payloads()[name][1])
    assert header.payload_type is ptype
    assert zlib.decompress(golden[offset : offset + length]) == body


def test_golden_public_key_matches_the_seed() -> None:
    assert GOLDEN["public_key_hex"] == vectors.SIGNER.public_key().public_bytes_raw().hex()
