"""The uplink's downlink path without a broker: acks and commands are verified with the cloud's key first."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.metrics import Registry
from edge.outbox import Lane, Outbox
from edge.settings import EdgeIdentity, MqttSettings
from edge.uplink import CommandRegistry, Uplink
from proto import envelope, keys, topics
from proto.envelope import Payload
from proto.messages import AckEntry, Command, CommitAck
from tests.unit.edge.test_outbox_queue import EDGE, SITE, ack, alert, event


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.cloud_key = keys.generate()
        self.edge_key = keys.generate()
        self.outbox = Outbox(tmp_path / "o.sqlite3", edge_id=EDGE, signer=self.edge_key)
        self.metrics = Registry()
        self.commands = CommandRegistry()
        self.uplink = Uplink(identity=EdgeIdentity(EDGE, SITE), mqtt_settings=MqttSettings(), outbox=self.outbox,
                             signer=self.edge_key, cloud_key=self.cloud_key.public_key(), commands=self.commands,
                             metrics=self.metrics)

    def down(self, stream: str, payload: Payload, *, signer: Ed25519PrivateKey | None = None, edge: str = EDGE,
             topic_edge: str = EDGE) -> None:
        raw = envelope.seal(payload, edge_id=edge, sequence=1, signer=signer or self.cloud_key)
        self.uplink.receive(topics.build(SITE, topic_edge, stream), raw)

    def rejected(self, reason: str) -> float:
        return self.metrics.counter("telemed_uplink_downlink_rejected_total", "", ("reason",)).value(reason=reason)

    def close(self) -> None:
        self.uplink.stop()
        self.outbox.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def queued(rig: Rig, lane: Lane) -> list[uuid.UUID]:
    return [m.message_id for m in rig.outbox.pending(lane).messages]


def test_a_genuine_ack_deletes_the_messages(rig: Rig) -> None:
    for _ in range(3):
        rig.outbox.enqueue(alert())
    rig.outbox.flush(5)
    messages = rig.outbox.pending(Lane.ALERTS).messages
    rig.down("ack", CommitAck(tuple(ack(messages[:2]))))
    rig.outbox.flush(5)
    assert queued(rig, Lane.ALERTS) == [messages[2].message_id]


def test_a_forged_ack_is_ignored_and_counted(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.outbox.enqueue(alert()).result(5)
    messages = rig.outbox.pending(Lane.ALERTS).messages
    with caplog.at_level(logging.WARNING):
        rig.down("ack", CommitAck(tuple(ack(messages))), signer=keys.generate())
    rig.outbox.flush(5)
    assert queued(rig, Lane.ALERTS) == [messages[0].message_id]
    assert rig.rejected("bad_signature") == 1
    assert any(r.getMessage() == "uplink.downlink_rejected" for r in caplog.records)


def test_an_ack_signed_by_the_edge_itself_is_not_the_clouds(rig: Rig) -> None:
    rig.outbox.enqueue(event()).result(5)
    messages = rig.outbox.pending(Lane.EVENTS).messages
    rig.down("ack", CommitAck(tuple(ack(messages))), signer=rig.edge_key)
    rig.outbox.flush(5)
    assert rig.outbox.depth() == 1 and rig.rejected("bad_signature") == 1


def test_an_ack_addressed_to_another_edge_is_ignored(rig: Rig) -> None:
    rig.outbox.enqueue(event()).result(5)
    messages = rig.outbox.pending(Lane.EVENTS).messages
    rig.down("ack", CommitAck(tuple(ack(messages))), edge="other-edge", topic_edge="other-edge")
    rig.down("ack", CommitAck(tuple(ack(messages))), edge="other-edge")  # envelope and topic disagree
    rig.outbox.flush(5)
    assert rig.outbox.depth() == 1
    assert rig.rejected("other_edge") == 1 and rig.rejected("topic_mismatch") == 1


def test_garbage_on_the_ack_topic_is_ignored(rig: Rig) -> None:
    rig.uplink.receive(topics.build(SITE, EDGE, "ack"), b"not an envelope at all, just bytes" * 3)
    assert rig.rejected("malformed") == 1


def test_a_rejected_ack_dead_letters_the_message(rig: Rig) -> None:
    rig.outbox.enqueue(event()).result(5)
    messages = rig.outbox.pending(Lane.EVENTS).messages
    rig.down("ack", CommitAck(tuple(ack(messages, "rejected", "malformed: signal"))))
    rig.outbox.flush(5)
    assert rig.outbox.depth() == 0
    assert [d.reason for d in rig.outbox.dead_letters()] == ["malformed: signal"]


def command(name: str, **fields: object) -> Command:
    return Command(command_id=uuid.uuid4(), name=name, **fields)  # type: ignore[arg-type]


def test_genuine_commands_reach_their_handler_once(rig: Rig) -> None:
    seen: list[Command] = []
    done = threading.Event()

    def handle(command: Command) -> None:
        seen.append(command)
        done.set()

    rig.commands.register("configure", handle)
    cmd = command("configure", args={"heartbeat_s": 10})
    rig.down("cmd", cmd)
    rig.down("cmd", cmd)  # QoS 1 redelivery
    assert done.wait(5)
    rig.uplink.stop()  # drains the command worker
    assert seen == [cmd]


def test_forged_and_expired_commands_never_run(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    ran: list[Command] = []
    rig.commands.register("assign_device", ran.append)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with caplog.at_level(logging.INFO):
        rig.down("cmd", command("assign_device"), signer=keys.generate())
        rig.down("cmd", command("assign_device", expires_at=past))
        rig.down("cmd", command("unassign_device"))
        rig.uplink.stop()
    assert ran == []
    assert rig.rejected("bad_signature") == 1
    events = {r.getMessage() for r in caplog.records}
    assert {"uplink.command_expired", "uplink.command_unknown"} <= events


def test_ping_asks_for_a_status_heartbeat(rig: Rig) -> None:
    rig.down("cmd", command("ping"))
    rig.uplink.stop()
    assert rig.uplink._status_requested.is_set()


def test_ack_entries_are_counted_by_outcome(rig: Rig) -> None:
    entries = (AckEntry(uuid.uuid4(), topics.Stream.VITALS, 1, "duplicate"),
               AckEntry(uuid.uuid4(), topics.Stream.VITALS, 2, "committed"))
    rig.down("ack", CommitAck(entries))
    counter = rig.metrics.counter("telemed_uplink_acked_total", "", ("outcome",))
    assert (counter.value(outcome="duplicate"), counter.value(outcome="committed")) == (1, 1)
