"""The signed envelope every MQTT message travels in, and its verification.

Layout of schema version 1 (all integers big-endian; docs/protocol.md has the full description):

    offset  size  field
    0       2     magic b"TM"
    2       1     schema version (1)
    3       1     payload type (proto.messages.PayloadType)
    4       1     flags: bit 0 = body zlib-compressed; other bits must be 0
    5       16    message id (UUID, 16 bytes)
    21      8     sequence number, per edge and stream (u64)
    29      8     creation time, microseconds since the Unix epoch, UTC (i64)
    37      1     edge id length L (1..64)
    38      L     edge id (ASCII)
    38+L    4     body length B
    42+L    B     body: columnar vitals (proto.vitals) or UTF-8 JSON (proto.schema), maybe compressed
    42+L+B  64    Ed25519 signature over bytes 0 .. 42+L+B

Uplink messages are signed by the edge's key, downlink messages (acks, commands) by the cloud's key;
`edge id` always names the edge whose topic the message travels on. Verification checks in the order
that is cheapest for an attacker to fail: framing, version, topic, signer, signature; only a verified
body is decompressed and parsed.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from proto import topics
from proto.messages import (
    Alert,
    Command,
    CommitAck,
    DicomManifest,
    EdgeStatus,
    Event,
    PayloadType,
)
from proto.schema import ValidationError, from_wire, to_wire
from proto.topics import Direction, TopicError
from proto.vitals import VitalsBatch, decode_batch, encode_batch, from_micros, to_micros

MAGIC: Final = b"TM"
SCHEMA_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({1})
SIGNATURE_SIZE: Final = 64
FLAG_COMPRESSED: Final = 0x01
# Bodies above this are never inflated (a decompression bomb costs the sender, not the cloud).
MAX_BODY_SIZE: Final = 32 * 1024 * 1024
# JSON bodies smaller than this are not worth compressing.
COMPRESS_THRESHOLD: Final = 512
# Who signs downlink messages.
CLOUD_SIGNER: Final = "cloud"

_FIXED = struct.Struct(">2sBBB16sQqB")
_BODY_LEN = struct.Struct(">I")

Payload = VitalsBatch | Alert | Event | DicomManifest | EdgeStatus | CommitAck | Command

_JSON_TYPES: dict[PayloadType, type[Any]] = {
    PayloadType.ALERT: Alert,
    PayloadType.EVENT: Event,
    PayloadType.DICOM_MANIFEST: DicomManifest,
    PayloadType.EDGE_STATUS: EdgeStatus,
    PayloadType.COMMIT_ACK: CommitAck,
    PayloadType.COMMAND: Command,
}
_TYPE_OF: dict[type[Any], PayloadType] = {cls: t for t, cls in _JSON_TYPES.items()} | {
    VitalsBatch: PayloadType.VITALS_BATCH
}


class RejectReason(enum.StrEnum):
    """Why a message was refused; stored with the raw bytes in the cloud's dead letters."""

    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown_version"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_EDGE = "unknown_edge"
    REVOKED_EDGE = "revoked_edge"
    BAD_SIGNATURE = "bad_signature"


