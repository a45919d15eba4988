"""Notification channels: the signed webhook, the WeCom and DingTalk robots, retry policy and channel config."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import random
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cloud.alerting.errors import ChannelConfigError, DeliveryError
from cloud.alerting.notify import dingtalk, wecom
from cloud.alerting.notify.channels import build_channel, redacted
from cloud.alerting.notify.dingtalk import DingTalkChannel
from cloud.alerting.notify.page import Page
from cloud.alerting.notify.retry import RetryPolicy
from cloud.alerting.notify.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookChannel,
    signature,
    verify_signature,
)
from cloud.alerting.notify.wecom import WeComChannel

SECRET = "s3cret"
NOW = 1_772_409_600.0  # 2026-03-02T00:00:00Z


def page(**changes: Any) -> Page:
    fields: dict[str, Any] = dict(
        delivery_id=uuid.UUID("0d3f0b7e-7c1a-4f4e-9a51-2d9b6f0c1e11"),
        incident_id=uuid.UUID("5b1d2c3e-0000-5000-8000-000000000001"), site_id="anxian", patient_id="pt-0042",
        rule="spo2_low", category="clinical", priority="high", state="triggered", alarm_state="active",
        message="SpO2 low: 87 % (< 90 % for 15 s)", raised_at=dt.datetime(2026, 3, 2, 0, 15, 3, tzinfo=dt.UTC),
        step=0, round=0, tier="primary", recipient_user_id=uuid.UUID(int=7), recipient_username="dr.wang",
        recipient_name="王医生", site_name="安县人民医院", department="重症医学科", ward="ICU", bed="3",
        kind="spo2", value=87.0, news2_total=7, link="https://telemed.example/incidents/5b1d")
    fields.update(changes)
    return Page(**fields)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    reply: bytes = b'{"errcode": 0, "errmsg": "ok"}'


@contextlib.contextmanager
def http_server(**kwargs: Any) -> Iterator[Server]:
    server = Server(**kwargs)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server.requests.append(Request(self.path, dict(self.headers.items()), body))
            self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(server.reply)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- the generic webhook -------------------------------------------------------------------------------------


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(SECRET.encode(), b"1772409600." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET.encode(), "1772409600", body) == f"sha256={expected}"


def test_a_signed_page_verifies_and_a_tampered_one_does_not() -> None:
    with http_server() as server:
        WebhookChannel(f"{server.url}/hook", SECRET, clock=lambda: NOW).send(page(), None)
    (request,) = server.requests
    headers, body = request.headers, request.body
    assert headers[TIMESTAMP_HEADER] == "1772409600"
    assert headers[DELIVERY_HEADER] == "0d3f0b7e-7c1a-4f4e-9a51-2d9b6f0c1e11"
    assert verify_signature(SECRET.encode(), headers, body, now=NOW + 10)
    document = json.loads(body)
    assert document["incident"]["patient_id"] == "pt-0042" and document["recipient"]["username"] == "dr.wang"
    tampered = body.replace(b"pt-0042", b"pt-0043")
    assert not verify_signature(SECRET.encode(), headers, tampered, now=NOW + 10)
    assert not verify_signature(b"another secret", headers, body, now=NOW + 10)
    assert not verify_signature(SECRET.encode(), headers, body, now=NOW + 301)  # replayed later
    unsigned = {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}
    assert not verify_signature(SECRET.encode(), unsigned, body, now=NOW)


@pytest.mark.parametrize(("status", "transient"), [(503, True), (429, True), (408, True), (500, True),
                                                    (400, False), (401, False), (404, False)])
def test_http_failures_are_classified_for_retrying(status: int, transient: bool) -> None:
    with http_server(status=status) as server, pytest.raises(DeliveryError) as failure:
        WebhookChannel(server.url, SECRET).send(page(), None)
    assert failure.value.transient is transient


def test_an_unreachable_receiver_is_worth_retrying() -> None:
    with http_server() as server:
        url = server.url
    with pytest.raises(DeliveryError) as failure:
        WebhookChannel(url, SECRET, timeout_s=2).send(page(), None)
    assert failure.value.transient


# --- WeCom and DingTalk group robots ---------------------------------------------------------------------------


def test_wecom_posts_markdown_that_mentions_the_doctor_and_names_no_patient() -> None:
    with http_server() as server:
        WeComChannel(f"{server.url}/cgi-bin/webhook/send?key=abc").send(page(), "WangWei")
    (request,) = server.requests
    assert request.path == "/cgi-bin/webhook/send?key=abc"
    document = json.loads(request.body)
    assert document["msgtype"] == "markdown"
    content = document["markdown"]["content"]
    assert content.startswith('### <font color="warning">【高优先级】</font> 患者告警 spo2_low')
    assert "pt-0042" in content and "ICU" in content and "<@WangWei>" in content
    assert "NEWS2" in content and "https://telemed.example/incidents/5b1d" in content


def test_wecom_content_stays_within_its_4096_bytes() -> None:
    document = wecom.markdown(page(message="很长的消息" * 200), None)
    assert len(document["markdown"]["content"].encode()) <= 4096


@pytest.mark.parametrize(("errcode", "transient"), [(45009, True), (93000, False)])
def test_wecom_refusals_come_back_as_errcodes_in_a_200(errcode: int, transient: bool) -> None:
    reply = json.dumps({"errcode": errcode, "errmsg": "no"}).encode()
    with http_server(reply=reply) as server, pytest.raises(DeliveryError) as failure:
        WeComChannel(server.url).send(page(), None)
    assert failure.value.transient is transient and str(errcode) in str(failure.value)


def test_dingtalk_sign_follows_the_documented_algorithm() -> None:
    # 钉钉 自定义机器人安全设置 (加签): Base64(HmacSHA256(secret, "<timestamp ms>\n<secret>")), then URL-encoded.
    secret, timestamp = "SEC0123456789abcdef", 1772409600000
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    assert dingtalk.sign(secret, timestamp) == urllib.parse.quote_plus(base64.b64encode(digest))
    url = dingtalk.signed_url("https://oapi.dingtalk.com/robot/send?access_token=T", secret, timestamp)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["access_token"] == ["T"] and query["timestamp"] == [str(timestamp)]
    assert query["sign"] == [base64.b64encode(digest).decode()]  # parse_qs undoes the URL encoding


def test_dingtalk_posts_signed_markdown_that_at_mentions_the_mobile() -> None:
    with http_server() as server:
        DingTalkChannel(f"{server.url}/robot/send?access_token=T", secret="SECxyz",
                        clock=lambda: NOW).send(page(), "13800000000")
    (request,) = server.requests
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
    assert query["timestamp"] == ["1772409600000"]
    assert query["sign"][0] == base64.b64encode(hmac.new(
        b"SECxyz", b"1772409600000\nSECxyz", hashlib.sha256).digest()).decode()
    document = json.loads(request.body)
    assert document["msgtype"] == "markdown" and document["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    assert document["markdown"]["title"] == "【高优先级】患者告警 spo2_low"
    assert "@13800000000" in document["markdown"]["text"]


@pytest.mark.parametrize(("errcode", "transient"), [(130101, True), (310000, False)])
def test_dingtalk_rate_limits_are_retried_and_bad_signatures_are_not(errcode: int, transient: bool) -> None:
    reply = json.dumps({"errcode": errcode, "errmsg": "sign not match"}).encode()
    with http_server(reply=reply) as server, pytest.raises(DeliveryError) as failure:
        DingTalkChannel(server.url, secret="SECxyz").send(page(), None)
    assert failure.value.transient is transient


# --- configuration, retries, page text ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "config"), [
    ("webhook", {"url": "https://pager.example/hook"}),  # no secret
    ("webhook", {"url": "ftp://pager.example", "secret": "x"}),
    ("wecom", {}),
    ("dingtalk", {"url": "https://oapi.dingtalk.com/robot/send", "timeout_s": -1}),
    ("email", {"host": "smtp.example", "port": 587}),  # no sender
    ("email", {"host": "smtp.example", "sender": "a@b", "starttls": True, "implicit_tls": True}),
    ("email", {"host": "smtp.example", "sender": "a@b", "username": "u"}),  # no password
    ("sms", {}),
])
def test_channels_refuse_configurations_that_cannot_work(kind: str, config: dict[str, Any]) -> None:
    with pytest.raises(ChannelConfigError):
        build_channel(kind, config)


def test_channel_secrets_are_masked() -> None:
    config = {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc", "secret": "s", "password": "p",
              "host": "smtp.example", "timeout_s": 5}
    assert redacted(config) == {"url": "***", "secret": "***", "password": "***", "host": "smtp.example",
                                "timeout_s": 5}


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=5, initial_s=1.0, max_s=8.0)
    rng = random.Random(1)
    for attempt, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= 0.1 * ceiling and max(delays) <= ceiling
        assert max(delays) - min(delays) > 0.3 * ceiling  # jittered, not lockstep
    assert not policy.gives_up_after(4) and policy.gives_up_after(5)


def test_page_text_is_bilingual_and_in_the_sites_time_zone() -> None:
    text = page().text()
    assert "2026-03-02 08:15:03 CST" in text  # 00:15:03Z in Asia/Shanghai
    assert "优先级 Priority: 高 / high" in text and "升级 Escalation: 一线值班 / primary, step 1" in text
    assert Page.from_dict(page().to_dict()) == page()
