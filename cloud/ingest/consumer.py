"""The ingest worker's MQTT side (paho-mqtt 2.x, MQTT v5): shared subscription, manual PUBACK, backpressure.

- Persistent session: a stable client id, clean_start=False and a session expiry, so messages the worker
  had not acknowledged when it died are sent again when it reconnects (MQTT v5 section 4.4).
- manual_ack=True: the broker's PUBACK is sent only by `acknowledge`, after the database commit.
- Receive Maximum (MQTT v5 section 3.1.2.11.3) caps what the broker sends before we acknowledge, and the
  bounded queue between paho's network thread and the writer blocks that thread when full: a slow database
  slows the broker down, it never makes us drop a message.
- A delivery remembers the connection it came on: after a reconnect the broker re-sends what was not
  acknowledged, so acknowledging the old copy is skipped (its packet id belongs to the old connection).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.ingest.errors import ConsumerError
from cloud.ingest.intake import Delivery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerConfig:
    """How one worker connects and subscribes."""

    host: str
    port: int
    username: str
    password: str
    client_id: str
    subscription: str
    tls: bool = False
    cafile: Path | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 600
    receive_maximum: int = 64
    queue_size: int = 64


@dataclass(frozen=True, slots=True)
class _Token:
    generation: int
    mid: int


class IngestConsumer:
    """Receives uplink messages into a bounded queue and acknowledges them on request."""

    def __init__(self, config: ConsumerConfig) -> None:
        self._config = config
        self._queue: queue.Queue[Delivery] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._failure: str | None = None
        self._stopping = threading.Event()
        self._pending_publishes: deque[mqtt.MQTTMessageInfo] = deque(maxlen=10_000)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=config.client_id,
            protocol=mqtt.MQTTv5, manual_ack=True,
        )
        client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(ca_certs=str(config.cafile) if config.cafile else None, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=15)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 15.0) -> None:
        """Connect and subscribe; ConsumerError if the broker refuses or does not answer in time."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho lacks hints here
        properties.SessionExpiryInterval = self._config.session_expiry_s
        properties.ReceiveMaximum = self._config.receive_maximum
        try:
            self._client.connect_async(
                self._config.host, self._config.port, keepalive=self._config.keepalive_s,
                clean_start=False, properties=properties,
            )
        except (OSError, ValueError) as exc:
            raise ConsumerError(f"cannot connect to {self._config.host}:{self._config.port}: {exc}") from exc
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not self._subscribed.is_set():
            if self._failure is not None:
                self.stop()
                raise ConsumerError(self._failure)
            if time.monotonic() > deadline:
                self.stop()
                raise ConsumerError(f"no subscription on {self._config.host}:{self._config.port} after {timeout_s} s")
            self._subscribed.wait(0.05)

    def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Flush outgoing acks, disconnect (the session stays on the broker) and stop the network thread."""
        self._stopping.set()
        deadline = time.monotonic() + flush_timeout_s
        while self._pending_publishes and time.monotonic() < deadline:
            info = self._pending_publishes[0]
            if info.is_published() or info.rc != mqtt.MQTT_ERR_SUCCESS:
                self._pending_publishes.popleft()
            else:
                time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- the writer's side ----------------------------------------------------------------------------------------

    def get_batch(self, max_messages: int, max_delay_s: float, timeout_s: float) -> list[Delivery]:
        """Up to `max_messages` deliveries: waits `timeout_s` for the first, then up to `max_delay_s` for more."""
        try:
            batch = [self._queue.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + max_delay_s
        while len(batch) < max_messages:
            left = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def acknowledge(self, deliveries: list[Delivery]) -> int:
        """Send the broker's PUBACK for deliveries of the current connection; how many were acknowledged."""
        sent = 0
        with self._lock:
            for delivery in deliveries:
                token = delivery.token
                if isinstance(token, _Token) and token.generation == self._generation and self.connected:
                    self._client.ack(token.mid, 1)
                    sent += 1
        if sent < len(deliveries):
            log.info("ingest.puback_skipped count=%d reason=reconnected", len(deliveries) - sent)
        return sent

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 (commit acks); queued by paho while disconnected."""
        info = self._client.publish(topic, payload, qos=1)
        self._pending_publishes.append(info)
        while self._pending_publishes and self._pending_publishes[0].is_published():
            self._pending_publishes.popleft()

    # -- paho callbacks (network thread) ----------------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            # Bad credentials or not authorised will not get better by retrying: stop start() waiting.
            self._failure = f"broker refused the connection: {reason}"
            log.error("ingest.connect_refused client_id=%s reason=%s", self._config.client_id, reason)
            return
        with self._lock:
            self._generation += 1
            self._connected.set()
        log.info("ingest.connected client_id=%s session_present=%s", self._config.client_id, flags.session_present)
        client.subscribe(self._config.subscription, options=SubscribeOptions(qos=1))

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connected.clear()
        if not self._stopping.is_set():
            log.warning("ingest.disconnected client_id=%s reason=%s", self._config.client_id, reason)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self._failure = f"broker refused the subscription {self._config.subscription!r}: {failed[0]}"
            log.error("ingest.subscribe_refused subscription=%s reason=%s", self._config.subscription, failed[0])
            return
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = message._topic.decode("utf-8", "replace")  # dead-lettered as a topic mismatch
        delivery = Delivery(topic, bytes(message.payload), dt.datetime.now(dt.UTC),
                            _Token(self._generation, message.mid))
        # Blocking here is the backpressure: paho stops reading the socket until the writer catches up.
        while True:
            try:
                self._queue.put(delivery, timeout=0.25)
                return
            except queue.Full:
                if self._stopping.is_set():
                    return  # never acknowledged, so the broker sends it again after we reconnect
