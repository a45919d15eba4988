"""A small in-test "cloud" for the uplink tests and the outbox benchmark, and the tests of that fake itself.

It does what the real ingest does at the protocol level (docs/protocol.md, "Delivery: the commit-ack
rule"): subscribes to every edge's uplink with the cloud login, verifies each envelope with the edge's
registered key, stores it in a dedupe view keyed by message id, and answers with signed CommitAcks on
the edge's down/ack (committed, duplicate, or rejected for ids it was told to refuse). No database.
"""

from __future__ import annotations

import collections
import datetime as dt
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from proto import envelope, keys, topics
from proto.envelope import Envelope, EnvelopeRejected, SignerKey
from proto.messages import AckEntry, AckOutcome, CommitAck, EdgeStatus

pytestmark = pytest.mark.integration

UPLINK_FILTER = "telemed/v1/+/+/up/#"


@dataclass
class CloudView:
    """What the cloud has seen; read under FakeCloud.lock."""

    stored: dict[uuid.UUID, Envelope] = field(default_factory=dict)  # the dedupe view: one entry per message id
    deliveries: collections.Counter[uuid.UUID] = field(default_factory=collections.Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (topic, reason) of envelopes that failed
    status: dict[str, EdgeStatus] = field(default_factory=dict)  # latest status per edge id


class FakeCloud:
    """Verifies and acks uplink traffic; `ack=False` makes it a silent listener (for forged-ack tests)."""

    def __init__(
        self, host: str, port: int, username: str, password: str, *, cloud_key: Ed25519PrivateKey,
        edges: dict[str, SignerKey], ack: bool = True, ack_interval_s: float = 0.002, client_id: str | None = None,
    ) -> None:
        self.cloud_key = cloud_key
        self.edges = edges
        self.ack = ack
        self.reject_ids: dict[uuid.UUID, str] = {}
        self.view = CloudView()
        self.lock = threading.Condition()
        self._ack_interval_s = ack_interval_s
        self._pending: dict[tuple[str, str], list[AckEntry]] = collections.defaultdict(list)
        self._inbox: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="fake-cloud", daemon=True)
        self._host, self._port = host, port
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"cloud-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, msg: self._inbox.put((msg.topic, bytes(msg.payload)))
        self.connected = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> FakeCloud:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600  # queued uplink survives our reconnects and broker restarts
        self.client.connect(self._host, self._port, clean_start=False, properties=props)
        self.client.loop_start()
        self._worker.start()
        assert self.connected.wait(timeout), "fake cloud could not connect"
        return self

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(None)
        self._worker.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> FakeCloud:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- test helpers ------------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[CloudView], bool], timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: predicate(self.view), timeout)

    def stored_ids(self) -> set[uuid.UUID]:
        with self.lock:
            return set(self.view.stored)

    def publish_ack(self, site: str, edge: str, entries: list[AckEntry], *, signer: Ed25519PrivateKey | None = None
                    ) -> None:
        """Publish a CommitAck on the edge's down/ack (signed by `signer`, the cloud key by default)."""
        raw = envelope.seal(CommitAck(tuple(entries)), edge_id=edge, sequence=1, signer=signer or self.cloud_key)
        self.client.publish(topics.build(site, edge, "ack"), raw, qos=1).wait_for_publish(5)

    # --- internals -----------------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: object, _flags: object, reason: object, _p: object) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # acks go out at once, as the real ingest's
        client.subscribe(UPLINK_FILTER, qos=1)
        self.connected.set()

    def _work(self) -> None:
        """Verify and store messages; flush acks per edge every ack_interval_s (one signature per batch)."""
        next_flush = time.monotonic() + self._ack_interval_s
        while not self._stop.is_set():
            try:
                item = self._inbox.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                item = None
            if item is not None:
                self._receive(*item)
            if time.monotonic() >= next_flush:
                self._flush()
                next_flush = time.monotonic() + self._ack_interval_s

    def _receive(self, topic: str, raw: bytes) -> None:
        try:
            env = envelope.open_envelope(raw, topic=topic, keys=self.edges.get)
        except EnvelopeRejected as exc:
            with self.lock:
                self.view.rejected.append((topic, exc.reason.value))
                self.lock.notify_all()
            return
        where = topics.parse(topic)
        outcome: AckOutcome
        reason = self.reject_ids.get(env.message_id)
        with self.lock:
            self.view.deliveries[env.message_id] += 1
            if isinstance(env.payload, EdgeStatus):
                self.view.status[env.edge_id] = env.payload
                self.lock.notify_all()
                return  # status is retained state, not a queued message: never acked
            if reason is not None:
                outcome = "rejected"
            elif env.message_id in self.view.stored:
                outcome = "duplicate"
            else:
                self.view.stored[env.message_id] = env
                outcome = "committed"
            self.lock.notify_all()
        if self.ack:
            self._pending[(where.site, env.edge_id)].append(
                AckEntry(env.message_id, where.stream, env.sequence, outcome, reason))

    def _flush(self) -> None:
        pending, self._pending = self._pending, collections.defaultdict(list)
        for (site, edge), entries in pending.items():
            raw = envelope.seal(CommitAck(tuple(entries)), edge_id=edge, sequence=1, signer=self.cloud_key,
                                created_at=dt.datetime.now(dt.UTC))
            self.client.publish(topics.build(site, edge, "ack"), raw, qos=1)


