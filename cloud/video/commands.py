"""Signed commands from the API process to an edge's down/cmd (paho-mqtt 2.x, MQTT v5, QoS 1).

The API process has no other MQTT traffic, so this publisher is started on the first call and kept for
the process's lifetime. Commands are sealed with the cloud's Ed25519 key (cloud/edges/cloud_key.py), as
acks are, so an edge obeys only the cloud. Sequence numbers are time-based like the ingest's ack
sequences (edges deduplicate commands by command id; the sequence only has to increase).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from cloud.ingest.acks import AckSequence
from cloud.settings import MqttSettings
from proto import topics
from proto.envelope import seal
from proto.messages import Command
from proto.topics import Stream

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The broker cannot take the command now (not connected, refused, or the client is stopped)."""


class CommandPublisher:
    """Publishes sealed commands; reconnects by itself (paho's loop) after a broker outage."""

    def __init__(self, settings: MqttSettings, signer: Ed25519PrivateKey, *, client_id: str | None = None) -> None:
        self._settings = settings
        self._signer = signer
        self._sequence = AckSequence(os.getpid() % 256)
        self._connected = threading.Event()
        self._failure: str | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=client_id or f"telemed-api-video-{uuid.uuid4().hex[:12]}",
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            self._client.tls_set(ca_certs=str(settings.cafile) if settings.cafile else None,
                                 cert_reqs=ssl.CERT_REQUIRED)
        self._client.reconnect_delay_set(min_delay=1, max_delay=15)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, timeout_s: float) -> None:
        """Connect (blocking up to `timeout_s`); PublishError if the broker is unreachable or refuses."""
        try:
            self._client.connect_async(self._settings.host, self._settings.port,
                                       keepalive=self._settings.keepalive_s, clean_start=True)
        except (OSError, ValueError) as exc:
            raise PublishError(f"cannot reach the broker at {self._settings.host}:{self._settings.port}: {exc}") \
                from exc
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._failure is not None:
            self.stop()
            raise PublishError(self._failure or f"no connection to the broker within {timeout_s} s")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def publish(self, *, site_id: str, edge_id: str, command: Command) -> None:
        """Seal and publish one command at QoS 1 (paho queues it through a short disconnect)."""
        if not self._connected.is_set():
            raise PublishError("not connected to the broker")
        raw = seal(command, edge_id=edge_id, sequence=self._sequence(), signer=self._signer)
        info = self._client.publish(topics.build(site_id, edge_id, Stream.CMD), raw, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish failed: {mqtt.error_string(info.rc)}")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            self._failure = f"broker refused the connection: {reason}"
            log.error("video.mqtt_refused", extra={"reason": str(reason)})
            return
        self._failure = None
        self._connected.set()
        log.info("video.mqtt_connected")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason: ReasonCode,
                       properties: Properties | None) -> None:
        self._connected.clear()
        log.warning("video.mqtt_disconnected", extra={"reason": str(reason)})
