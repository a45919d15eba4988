"""The alerting service's own MQTT subscription to every edge's vitals and alerts (paho-mqtt 2.x, MQTT v5).

Not the ingest workers' shared subscription: every message must reach the evaluator (a shared group would
split the stream between its members), so this is an ordinary subscription, QoS 1, of its own client id:

    telemed/v1/+/+/up/vitals     the samples the cloud evaluates itself
    telemed/v1/+/+/up/alerts     the alarms the edges raised (merged with the cloud's by alert_id)

Envelopes are verified with the edge registry exactly as ingest verifies them (cloud.ingest.intake); a
rejected message is dropped here, since ingest dead-letters it. The session is persistent (clean start off,
session expiry), so messages published while the service restarts wait for it on the broker. Verification
runs on paho's network thread; a bounded queue hands verified messages to the evaluator, and a full queue
blocks that thread, which is the backpressure on the broker.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.alerting.errors import FeedError
from cloud.ingest.intake import Accepted, Delivery, open_delivery
from proto.envelope import KeyLookup
from proto.messages import Alert
from proto.topics import ROOT, VERSION, Direction, Stream
from proto.vitals import VitalsBatch

log = logging.getLogger(__name__)

SUBSCRIPTIONS: tuple[str, ...] = tuple(
    f"{ROOT}/{VERSION}/+/+/{Direction.UP}/{stream}" for stream in (Stream.VITALS, Stream.ALERTS))


@dataclass(frozen=True, slots=True)
class Inbound:
    """A verified message for the evaluator: a vitals batch or an edge's alert, with its edge and site."""

    edge_id: str
    site_id: str
    payload: VitalsBatch | Alert
    received_at: dt.datetime


@dataclass(frozen=True)
class FeedConfig:
    host: str
    port: int
    username: str
    password: str
    client_id: str
    tls: bool = False
    cafile: Path | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 600
    receive_maximum: int = 256
    queue_size: int = 512


class MqttFeed:
    """Subscribes, verifies and queues; `get_batch` hands the evaluator what arrived."""

    def __init__(self, config: FeedConfig, keys: KeyLookup, *,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._config = config
        self._keys = keys
        self._clock = clock
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=config.queue_size)
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._failure: str | None = None
        self.rejected = 0
        self.received = 0
        client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=config.client_id,
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(ca_certs=str(config.cafile) if config.cafile else None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    def start(self, timeout_s: float = 15.0) -> None:
        """Connect and subscribe; FeedError if the broker refuses or does not answer in time."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho lacks hints here
        properties.SessionExpiryInterval = self._config.session_expiry_s
        properties.ReceiveMaximum = self._config.receive_maximum
        try:
            self._client.connect_async(self._config.host, self._config.port, keepalive=self._config.keepalive_s,
                                       clean_start=False, properties=properties)
        except (OSError, ValueError) as exc:
            raise FeedError(f"cannot connect to {self._config.host}:{self._config.port}: {exc}") from exc
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._subscribed.wait(0.05):
            if self._failure is not None or time.monotonic() > deadline:
                self.stop()
                raise FeedError(self._failure or f"no subscription on {self._config.host}:{self._config.port}"
                                f" after {timeout_s} s")

    def stop(self) -> None:
        """Disconnect (the session stays on the broker) and stop the network thread."""
        self._stopping.set()
        self._client.disconnect()
        self._client.loop_stop()

    def get_batch(self, max_items: int, wait_s: float) -> list[Inbound]:
        """Up to `max_items` messages: waits up to `wait_s` for the first, then takes what is already there."""
        try:
            batch = [self._queue.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while len(batch) < max_items:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    # -- paho callbacks (network thread) ----------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            self._failure = f"broker refused the connection: {reason}"
            log.error("alerting.connect_refused client_id=%s reason=%s", self._config.client_id, reason)
            return
        log.info("alerting.connected client_id=%s session_present=%s", self._config.client_id, flags.session_present)
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in SUBSCRIPTIONS])

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        if not self._stopping.is_set():
            log.warning("alerting.disconnected client_id=%s reason=%s", self._config.client_id, reason)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      properties: Properties | None) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self._failure = f"broker refused the subscription: {failed[0]}"
            log.error("alerting.subscribe_refused reason=%s", failed[0])
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            self.rejected += 1
            return
        now = self._clock()
        opened = open_delivery(Delivery(topic, bytes(message.payload), now), self._keys)
        if not isinstance(opened, Accepted):
            self.rejected += 1  # ingest dead-letters it with the reason
            log.debug("alerting.rejected topic=%s reason=%s", topic, opened.reason)
            return
        payload = opened.envelope.payload
        if not isinstance(payload, VitalsBatch | Alert):
            return
        self.received += 1
        item = Inbound(opened.edge_id, opened.site, payload, now)
        while True:  # blocking here is the backpressure: paho stops reading the socket
            try:
                self._queue.put(item, timeout=0.25)
                return
            except queue.Full:
                if self._stopping.is_set():
                    return