def cloud_registry(edge_keys: dict[str, tuple[str, Ed25519PrivateKey]]) -> dict[str, SignerKey]:
    """{edge id: SignerKey} from {edge id: (site, private key)}."""
    return {edge: SignerKey(key.public_key(), site=site) for edge, (site, key) in edge_keys.items()}


# --- tests of the fake itself: it must refuse what the real cloud refuses, or the uplink tests prove nothing ---


def test_fake_cloud_stores_verified_messages_once_and_refuses_forgeries(mosquitto) -> None:  # type: ignore[no-untyped-def]
    from proto.messages import Event

    edge_key, intruder = keys.generate(), keys.generate()
    creds = mosquitto.add_edge("fakecloud-e1")
    cloud = FakeCloud(mosquitto.host, mosquitto.port, mosquitto.cloud.username, mosquitto.cloud.password,
                      cloud_key=keys.generate(), edges=cloud_registry({"fakecloud-e1": ("s1", edge_key)}), ack=False)
    acks: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    edge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="fakecloud-e1", protocol=mqtt.MQTTv5)
    edge.username_pw_set(creds.username, creds.password)
    edge.on_message = lambda _c, _u, msg: acks.put(bytes(msg.payload))
    with cloud:
        edge.connect(mosquitto.host, mosquitto.port)
        edge.loop_start()
        try:
            event = Event(event_id=uuid.uuid4(), event_type="signal", at=dt.datetime.now(dt.UTC), signal={"x": 1})
            good = envelope.seal(event, edge_id="fakecloud-e1", sequence=1, signer=edge_key)
            forged = envelope.seal(event, edge_id="fakecloud-e1", sequence=2, signer=intruder)
            topic = topics.build("s1", "fakecloud-e1", "events")
            for raw in (good, good, forged):
                edge.publish(topic, raw, qos=1).wait_for_publish(5)
            mine = event_id_of(good)
            # The session broker also holds other tests' retained status messages: look at this edge only.
            assert cloud.wait_for(lambda v: v.deliveries[mine] == 2 and (topic, "bad_signature") in v.rejected,
                                  timeout=10)
            with cloud.lock:
                assert [mid for mid, env in cloud.view.stored.items() if env.edge_id == "fakecloud-e1"] == [mine]
                assert [r for r in cloud.view.rejected if r[0] == topic] == [(topic, "bad_signature")]
        finally:
            edge.disconnect()
            edge.loop_stop()


def event_id_of(raw: bytes) -> uuid.UUID:
    return envelope.read_header(raw)[0].message_id


def main() -> None:
    """Run the fake cloud as a process (the outbox benchmark): prints `ready`, acks until stdin closes."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="an acking in-test cloud for the outbox benchmark")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--cloud-key", required=True, help="base64 raw Ed25519 private key (proto.keys)")
    parser.add_argument("--edge", action="append", default=[], help="EDGE:SITE:PUBLIC_KEY, repeatable")
    args = parser.parse_args()
    edges = {}
    for spec in args.edge:
        edge, site, public = spec.split(":", 2)
        edges[edge] = SignerKey(keys.public_from_text(public), site=site)
    cloud = FakeCloud(args.host, args.port, args.username, args.password,
                      cloud_key=keys.private_from_text(args.cloud_key), edges=edges, client_id="bench-cloud")
    with cloud:
        print("ready", flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        with cloud.lock:
            print(f"stored {len(cloud.view.stored)} deliveries {sum(cloud.view.deliveries.values())}", flush=True)


if __name__ == "__main__":
    main()
