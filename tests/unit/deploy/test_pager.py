"""The demo pager of `make run` receives the alerting service's real signed webhook and shows each page once."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest

from cloud.alerting.errors import DeliveryError
from cloud.alerting.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookChannel, signature
from deploy.pager import DemoPager, ReceivedPage
from tests.unit.cloud.test_notify import page


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_signed_page_is_shown_once_with_who_was_paged() -> None:
    received: list[ReceivedPage] = []
    with DemoPager("pager-secret", received.append) as pager:
        channel = WebhookChannel(pager.url, "pager-secret")
        channel.send(page(), None)
        channel.send(page(), None)  # the cloud's retry of the same delivery
        channel.send(page(delivery_id=page().incident_id, step=1, tier="secondary", recipient_name="李医生"), None)
    assert [(p.recipient, p.tier, p.step) for p in received] == [("王医生", "primary", 0), ("李医生", "secondary", 1)]
    line = received[0].line()
    assert line.startswith("PAGE high   -> 王医生 (primary, step 0) 安县人民医院 pt-0042 bed 3: SpO2 low")
    assert line.endswith("[triggered]")


def test_forged_stale_and_garbled_deliveries_are_refused_and_not_shown() -> None:
    received: list[ReceivedPage] = []
    with DemoPager("pager-secret", received.append) as pager:
        with pytest.raises(DeliveryError):
            WebhookChannel(pager.url, "someone-else").send(page(), None)
        stale = str(int(time.time()) - 3600)
        body = b'{"type":"telemed.page"}'
        assert _post(pager.url, body, {TIMESTAMP_HEADER: stale,
                                       SIGNATURE_HEADER: signature(b"pager-secret", stale, body)}) == 401
        fresh = str(int(time.time()))
        assert _post(pager.url, body, {TIMESTAMP_HEADER: fresh,
                                       SIGNATURE_HEADER: signature(b"pager-secret", fresh, body)}) == 400
        assert _post(pager.url.replace("/pages", "/other"), body, {}) == 404
    assert received == []
