"""The uplink: drains the outbox to the broker over MQTT v5 (paho-mqtt 2.x) and applies the cloud's acks.

One thread of ours runs the connection state machine and the sender; paho's network thread (one per
connection, `loop_start`) runs the callbacks, which only verify downlink envelopes and post events.

- Connect: a fresh paho client per attempt, with a last will (retained, signed EdgeStatus offline,
  sealed at that attempt), a persistent session (clean_start False + session expiry, so acks and
  commands published while we are away are queued by the broker), TLS when configured. Failures are
  retried after `backoff_delay(attempt)` (jittered exponential).
- Connected: subscribe to our own down topics only; rewind the window so everything still in the outbox
  is replayed, alerts lane first, in order per stream (the cloud answers repeats as `duplicate`); then
  publish while the in-flight window has room, a retained EdgeStatus online every heartbeat_s.
- down/ack: verified with the cloud's public key (proto.envelope.open_envelope, CLOUD_SIGNER); forged or
  malformed messages are counted, logged and ignored. Entries free window slots and go to
  Outbox.acknowledge (committed/duplicate -> deleted, rejected -> dead letters).
- down/cmd: verified likewise, then run by the CommandRegistry on a worker thread.
"""

from __future__ import annotations

import datetime as dt
import enum
import importlib.metadata
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.metrics import Registry
from edge.outbox import AckResult, Outbox, OutboxError
from edge.settings import EdgeIdentity, EdgeSettings, MqttSettings
from edge.uplink.backoff import backoff_delay
from edge.uplink.commands import CommandRegistry
from edge.uplink.schedule import take_next
from edge.uplink.window import InflightWindow
from proto import envelope, topics
from proto.envelope import CLOUD_SIGNER, EnvelopeRejected, SignerKey
from proto.messages import Command, CommitAck, EdgeStatus, LaneStatus
from proto.topics import Direction, Stream

log = logging.getLogger(__name__)

# The loop wakes at least this often to check deadlines even when nothing happens.
_MAX_SLEEP_S: Final = 1.0
_STATUS_SEQUENCE_TIMEOUT_S: Final = 10.0
_GOODBYE_TIMEOUT_S: Final = 2.0


class LinkState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class _Connack:
    client: mqtt.Client
    ok: bool
    session_present: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Lost:
    client: mqtt.Client
    reason: str


def _software_version() -> str | None:
    try:
        return importlib.metadata.version("telemed")
    except importlib.metadata.PackageNotFoundError:
        return None


