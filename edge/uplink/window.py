"""The in-flight window: which outbox messages are published and awaiting the cloud's CommitAck.

Pure bookkeeping (no I/O, no clock of its own, not thread-safe: the uplink holds a lock). It bounds how
many messages are outstanding, keeps a send cursor per lane (the last outbox row published), and decides
what must be resent: everything still in flight after a reconnect, and a lane's in-flight tail, in order,
when its oldest message has waited longer than the ack timeout.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from edge.outbox.lanes import Lane


@dataclass(frozen=True, slots=True)
class _Flight:
    lane: Lane
    row_id: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class Rewind:
    """A lane whose in-flight messages will be sent again, starting after outbox row `cursor`."""

    lane: Lane
    cursor: int
    messages: int


class InflightWindow:
    """At most `size` unacknowledged messages; the last `alerts_reserved` slots are for alerts only."""

    def __init__(self, size: int, *, alerts_reserved: int, ack_timeout_s: float) -> None:
        if size <= 0 or not 0 <= alerts_reserved < size or ack_timeout_s <= 0:
            raise ValueError("window needs size > 0, 0 <= alerts_reserved < size, ack_timeout_s > 0")
        self.size = size
        self.alerts_reserved = alerts_reserved
        self.ack_timeout_s = ack_timeout_s
        self._flights: dict[uuid.UUID, _Flight] = {}
        self._lanes: dict[Lane, dict[uuid.UUID, _Flight]] = {lane: {} for lane in Lane}
        self._cursors: dict[Lane, int] = dict.fromkeys(Lane, 0)

    def __len__(self) -> int:
        return len(self._flights)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._flights

    def in_flight(self, lane: Lane) -> int:
        return len(self._lanes[lane])

    def capacity(self, lane: Lane) -> int:
        """How many more messages of `lane` may be published now."""
        limit = self.size if lane is Lane.ALERTS else self.size - self.alerts_reserved
        return max(0, limit - len(self._flights))

    def cursor(self, lane: Lane) -> int:
        """The last outbox row of `lane` handed to the broker; the next send starts after it."""
        return self._cursors[lane]

    def advance(self, lane: Lane, row_id: int) -> None:
        """Move the cursor past rows that need no sending (already acknowledged)."""
        self._cursors[lane] = max(self._cursors[lane], row_id)

    def sent(self, message_id: uuid.UUID, lane: Lane, row_id: int, now: float) -> None:
        if message_id in self._flights:
            raise ValueError(f"message {message_id} is already in flight")
        flight = _Flight(lane, row_id, now)
        self._flights[message_id] = flight
        self._lanes[lane][message_id] = flight
        self._cursors[lane] = max(self._cursors[lane], row_id)

    def acked(self, message_id: uuid.UUID) -> bool:
        """Release a slot; False when the message was not in flight (a late or duplicate ack)."""
        flight = self._flights.pop(message_id, None)
        if flight is None:
            return False
        del self._lanes[flight.lane][message_id]
        return True

    def reset(self) -> int:
        """Forget everything in flight and rewind every lane to its start (after a reconnect)."""
        dropped = len(self._flights)
        self._flights.clear()
        for lane in Lane:
            self._lanes[lane].clear()
            self._cursors[lane] = 0
        return dropped

    def expire(self, now: float) -> list[Rewind]:
        """Rewind each lane whose oldest in-flight message is older than the ack timeout.

        Within a lane, flights are in row order (sends follow the cursor), so the oldest flight is the
        first; the lane's cursor moves back before it and all of the lane's flights are released, so the
        tail is resent in order.
        """
        rewinds = []
        for lane, flights in self._lanes.items():
            if not flights:
                continue
            oldest = next(iter(flights.values()))
            if now - oldest.sent_at < self.ack_timeout_s:
                continue
            rewinds.append(Rewind(lane, oldest.row_id - 1, len(flights)))
            for message_id in flights:
                del self._flights[message_id]
            flights.clear()
            self._cursors[lane] = oldest.row_id - 1
        return rewinds

    def next_deadline(self) -> float | None:
        """When the earliest in-flight message times out (monotonic seconds), if any is in flight."""
        oldest = [next(iter(f.values())).sent_at for f in self._lanes.values() if f]
        return min(oldest) + self.ack_timeout_s if oldest else None