class EnvelopeRejected(ValueError):
    """A message that must not be processed; `reason` is machine-readable, `detail` for people."""

    def __init__(self, reason: RejectReason, detail: str, header: EnvelopeHeader | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.header = header


@dataclass(frozen=True, slots=True)
class SignerKey:
    """A registered signer's public key and where it may publish."""

    public_key: Ed25519PublicKey
    site: str | None = None  # the site the edge belongs to; None for the cloud
    revoked: bool = False


KeyLookup = Callable[[str], SignerKey | None]


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The envelope fields, readable before (and without) verification."""

    version: int
    payload_type: PayloadType
    flags: int
    message_id: uuid.UUID
    sequence: int
    created_at: dt.datetime
    edge_id: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """A verified message."""

    header: EnvelopeHeader
    payload: Payload
    size: int

    @property
    def message_id(self) -> uuid.UUID:
        return self.header.message_id

    @property
    def edge_id(self) -> str:
        return self.header.edge_id

    @property
    def sequence(self) -> int:
        return self.header.sequence


# --- body codec -------------------------------------------------------------------------------------------


def payload_type_of(payload: Payload) -> PayloadType:
    try:
        return _TYPE_OF[type(payload)]
    except KeyError:
        raise TypeError(f"not a wire payload: {type(payload).__name__}") from None


def serialize(payload: Payload) -> tuple[PayloadType, bytes]:
    """A validated payload's uncompressed body: columnar vitals, or canonical UTF-8 JSON (sorted keys)."""
    ptype = payload_type_of(payload)
    if isinstance(payload, VitalsBatch):
        payload.validate()
        return ptype, encode_batch(payload)
    validate = getattr(payload, "validate", None)
    if validate is not None:
        validate()
    return ptype, json.dumps(to_wire(payload), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def encode_body(payload: Payload) -> tuple[PayloadType, bytes, int]:
    """Serialise a payload: (type, body bytes, flags). Vitals are always compressed, JSON when large."""
    ptype, body = serialize(payload)
    if ptype is PayloadType.VITALS_BATCH:
        return ptype, zlib.compress(body, 1), FLAG_COMPRESSED
    if len(body) >= COMPRESS_THRESHOLD:
        return ptype, zlib.compress(body, 6), FLAG_COMPRESSED
    return ptype, body, 0


def _inflate(body: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, MAX_BODY_SIZE)
    except zlib.error as exc:
        raise ValidationError("body", f"corrupt compressed body: {exc}") from None
    if inflater.unconsumed_tail:
        raise ValidationError("body", f"inflates beyond {MAX_BODY_SIZE} bytes")
    if not inflater.eof or inflater.unused_data:
        raise ValidationError("body", "compressed body is truncated or has trailing bytes")
    return out


def decode_body(ptype: PayloadType, flags: int, body: bytes) -> Payload:
    """Parse a body into its payload; raises ValidationError naming the field."""
    if flags & FLAG_COMPRESSED:
        body = _inflate(body)
    if ptype is PayloadType.VITALS_BATCH:
        return decode_batch(body)
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError("body", f"not UTF-8 JSON: {exc}") from None
    result: Payload = from_wire(_JSON_TYPES[ptype], data)
    return result


# --- sealing and opening -----------------------------------------------------------------------------------


def seal(
    payload: Payload,
    *,
    edge_id: str,
    sequence: int,
    signer: Ed25519PrivateKey,
    message_id: uuid.UUID | None = None,
    created_at: dt.datetime | None = None,
) -> bytes:
    """Encode and sign a payload into envelope bytes ready to publish."""
    topics.check_id(edge_id, "edge")
    if not 0 <= sequence < 2**64:
        raise ValueError(f"sequence out of range: {sequence}")
    ptype, body, flags = encode_body(payload)
    message_id = message_id or uuid.uuid4()
    created_us = to_micros(created_at or dt.datetime.now(dt.UTC))
    edge = edge_id.encode("ascii")
    unsigned = b"".join((
        _FIXED.pack(MAGIC, SCHEMA_VERSION, ptype, flags, message_id.bytes, sequence, created_us, len(edge)),
        edge, _BODY_LEN.pack(len(body)), body,
    ))
    return unsigned + signer.sign(unsigned)


def read_header(raw: bytes) -> tuple[EnvelopeHeader, int, int]:
    """Parse the header: (header, body offset, body length). Raises EnvelopeRejected (malformed/version)."""
    if len(raw) < _FIXED.size + 1 + _BODY_LEN.size + SIGNATURE_SIZE:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"{len(raw)} bytes is too short for an envelope")
    magic, version, ptype, flags, mid, seq, created, edge_len = _FIXED.unpack_from(raw, 0)
    if magic != MAGIC:
        raise EnvelopeRejected(RejectReason.MALFORMED, "bad magic: not a telemed envelope")
    if version not in SUPPORTED_VERSIONS:
        raise EnvelopeRejected(RejectReason.UNKNOWN_VERSION, f"schema version {version} is not supported")
    try:
        payload_type = PayloadType(ptype)
    except ValueError:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"unknown payload type {ptype}") from None
    if flags & ~FLAG_COMPRESSED:
        raise EnvelopeRejected(RejectReason.MALFORMED, f"reserved flag bits set: {flags:#04x}")
    offset = _FIXED.size
    if not 1 <= edge_len <= 64 or offset + edge_len + _BODY_LEN.size > len(raw):
        raise EnvelopeRejected(RejectReason.MALFORMED, "bad edge id length")
    try:
        edge_id = topics.check_id(raw[offset : offset + edge_len].decode("ascii"), "edge")
    except (UnicodeDecodeError, TopicError):
        raise EnvelopeRejected(RejectReason.MALFORMED, "edge id is not a valid id") from None
    offset += edge_len
    (body_len,) = _BODY_LEN.unpack_from(raw, offset)
    offset += _BODY_LEN.size
    if offset + body_len + SIGNATURE_SIZE != len(raw):
        actual = len(raw) - offset - SIGNATURE_SIZE
        raise EnvelopeRejected(RejectReason.MALFORMED, f"length mismatch: body says {body_len}, message has {actual}")
    try:
        created_at = from_micros(created)
    except OverflowError:
        raise EnvelopeRejected(RejectReason.MALFORMED, "creation time out of range") from None
    header = EnvelopeHeader(version, payload_type, flags, uuid.UUID(bytes=mid), seq, created_at, edge_id)
    return header, offset, body_len


