"""Sending from the outbox: lane priority, per-stream order, the bounded in-flight window, resends."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.outbox import Lane, Outbox, StoredMessage
from edge.uplink.schedule import take_next
from edge.uplink.window import InflightWindow, Rewind
from proto import keys
from proto.topics import Stream
from tests.unit.edge.test_outbox_queue import EDGE, ack, alert, event, manifest, vitals


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox.sqlite3", edge_id=EDGE, signer=keys.generate()) as box:
        yield box


class Sender:
    """take_next() with its window and lock, the way the uplink drives it."""

    def __init__(self, outbox: Outbox, size: int = 8, reserved: int = 2, timeout: float = 30.0) -> None:
        self.outbox = outbox
        self.window = InflightWindow(size, alerts_reserved=reserved, ack_timeout_s=timeout)
        self.lock = threading.Lock()

    def send(self, now: float = 0.0) -> list[StoredMessage]:
        return take_next(self.outbox, self.window, self.lock, now)

    def ack(self, messages: list[StoredMessage]) -> None:
        for m in messages:
            self.window.acked(m.message_id)
        self.outbox.acknowledge(ack(messages)).result(5)


def streams(messages: list[StoredMessage]) -> list[tuple[Stream, int]]:
    return [(m.stream, m.sequence) for m in messages]


# --- the window alone ---------------------------------------------------------------------------------


def test_window_capacity_keeps_slots_for_alerts() -> None:
    window = InflightWindow(4, alerts_reserved=1, ack_timeout_s=10)
    for row in range(1, 4):
        window.sent(uuid.uuid4(), Lane.VITALS, row, now=0)
    assert (window.capacity(Lane.VITALS), window.capacity(Lane.EVENTS), window.capacity(Lane.ALERTS)) == (0, 0, 1)
    window.sent(uuid.uuid4(), Lane.ALERTS, 1, now=0)
    assert window.capacity(Lane.ALERTS) == 0 and len(window) == 4


def test_window_acks_free_slots_once() -> None:
    window = InflightWindow(2, alerts_reserved=0, ack_timeout_s=10)
    mid = uuid.uuid4()
    window.sent(mid, Lane.VITALS, 7, now=0)
    assert window.acked(mid) is True
    assert window.acked(mid) is False
    assert window.capacity(Lane.VITALS) == 2 and window.cursor(Lane.VITALS) == 7


def test_window_refuses_sending_the_same_message_twice() -> None:
    window = InflightWindow(2, alerts_reserved=0, ack_timeout_s=10)
    mid = uuid.uuid4()
    window.sent(mid, Lane.VITALS, 1, now=0)
    with pytest.raises(ValueError):
        window.sent(mid, Lane.VITALS, 1, now=0)


def test_ack_timeout_rewinds_only_the_late_lane_to_its_oldest_message() -> None:
    window = InflightWindow(10, alerts_reserved=0, ack_timeout_s=5)
    for row in (3, 4, 6):
        window.sent(uuid.uuid4(), Lane.VITALS, row, now=float(row))
    window.sent(uuid.uuid4(), Lane.EVENTS, 2, now=7.0)
    assert window.next_deadline() == 8.0
    assert window.expire(7.9) == []
    assert window.expire(8.0) == [Rewind(Lane.VITALS, cursor=2, messages=3)]
    assert (window.cursor(Lane.VITALS), window.in_flight(Lane.VITALS), len(window)) == (2, 0, 1)
    assert window.cursor(Lane.EVENTS) == 2 and window.next_deadline() == 12.0


def test_reset_forgets_everything_in_flight_and_rewinds_all_lanes() -> None:
    window = InflightWindow(10, alerts_reserved=0, ack_timeout_s=5)
    window.sent(uuid.uuid4(), Lane.VITALS, 9, now=0)
    window.sent(uuid.uuid4(), Lane.ALERTS, 4, now=0)
    assert window.reset() == 2
    assert len(window) == 0 and all(window.cursor(lane) == 0 for lane in Lane)
    assert window.next_deadline() is None


# --- the window driving the outbox --------------------------------------------------------------------


def test_higher_lanes_go_first_and_each_stream_stays_in_order(outbox: Outbox) -> None:
    for payload in (vitals(), manifest(), event(), vitals(), alert(), event(), vitals(), alert(), manifest()):
        outbox.enqueue(payload)
    outbox.flush(5)
    sender = Sender(outbox, size=20, reserved=0)
    assert streams(sender.send()) == [
        (Stream.ALERTS, 1), (Stream.ALERTS, 2), (Stream.EVENTS, 1), (Stream.EVENTS, 2),
        (Stream.VITALS, 1), (Stream.VITALS, 2), (Stream.VITALS, 3), (Stream.DICOM, 1), (Stream.DICOM, 2),
    ]


def test_at_most_the_window_is_in_flight_and_acks_let_the_rest_follow(outbox: Outbox) -> None:
    for _ in range(10):
        outbox.enqueue(vitals())
    outbox.flush(5)
    sender = Sender(outbox, size=4, reserved=1)
    first = sender.send()
    assert [m.sequence for m in first] == [1, 2, 3]  # one slot stays free for alerts
    assert sender.send() == []  # nothing in flight is sent twice
    sender.ack(first[:2])
    assert [m.sequence for m in sender.send()] == [4, 5]
    assert len(sender.window) == 3


def test_an_alert_overtakes_a_full_window_of_vitals(outbox: Outbox) -> None:
    for _ in range(10):
        outbox.enqueue(vitals())
    outbox.flush(5)
    sender = Sender(outbox, size=4, reserved=1)
    sender.send()
    outbox.enqueue(alert()).result(5)
    outbox.enqueue(vitals()).result(5)
    assert streams(sender.send()) == [(Stream.ALERTS, 1)]


def test_a_late_ack_resends_the_lane_in_order(outbox: Outbox) -> None:
    for _ in range(5):
        outbox.enqueue(vitals())
    outbox.flush(5)
    sender = Sender(outbox, size=10, reserved=0, timeout=5)
    sent = sender.send(now=0)
    sender.ack(sent[:2])  # the cloud acked 1 and 2; 3..5 are lost somewhere
    assert sender.send(now=1) == []
    sender.window.expire(now=5)
    assert [m.sequence for m in sender.send(now=6)] == [3, 4, 5]


def test_after_a_reconnect_everything_unacked_is_replayed_from_the_start(outbox: Outbox) -> None:
    for payload in (vitals(), alert(), vitals(), vitals()):
        outbox.enqueue(payload)
    outbox.flush(5)
    sender = Sender(outbox, size=10, reserved=0)
    first = sender.send()
    sender.ack([first[1]])  # vitals 1 acked
    sender.window.reset()
    assert streams(sender.send()) == [(Stream.ALERTS, 1), (Stream.VITALS, 2), (Stream.VITALS, 3)]


def test_messages_queued_after_the_outbox_ran_empty_are_sent(outbox: Outbox) -> None:
    sender = Sender(outbox, size=10, reserved=0)
    for _ in range(3):
        outbox.enqueue(vitals())
    outbox.flush(5)
    sender.ack(sender.send())
    assert outbox.depth() == 0
    outbox.enqueue(vitals()).result(5)  # row ids must keep growing past the cursor
    assert [m.sequence for m in sender.send()] == [4]


def test_rejected_messages_are_not_resent(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.enqueue(event())
    outbox.flush(5)
    sender = Sender(outbox, size=10, reserved=0)
    sent = sender.send()
    sender.window.acked(sent[1].message_id)
    outbox.acknowledge(ack([sent[1]], "rejected", "malformed")).result(5)
    sender.window.reset()
    assert [m.sequence for m in sender.send()] == [1, 3]
