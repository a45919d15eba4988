"""DingTalk (钉钉) group robot: a markdown message, signed per the robot's "加签" security setting.

API (钉钉开放平台, "自定义机器人发送群消息" and "自定义机器人安全设置"):
POST https://oapi.dingtalk.com/robot/send?access_token=TOKEN&timestamp=T&sign=S with
{"msgtype": "markdown", "markdown": {"title", "text"}, "at": {"atMobiles": [...], "isAtAll": false}}.
Signing: T is the current time in milliseconds (it must be within an hour of DingTalk's clock);
S = urlEncode(base64(HmacSHA256(key=secret, message=T + "\\n" + secret))), UTF-8 throughout. A mention shows
only when the text contains "@<mobile>" too. Answers {"errcode": 0, "errmsg": "ok"}; 130101 means the robot
sent too fast (20 messages a minute).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Final

from cloud.alerting.errors import ChannelConfigError
from cloud.alerting.notify.http import check_url
from cloud.alerting.notify.page import Page
from cloud.alerting.notify.robot import clip_utf8, facts_zh, post_robot, priority_zh

MAX_TEXT_BYTES: Final = 18_000
RATE_LIMITED: Final = frozenset({130101})


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` query parameter (already URL-encoded) for `timestamp_ms`."""
    string_to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), string_to_sign, hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest))


def signed_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """The robot URL with `timestamp` and `sign` appended (unchanged without a secret)."""
    if not secret:
        return url
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{separator}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


def markdown(page: Page, mobile: str | None) -> dict[str, Any]:
    """The robot message for a page; `mobile` is the recipient's phone number registered in DingTalk."""
    title = f"【{priority_zh(page)}优先级】患者告警 {page.rule}"
    lines = [f"### {title}", *(f"- {label}: {value}" for label, value in facts_zh(page, lambda v: f"**{v}**"))]
    if page.link:
        lines.append(f"\n[打开并确认告警]({page.link})")
    if mobile:
        lines.append(f"\n@{mobile}")
    return {
        "msgtype": "markdown",
        "markdown": {"title": title, "text": clip_utf8("\n".join(lines), MAX_TEXT_BYTES)},
        "at": {"atMobiles": [mobile] if mobile else [], "isAtAll": False},
    }


class DingTalkChannel:
    """Posts pages to one DingTalk group robot."""

    kind: Final = "dingtalk"

    def __init__(self, url: str, *, secret: str | None = None, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        try:
            self.url = check_url(url, "DingTalk robot url")
        except ValueError as exc:
            raise ChannelConfigError(str(exc)) from None
        if secret is not None and secret and not secret.isprintable():
            raise ChannelConfigError("the DingTalk signing secret must be printable text (SEC...)")
        self._secret = secret or None
        self._timeout_s = timeout_s
        self._clock = clock

    def send(self, page: Page, address: str | None) -> None:
        url = signed_url(self.url, self._secret, int(self._clock() * 1000))
        post_robot(url, markdown(page, address), timeout_s=self._timeout_s, transient_codes=RATE_LIMITED,
                   service="DingTalk robot")
