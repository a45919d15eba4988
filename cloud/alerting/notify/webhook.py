"""The generic webhook channel: the page as JSON, POSTed with an HMAC-SHA256 signature.

The scheme (the same as the edge's local webhook, after GitHub's and Stripe's):

    X-Telemed-Timestamp: 1767225600           Unix seconds when this attempt was signed
    X-Telemed-Delivery:  <uuid>               the same on every retry of one delivery: dedupe on it
    X-Telemed-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A receiver recomputes the HMAC over the raw body bytes with the shared secret, compares in constant time,
and refuses timestamps more than five minutes off (a captured request cannot be replayed later):
`verify_signature` below is that check, and docs/alerting.md shows it standalone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from cloud.alerting.errors import ChannelConfigError
from cloud.alerting.notify.http import check_url, post
from cloud.alerting.notify.page import Page

SIGNATURE_HEADER: Final = "X-Telemed-Signature"
TIMESTAMP_HEADER: Final = "X-Telemed-Timestamp"
DELIVERY_HEADER: Final = "X-Telemed-Delivery"
TOLERANCE_S: Final = 300.0


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Telemed-Signature value for `body` signed at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: bytes, headers: Mapping[str, str], body: bytes, *, now: float,
                     tolerance_s: float = TOLERANCE_S) -> bool:
    """What a receiver checks: a fresh timestamp and a matching HMAC (constant-time comparison)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    given = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(given, signature(secret, timestamp, body))


def page_document(page: Page, address: str | None, *, sent_at: float) -> dict[str, Any]:
    """The JSON document a webhook receives."""
    data = page.to_dict()
    incident = {key: data[key] for key in (
        "incident_id", "site_id", "site_name", "department", "ward", "bed", "patient_id", "rule", "category",
        "priority", "state", "alarm_state", "message", "raised_at", "kind", "value", "news2_total", "link")}
    return {
        "type": "telemed.page", "version": 1, "delivery_id": data["delivery_id"], "sent_at": int(sent_at),
        "incident": incident,
        "escalation": {"step": page.step, "round": page.round, "tier": page.tier},
        "recipient": {"user_id": data["recipient_user_id"], "username": page.recipient_username,
                      "display_name": page.recipient_name, "address": address},
        "text": page.text(),
    }


class WebhookChannel:
    """POSTs pages as signed JSON to one URL."""

    kind: Final = "webhook"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        try:
            self.url = check_url(url, "webhook url")
        except ValueError as exc:
            raise ChannelConfigError(str(exc)) from None
        if not secret:
            raise ChannelConfigError("a webhook needs a secret for its signature")
        self._secret = secret.encode()
        self._timeout_s = timeout_s
        self._clock = clock

    def send(self, page: Page, address: str | None) -> None:
        now = self._clock()
        body = json.dumps(page_document(page, address, sent_at=now), ensure_ascii=False,
                          separators=(",", ":")).encode()
        timestamp = str(int(now))
        post(self.url, body, {
            "Content-Type": "application/json; charset=utf-8", TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._secret, timestamp, body), DELIVERY_HEADER: str(page.delivery_id),
            "User-Agent": "telemed-alerting/1",
        }, timeout_s=self._timeout_s)
