"""The local alert webhook: HTTP POST of JSON to a nurse-station or paging gateway on the hospital network.

Signed so the receiver can trust it came from this edge and was not replayed (the scheme of GitHub/Stripe
webhooks):

    X-Telemed-Timestamp: 1767225600              Unix seconds when this attempt was signed
    X-Telemed-Delivery:  <uuid>                  the same on every retry of one delivery (dedupe on it)
    X-Telemed-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A worker thread posts deliveries in order, retrying network errors, timeouts, 408, 429 and 5xx with jittered
exponential backoff (edge.uplink.backoff) up to `max_attempts`; other 4xx answers are permanent failures. The
queue is bounded: when it overflows, the oldest delivery is dropped and counted. Deliveries are in memory; the
alert itself is durable in the outbox whatever happens here.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from edge.metrics import Registry
from edge.uplink.backoff import backoff_delay

log = logging.getLogger(__name__)

SIGNATURE_HEADER: Final = "X-Telemed-Signature"
TIMESTAMP_HEADER: Final = "X-Telemed-Timestamp"
DELIVERY_HEADER: Final = "X-Telemed-Delivery"
# Answers worth another attempt (RFC 9110 15.5.9 Request Timeout, RFC 6585 4 Too Many Requests; 5xx).
_RETRY_STATUS: Final = frozenset({408, 429})


class WebhookError(Exception):
    """The webhook could not be set up (bad URL or configuration)."""


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Telemed-Signature value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: bytes, headers: Mapping[str, str], body: bytes, *, now: float,
                     tolerance_s: float = 300.0) -> bool:
    """What a receiver checks: a fresh timestamp and a matching HMAC (constant-time comparison)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str
    timeout_s: float = 5.0
    max_attempts: int = 6
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    queue: int = 1000

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise WebhookError(f"webhook URL must be http(s): {self.url!r}")
        if not self.secret:
            raise WebhookError("a webhook needs a secret for its signature")
        if self.max_attempts < 1 or self.queue < 1 or self.timeout_s <= 0:
            raise WebhookError("webhook max_attempts, queue and timeout_s must be positive")


@dataclass(frozen=True, slots=True)
class _Delivery:
    delivery_id: uuid.UUID
    body: bytes


class WebhookNotifier:
    """Posts JSON documents to the configured URL from one worker thread. start(), notify(...), stop()."""

    def __init__(
        self, config: WebhookConfig, *, metrics: Registry | None = None, client: httpx.Client | None = None,
        rand: Callable[[], float] = random.random, clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._secret = config.secret.encode()
        self._client = client or httpx.Client(timeout=config.timeout_s)
        self._rand = rand
        self._clock = clock
        self._queue: collections.deque[_Delivery] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        registry = metrics or Registry()
        self._m_outcome = registry.counter("telemed_alert_webhook_deliveries_total",
                                           "Local webhook deliveries by outcome", ("outcome",))
        queued = registry.gauge("telemed_alert_webhook_queued", "Local webhook deliveries waiting")
        registry.add_collector(lambda: queued.set(self.pending()))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="alert-webhook", daemon=True)
        self._thread.start()

    def notify(self, document: Mapping[str, Any]) -> uuid.UUID:
        """Queue one JSON document for delivery; returns its delivery id. Never blocks."""
        delivery = _Delivery(uuid.uuid4(), json.dumps(document, ensure_ascii=False, sort_keys=True,
                                                      separators=(",", ":")).encode())
        with self._cond:
            if len(self._queue) >= self.config.queue:
                dropped = self._queue.popleft()
                self._m_outcome.inc(outcome="dropped")
                log.error("alerting.webhook_dropped", extra={"delivery_id": str(dropped.delivery_id),
                                                             "queue": self.config.queue})
            self._queue.append(delivery)
            self._cond.notify()
        return delivery.delivery_id

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the delivery in progress (waiting deliveries are logged as dropped) and close the client."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        if left:
            self._m_outcome.inc(left, outcome="dropped")
            log.warning("alerting.webhook_unsent_at_stop", extra={"deliveries": left})
        self._client.close()

    # --- worker -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                delivery = self._queue[0]
            outcome = self._deliver(delivery)
            with self._cond:
                if self._queue and self._queue[0] is delivery:
                    self._queue.popleft()
            self._m_outcome.inc(outcome=outcome)

    def _deliver(self, delivery: _Delivery) -> str:
        """Post with retries; 'delivered', 'rejected' (permanent 4xx), 'failed' (attempts exhausted), 'stopped'."""
        fields: dict[str, object] = {"delivery_id": str(delivery.delivery_id)}
        for attempt in range(1, self.config.max_attempts + 1):
            timestamp = str(int(self._clock()))
            headers = {"Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: timestamp,
                       DELIVERY_HEADER: str(delivery.delivery_id),
                       SIGNATURE_HEADER: signature(self._secret, timestamp, delivery.body)}
            try:
                response = self._client.post(self.config.url, content=delivery.body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    log.info("alerting.webhook_delivered", extra=fields | {"attempt": attempt,
                                                                          "status": response.status_code})
                    return "delivered"
                if response.status_code < 500 and response.status_code not in _RETRY_STATUS:
                    log.error("alerting.webhook_rejected", extra=fields | {"status": response.status_code})
                    return "rejected"
                problem = f"HTTP {response.status_code}"
            if attempt == self.config.max_attempts:
                break
            delay = backoff_delay(attempt, initial_s=self.config.backoff_initial_s,
                                  max_s=self.config.backoff_max_s, jitter=0.5, rand=self._rand())
            log.warning("alerting.webhook_retry", extra=fields | {"attempt": attempt, "error": problem,
                                                                 "delay_s": round(delay, 3)})
            if self._stop.wait(delay):
                return "stopped"
        log.error("alerting.webhook_failed", extra=fields | {"attempts": self.config.max_attempts})
        return "failed"
