"""Commit acks: after a transaction commits, one signed CommitAck per edge listing its messages' fates.

Acks are signed with the cloud key and published on the edge's `down/ack`. Their sequence numbers must
increase per edge and stream although several workers send them: they are microseconds of wall-clock time
shifted left 8 bits with the worker index in the low byte, and never repeat or go back within a worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.ingest.intake import AckTarget, Delivery
from proto import topics
from proto.envelope import seal
from proto.messages import AckEntry, CommitAck
from proto.topics import Stream

Status = Literal["committed", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The fate of one delivery; `entry` is what its edge is told (None when it cannot be told)."""

    delivery: Delivery
    status: Status
    target: AckTarget | None
    entry: AckEntry | None


class AckSequence:
    """Increasing sequence numbers for one worker's downlink acks (time-based, worker index in the low byte)."""

    def __init__(self, worker_index: int, clock: Callable[[], int] = time.time_ns) -> None:
        if not 0 <= worker_index < 256:
            raise ValueError("worker index must be 0..255")
        self._index = worker_index
        self._clock = clock
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            candidate = (self._clock() // 1000) << 8 | self._index
            self._last = max(candidate, self._last + 256)
            return self._last


def group_acks(outcomes: Iterable[Outcome]) -> dict[AckTarget, CommitAck]:
    """One CommitAck per edge for the outcomes that can be acknowledged, entries in delivery order."""
    entries: dict[AckTarget, list[AckEntry]] = {}
    for outcome in outcomes:
        if outcome.target is not None and outcome.entry is not None:
            entries.setdefault(outcome.target, []).append(outcome.entry)
    return {target: CommitAck(acks=tuple(items)) for target, items in entries.items()}


def seal_acks(
    outcomes: Iterable[Outcome], *, signer: Ed25519PrivateKey, sequence: Callable[[], int]
) -> list[tuple[str, bytes]]:
    """(topic, envelope bytes) of the signed acks to publish."""
    sealed = []
    for target, ack in group_acks(outcomes).items():
        raw = seal(ack, edge_id=target.edge, sequence=sequence(), signer=signer)
        sealed.append((topics.build(target.site, target.edge, Stream.ACK), raw))
    return sealed
