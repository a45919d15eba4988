"""From MQTT deliveries to verified messages or reasoned rejections (pure: no I/O).

Every delivery is opened with proto.envelope.open_envelope against the edge registry. A rejection keeps the
raw bytes for the dead letters, and says where a `rejected` ack may go: to the edge whose topic it came in
on (the broker's ACL guarantees that edge published it), when that edge is registered and active and the
envelope header could be read; never to the edge an envelope merely claims to be.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from cloud.ingest.validate import flag_implausible
from proto import topics
from proto.envelope import Envelope, EnvelopeHeader, EnvelopeRejected, KeyLookup, open_envelope
from proto.topics import Stream, TopicError
from proto.vitals import VitalsBatch


class DeadLetterReason(enum.StrEnum):
    """Why a message ended in the dead letters: the envelope's reasons, plus failing to be written."""

    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown_version"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_EDGE = "unknown_edge"
    REVOKED_EDGE = "revoked_edge"
    BAD_SIGNATURE = "bad_signature"
    PROCESSING_FAILED = "processing_failed"  # verified, but writing it failed every time (a poison message)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One MQTT message as received; `token` lets the consumer acknowledge it to the broker later."""

    topic: str
    payload: bytes
    received_at: dt.datetime
    token: object = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class AckTarget:
    """The edge (and its site) a commit ack for a delivery is published to."""

    site: str
    edge: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified message from a registered, active edge of `site`."""

    delivery: Delivery
    envelope: Envelope
    site: str
    quality: npt.NDArray[np.int32] | None = field(default=None, compare=False)  # vitals: validated flags

    @property
    def message_id(self) -> uuid.UUID:
        return self.envelope.message_id

    @property
    def edge_id(self) -> str:
        return self.envelope.edge_id

    @property
    def stream(self) -> Stream:
        return self.envelope.header.payload_type.stream

    @property
    def samples(self) -> int:
        return len(self.envelope.payload) if isinstance(self.envelope.payload, VitalsBatch) else 0

    @property
    def target(self) -> AckTarget:
        return AckTarget(self.site, self.edge_id)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A delivery that goes to the dead letters."""

    delivery: Delivery
    reason: DeadLetterReason
    detail: str
    header: EnvelopeHeader | None
    topic_edge: str | None
    target: AckTarget | None  # where to send the `rejected` ack, if anywhere

    @property
    def message_id(self) -> uuid.UUID | None:
        return self.header.message_id if self.header is not None else None


def topic_edge(topic: str) -> tuple[str, str] | None:
    """(site, edge) of a contract uplink topic, else None."""
    try:
        parsed = topics.parse(topic)
    except TopicError:
        return None
    return (parsed.site, parsed.edge) if parsed.direction is topics.Direction.UP else None


def open_delivery(delivery: Delivery, keys: KeyLookup) -> Accepted | Rejected:
    """Verify one delivery; vitals get their quality flags validated against the vocabulary."""
    where = topic_edge(delivery.topic)
    try:
        envelope = open_envelope(delivery.payload, topic=delivery.topic, keys=keys)
    except EnvelopeRejected as exc:
        return reject(delivery, DeadLetterReason(exc.reason.value), exc.detail, exc.header, keys)
    site = where[0] if where is not None else ""
    payload = envelope.payload
    quality = None
    if isinstance(payload, VitalsBatch):
        quality = flag_implausible(payload.kind_id, payload.value, payload.quality)
    return Accepted(delivery, envelope, site, quality)


def reject(
    delivery: Delivery, reason: DeadLetterReason, detail: str, header: EnvelopeHeader | None, keys: KeyLookup
) -> Rejected:
    """A rejection, with an ack target when the publishing edge is known, active and the header readable."""
    where = topic_edge(delivery.topic)
    target = None
    if where is not None and header is not None:
        site, edge = where
        key = keys(edge)
        if key is not None and not key.revoked and key.site == site:
            target = AckTarget(site, edge)
    return Rejected(delivery, reason, detail, header, where[1] if where else None, target)
