"""MQTT topics of the wire contract: `telemed/v1/{site}/{edge}/{up|down}/{stream}`.

Edges publish on `up/*` and read `down/*` of their own edge id only (the broker's ACL enforces it);
the cloud consumes every edge through one shared subscription.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

ROOT = "telemed"
VERSION = "v1"
# Site and edge ids are topic segments: no wildcards, separators or spaces.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


class Direction(enum.StrEnum):
    UP = "up"  # edge -> cloud
    DOWN = "down"  # cloud -> edge


class Stream(enum.StrEnum):
    VITALS = "vitals"
    ALERTS = "alerts"
    EVENTS = "events"
    DICOM = "dicom"
    STATUS = "status"
    ACK = "ack"
    CMD = "cmd"

    @property
    def direction(self) -> Direction:
        return Direction.DOWN if self in (Stream.ACK, Stream.CMD) else Direction.UP


class TopicError(ValueError):
    """A topic outside the telemed contract."""


@dataclass(frozen=True, slots=True)
class Topic:
    site: str
    edge: str
    stream: Stream

    @property
    def direction(self) -> Direction:
        return self.stream.direction

    def __str__(self) -> str:
        return f"{ROOT}/{VERSION}/{self.site}/{self.edge}/{self.direction}/{self.stream}"


def check_id(value: str, what: str) -> str:
    """Return `value` if it is a valid site or edge id, else raise TopicError."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise TopicError(f"invalid {what} id {value!r}: 1-64 of A-Z a-z 0-9 _ -, starting alphanumeric")
    return value


def build(site: str, edge: str, stream: Stream | str) -> str:
    """The topic string for an edge's stream; the direction follows from the stream."""
    try:
        stream = Stream(stream)
    except ValueError:
        raise TopicError(f"unknown stream {stream!r}") from None
    return str(Topic(check_id(site, "site"), check_id(edge, "edge"), stream))


def parse(topic: str) -> Topic:
    """Parse a concrete topic (no wildcards); raises TopicError for anything outside the contract."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != ROOT:
        raise TopicError(f"not a telemed topic: {topic!r}")
    if parts[1] != VERSION:
        raise TopicError(f"unsupported topic version {parts[1]!r} in {topic!r}")
    site, edge, direction, stream_name = parts[2:]
    check_id(site, "site")
    check_id(edge, "edge")
    try:
        stream = Stream(stream_name)
    except ValueError:
        raise TopicError(f"unknown stream {stream_name!r} in {topic!r}") from None
    if stream.direction.value != direction:
        raise TopicError(f"stream {stream_name!r} is not a {direction!r} stream in {topic!r}")
    return Topic(site, edge, stream)


def ingest_subscription(group: str = "ingest") -> str:
    """The cloud's shared subscription to every edge's uplink."""
    return f"$share/{group}/{ROOT}/{VERSION}/+/+/{Direction.UP}/#"


def downlink_subscription(site: str, edge: str) -> str:
    """What an edge subscribes to: its own downlink streams."""
    return f"{ROOT}/{VERSION}/{check_id(site, 'site')}/{check_id(edge, 'edge')}/{Direction.DOWN}/#"