class Uplink:
    """Store-and-forward delivery of one edge's outbox. start() once, stop() at shutdown."""

    def __init__(
        self,
        *,
        identity: EdgeIdentity,
        mqtt_settings: MqttSettings,
        outbox: Outbox,
        signer: Ed25519PrivateKey,
        cloud_key: Ed25519PublicKey,
        commands: CommandRegistry | None = None,
        metrics: Registry | None = None,
        devices_connected: Callable[[], int | None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if outbox.edge_id != identity.id:
            raise ValueError(f"outbox belongs to edge {outbox.edge_id!r}, not {identity.id!r}")
        self.identity = identity
        self.settings = mqtt_settings
        self._outbox = outbox
        self._signer = signer
        self._cloud = SignerKey(cloud_key)
        self.commands = commands or CommandRegistry()
        if not self.commands.has("ping"):
            self.commands.register("ping", lambda _command: self.publish_status_now())
        self._devices_connected = devices_connected or (lambda: None)
        self._rand = rand
        self._topics = {s: topics.build(identity.site, identity.id, s) for s in Stream if s.direction is Direction.UP}
        self._down = topics.downlink_subscription(identity.site, identity.id)
        self._window = InflightWindow(mqtt_settings.inflight_window, alerts_reserved=mqtt_settings.alerts_reserved,
                                      ack_timeout_s=mqtt_settings.ack_timeout_s)
        self._lock = threading.Lock()  # the window
        self._wake = threading.Event()
        self._events: queue.SimpleQueue[_Connack | _Lost] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._status_requested = threading.Event()
        self._client: mqtt.Client | None = None
        self._state = LinkState.DISCONNECTED
        self._attempt = 0
        self._retry_at = self._connack_deadline = self._next_status = 0.0
        self._thread: threading.Thread | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="uplink-commands")
        self._started = time.monotonic()
        self._version = _software_version()
        self._init_metrics(metrics or Registry())
        outbox.add_commit_listener(lambda _lanes: self._wake.set())

    @classmethod
    def from_settings(
        cls, settings: EdgeSettings, outbox: Outbox, *, commands: CommandRegistry | None = None,
        metrics: Registry | None = None, devices_connected: Callable[[], int | None] | None = None,
    ) -> Uplink:
        """Wire an uplink from the edge bundle's settings (reads the edge's signing key file)."""
        return cls(identity=settings.edge, mqtt_settings=settings.mqtt, outbox=outbox,
                   signer=settings.keys.signing_key(), cloud_key=settings.keys.cloud_key(), commands=commands,
                   metrics=metrics, devices_connected=devices_connected)

    # --- public -----------------------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    def in_flight(self) -> int:
        with self._lock:
            return len(self._window)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("uplink already started")
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Say goodbye (retained EdgeStatus offline), disconnect, and stop the threads. The outbox stays open."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._executor.shutdown(wait=True)  # commands already received still run

    def wait_connected(self, timeout: float | None = None) -> bool:
        return self._connected.wait(timeout)

    def publish_status_now(self) -> None:
        """Send an EdgeStatus heartbeat at the next opportunity (e.g. on a `ping` command)."""
        self._status_requested.set()
        self._wake.set()

    # --- the uplink thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                self._step(now)
            except Exception:
                # A bug must not silently end delivery: drop the connection and start over after a backoff.
                log.exception("uplink.loop_failed")
                self._teardown()
                self._failed(now)
            self._sleep(now)
        self._shutdown()

    def _step(self, now: float) -> None:
        """One pass of the state machine: connection events, (re)connecting, timeouts, sending, heartbeat."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event.client is not self._client:
                continue  # from a client we already let go
            if isinstance(event, _Connack) and event.ok:
                self._attempt = 0
                self._on_connected(event.session_present)
                self._next_status = now
                continue
            if isinstance(event, _Connack):
                log.warning("uplink.connect_refused", extra={"reason": event.reason, "attempt": self._attempt + 1})
            else:
                log.warning("uplink.connection_lost", extra={"reason": event.reason})
            self._teardown()
            self._failed(now)
        if self._client is None and now >= self._retry_at:
            if self._begin_connect():
                self._connack_deadline = now + self.settings.connect_timeout_s
            else:
                self._failed(now)
        elif self._state is LinkState.CONNECTING and now >= self._connack_deadline:
            log.warning("uplink.connack_timeout", extra={"timeout_s": self.settings.connect_timeout_s})
            self._teardown()
            self._failed(now)
        if self._state is LinkState.CONNECTED:
            self._expire(now)
            self._pump()
            if now >= self._next_status or self._status_requested.is_set():
                self._status_requested.clear()
                self._publish_status()
                self._next_status = now + self.settings.heartbeat_s

    def _failed(self, now: float) -> None:
        self._attempt += 1
        self._retry_at = now + self._delay(self._attempt)

    def _sleep(self, now: float) -> None:
        if self._state is LinkState.CONNECTED:
            with self._lock:
                deadline = self._window.next_deadline()
            until = min(self._next_status, deadline if deadline is not None else self._next_status)
        elif self._state is LinkState.CONNECTING:
            until = self._connack_deadline
        else:
            until = self._retry_at
        self._wake.wait(min(_MAX_SLEEP_S, max(0.0, until - now)))
        self._wake.clear()

    def _delay(self, attempt: int) -> float:
        s = self.settings
        delay = backoff_delay(attempt, initial_s=s.backoff_initial_s, max_s=s.backoff_max_s, jitter=s.backoff_jitter,
                              rand=self._rand())
        log.info("uplink.backoff", extra={"attempt": attempt, "delay_s": round(delay, 3)})
        return delay

    def _begin_connect(self) -> bool:
        """Open the TCP (TLS) connection and send CONNECT; the CONNACK arrives as an event."""
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id or self.identity.id,
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        if s.username:
            client.username_pw_set(s.username, s.password)
        client.max_inflight_messages_set(self._window.size)
        client.connect_timeout = s.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        props.SessionExpiryInterval = s.session_expiry_s
        self._state = LinkState.CONNECTING
        self._m_connects.inc(outcome="attempt")
        try:
            if s.tls:
                client.tls_set(ca_certs=s.cafile or None, certfile=s.certfile or None, keyfile=s.keyfile or None)
            will = self._sealed_status("offline")
            client.will_set(self._topics[Stream.STATUS], will, qos=1, retain=True)
            client.connect(s.host, s.port, keepalive=s.keepalive_s, clean_start=False, properties=props)
            _disable_nagle(client)
        except (OSError, ValueError, OutboxError) as exc:
            # ssl.SSLError and socket errors are OSErrors; ValueError: bad TLS file or host.
            log.warning("uplink.connect_failed", extra={"host": s.host, "port": s.port, "error": str(exc)})
            self._m_connects.inc(outcome="failed")
            self._state = LinkState.DISCONNECTED
            return False
        self._client = client
        client.loop_start()
        return True

    def _on_connected(self, session_present: bool) -> None:
        assert self._client is not None
        self._client.subscribe(self._down, qos=1)
        with self._lock:
            replay = self._window.reset()
        self._m_resent.inc(replay, cause="reconnect")
        self._state = LinkState.CONNECTED
        self._connected.set()
        self._m_connected.set(1)
        self._m_connects.inc(outcome="connected")
        log.info("uplink.connected", extra={"host": self.settings.host, "port": self.settings.port,
                                            "session_present": session_present, "replayed_in_flight": replay,
                                            "queued": self._outbox.depth()})

    def _teardown(self) -> None:
        client, self._client = self._client, None
        self._state = LinkState.DISCONNECTED
        self._connected.clear()
        self._m_connected.set(0)
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _expire(self, now: float) -> None:
        with self._lock:
            rewinds = self._window.expire(now)
        for r in rewinds:
            self._m_resent.inc(r.messages, cause="ack_timeout")
            log.warning("uplink.ack_timeout", extra={"lane": r.lane.label, "resending": r.messages,
                                                     "after_row": r.cursor})

    def _pump(self) -> None:
        """Publish queued messages, higher lanes first, while the window has room."""
        client = self._client
        assert client is not None
        try:
            batch = take_next(self._outbox, self._window, self._lock, time.monotonic())
        except OutboxError as exc:
            log.error("uplink.outbox_read_failed", extra={"error": str(exc)})
            return
        for message in batch:
            info = client.publish(self._topics[message.stream], message.envelope, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # The disconnect event follows; the reconnect rewinds the window and replays all of it.
                log.warning("uplink.publish_failed", extra={"rc": int(info.rc)})
                return
            self._m_published.inc(lane=message.lane.label)

    def _sealed_status(self, state: str) -> bytes:
        sequence = self._outbox.reserve_sequence(Stream.STATUS).result(_STATUS_SEQUENCE_TIMEOUT_S)
        stats = self._outbox.stats()
        status = EdgeStatus(
            state="online" if state == "online" else "offline",
            at=dt.datetime.now(dt.UTC), software_version=self._version,
            uptime_s=round(time.monotonic() - self._started, 3),
            outbox={lane.label: LaneStatus(st.depth, st.bytes, st.oldest_age_s) for lane, st in stats.items()},
            devices_connected=self._devices_connected(),
        )
        return envelope.seal(status, edge_id=self.identity.id, sequence=sequence, signer=self._signer)

    def _publish_status(self) -> None:
        assert self._client is not None
        try:
            sealed = self._sealed_status("online")
        except (OutboxError, TimeoutError) as exc:
            log.error("uplink.status_failed", extra={"error": str(exc)})
            return
        self._client.publish(self._topics[Stream.STATUS], sealed, qos=1, retain=True)
        self._m_status.inc()

    def _shutdown(self) -> None:
        client = self._client
        if client is not None and self._state is LinkState.CONNECTED:
            try:
                info = client.publish(self._topics[Stream.STATUS], self._sealed_status("offline"), qos=1,
                                      retain=True)
                info.wait_for_publish(_GOODBYE_TIMEOUT_S)
            except (OutboxError, TimeoutError, RuntimeError, ValueError) as exc:
                log.warning("uplink.goodbye_failed", extra={"error": str(exc)})
        self._teardown()
        self._state = LinkState.STOPPED
        log.info("uplink.stopped", extra={"queued": self._outbox.depth()})

    # --- paho callbacks (network thread) ------------------------------------------------------------------

    def _post(self, event: _Connack | _Lost) -> None:
        self._events.put(event)
        self._wake.set()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    _props: Properties | None) -> None:
        self._post(_Connack(client, not reason.is_failure, flags.session_present, str(reason)))

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, _props: Properties | None) -> None:
        self._post(_Lost(client, str(reason)))

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode],
                      _props: Properties | None) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            # Without our down topics no ack arrives: everything would be resent forever. Say so loudly.
            log.error("uplink.subscribe_refused", extra={"topic": self._down, "reasons": refused})

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.receive(message.topic, bytes(message.payload))

    def receive(self, topic: str, raw: bytes) -> None:
        """Handle one downlink message (public so the verification path is testable without a broker)."""
        try:
            env = envelope.open_envelope(raw, topic=topic, keys=self._key_of)
        except EnvelopeRejected as exc:
            self._m_rejected.inc(reason=exc.reason.value)
            log.warning("uplink.downlink_rejected", extra={"topic": topic, "reason": exc.reason.value,
                                                          "detail": exc.detail})
            return
        payload = env.payload
        if env.edge_id != self.identity.id:
            self._m_rejected.inc(reason="other_edge")
            log.warning("uplink.downlink_for_other_edge", extra={"topic": topic, "edge": env.edge_id})
        elif isinstance(payload, CommitAck):
            self._apply_ack(payload)
        elif isinstance(payload, Command):
            try:
                self._executor.submit(self.commands.dispatch, payload)
            except RuntimeError:  # shutting down
                log.warning("uplink.command_dropped", extra={"command_id": str(payload.command_id)})
        else:
            log.warning("uplink.downlink_unexpected", extra={"topic": topic, "type": type(payload).__name__})

    def _key_of(self, signer: str) -> SignerKey | None:
        return self._cloud if signer == CLOUD_SIGNER else None

    def _apply_ack(self, ack: CommitAck) -> None:
        with self._lock:
            freed = sum(1 for entry in ack.acks if self._window.acked(entry.message_id))
        for entry in ack.acks:
            self._m_acked.inc(outcome=entry.outcome)
        try:
            future = self._outbox.acknowledge(ack.acks)
        except OutboxError as exc:
            log.error("uplink.ack_not_applied", extra={"error": str(exc), "entries": len(ack.acks)})
            return
        future.add_done_callback(_log_ack_failure)
        if freed:
            self._wake.set()

    # --- metrics ------------------------------------------------------------------------------------------

    def _init_metrics(self, registry: Registry) -> None:
        self._m_connected = registry.gauge("telemed_uplink_connected", "1 while connected to the broker")
        self._m_connects = registry.counter("telemed_uplink_connects_total", "Connection attempts by outcome",
                                            ("outcome",))
        self._m_published = registry.counter("telemed_uplink_published_total", "Outbox messages published",
                                             ("lane",))
        self._m_acked = registry.counter("telemed_uplink_acked_total", "CommitAck entries received", ("outcome",))
        self._m_resent = registry.counter("telemed_uplink_resent_total", "Messages queued for resending",
                                          ("cause",))
        self._m_rejected = registry.counter("telemed_uplink_downlink_rejected_total",
                                            "Downlink messages ignored (forged, malformed, misaddressed)",
                                            ("reason",))
        self._m_status = registry.counter("telemed_uplink_status_published_total", "EdgeStatus heartbeats sent")
        inflight = registry.gauge("telemed_uplink_in_flight", "Messages published and awaiting the cloud's ack")
        registry.add_collector(lambda: inflight.set(self.in_flight()))


def _disable_nagle(client: mqtt.Client) -> None:
    """Send each MQTT packet at once: paho leaves Nagle on, which holds small publishes back for the peer's
    delayed ACK (up to 40 ms on Linux) and caps a windowed sender's throughput."""
    sock = client.socket()
    if isinstance(sock, socket.socket):  # ssl.SSLSocket is one too
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _log_ack_failure(future: Future[AckResult]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("uplink.ack_not_applied", extra={"error": str(exc)})