def open_envelope(raw: bytes, *, topic: str, keys: KeyLookup) -> Envelope:
    """Verify and decode a message received on `topic`.

    `keys` maps a signer id (an edge id, or CLOUD_SIGNER for downlink) to its registered key. Raises
    EnvelopeRejected with the reason: malformed, unknown_version, topic_mismatch, unknown_edge,
    revoked_edge or bad_signature.
    """
    header, body_offset, body_len = read_header(raw)
    try:
        where = topics.parse(topic)
    except TopicError as exc:
        raise EnvelopeRejected(RejectReason.TOPIC_MISMATCH, str(exc), header) from None
    if where.edge != header.edge_id:
        raise EnvelopeRejected(RejectReason.TOPIC_MISMATCH,
                               f"envelope of edge {header.edge_id!r} on topic of edge {where.edge!r}", header)
    if where.stream is not header.payload_type.stream:
        raise EnvelopeRejected(RejectReason.TOPIC_MISMATCH,
                               f"{header.payload_type.name} does not belong on stream {where.stream}", header)
    signer = header.edge_id if where.direction is Direction.UP else CLOUD_SIGNER
    key = keys(signer)
    if key is None:
        raise EnvelopeRejected(RejectReason.UNKNOWN_EDGE, f"no registered key for {signer!r}", header)
    if key.revoked:
        raise EnvelopeRejected(RejectReason.REVOKED_EDGE, f"{signer!r} has been revoked", header)
    if key.site is not None and key.site != where.site:
        raise EnvelopeRejected(RejectReason.TOPIC_MISMATCH,
                               f"edge {signer!r} belongs to site {key.site!r}, not {where.site!r}", header)
    signed_end = body_offset + body_len
    try:
        key.public_key.verify(raw[signed_end:], raw[:signed_end])
    except InvalidSignature:
        raise EnvelopeRejected(
            RejectReason.BAD_SIGNATURE, f"signature does not verify for {signer!r}", header
        ) from None
    try:
        payload = decode_body(header.payload_type, header.flags, raw[body_offset:signed_end])
    except ValidationError as exc:
        raise EnvelopeRejected(RejectReason.MALFORMED, str(exc), header) from None
    return Envelope(header=header, payload=payload, size=len(raw))
