"""Priority lanes of the outbox: which queued messages go first and which may be dropped under a disk budget.

A lane follows from the message's stream (its payload type): alerts travel alone and first, clinical
events next, then vitals, then DICOM manifests and other bulk (ARCHITECTURE.md, wire contract rules).
The lane's number is its priority, lower first; it is stored with each row, so it must never be renumbered.
"""

from __future__ import annotations

import enum

from proto.topics import Stream


class Lane(enum.IntEnum):
    """Send order, highest priority first; the eviction order under a disk budget is the reverse."""

    ALERTS = 0
    EVENTS = 1
    VITALS = 2
    BULK = 3

    @property
    def label(self) -> str:
        """The lane's name in metrics and the EdgeStatus heartbeat."""
        return self.name.lower()

    @property
    def evictable(self) -> bool:
        """Alerts are never dropped to make room, whatever the disk budget says."""
        return self is not Lane.ALERTS


class LaneError(ValueError):
    """A stream that is never queued in the outbox (downlink streams, the retained status)."""


_LANE_OF: dict[Stream, Lane] = {
    Stream.ALERTS: Lane.ALERTS,
    Stream.EVENTS: Lane.EVENTS,
    Stream.VITALS: Lane.VITALS,
    Stream.DICOM: Lane.BULK,
}

# Eviction visits the lowest-priority lane first and never touches alerts.
EVICTION_ORDER: tuple[Lane, ...] = tuple(sorted((lane for lane in Lane if lane.evictable), reverse=True))


def lane_of(stream: Stream) -> Lane:
    """The lane of an uplink stream that goes through the outbox; LaneError for any other stream."""
    try:
        return _LANE_OF[stream]
    except KeyError:
        raise LaneError(f"stream {stream!s} is not queued in the outbox") from None
