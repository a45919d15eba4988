"""The edge's durable outbox: SQLite WAL, priority lanes, group commit, commit-ack deletion, disk budget."""

from edge.outbox.errors import OutboxClosedError, OutboxError, OutboxLockedError, OutboxSchemaError
from edge.outbox.lanes import EVICTION_ORDER, Lane, LaneError, lane_of
from edge.outbox.queue import (
    EVICTION_RULE,
    AckResult,
    Enqueued,
    EvictionReport,
    LaneStats,
    Outbox,
    OutboxPolicy,
    PendingPage,
    edge_subject,
)
from edge.outbox.store import DeadLetter, Evicted, StoredMessage

__all__ = [
    "EVICTION_ORDER",
    "EVICTION_RULE",
    "AckResult",
    "DeadLetter",
    "Enqueued",
    "Evicted",
    "EvictionReport",
    "Lane",
    "LaneError",
    "LaneStats",
    "Outbox",
    "OutboxClosedError",
    "OutboxError",
    "OutboxLockedError",
    "OutboxPolicy",
    "OutboxSchemaError",
    "PendingPage",
    "StoredMessage",
    "edge_subject",
    "lane_of",
]
