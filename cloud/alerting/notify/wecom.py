"""WeCom (企业微信) group robot: a markdown message to the ward's group, mentioning the on-call doctor.

API (企业微信开发者中心, "群机器人配置说明"): POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY
with {"msgtype": "markdown", "markdown": {"content": "..."}}; content at most 4096 bytes of UTF-8; markdown
supports headings, quotes, links, <font color="info|comment|warning"> and mentions as <@userid>. Answers
{"errcode": 0, "errmsg": "ok"}; 45009 means the robot's rate limit (20 messages a minute) was hit.
"""

from __future__ import annotations

from typing import Any, Final

from cloud.alerting.errors import ChannelConfigError
from cloud.alerting.notify.http import check_url
from cloud.alerting.notify.page import Page
from cloud.alerting.notify.robot import clip_utf8, facts_zh, post_robot, priority_zh

MAX_CONTENT_BYTES: Final = 4096
RATE_LIMITED: Final = frozenset({45009})
_COLOURS: Final = {"high": "warning", "medium": "warning", "low": "comment"}


def markdown(page: Page, mention: str | None) -> dict[str, Any]:
    """The robot message for a page; `mention` is the recipient's WeCom userid, if known."""
    colour = _COLOURS.get(page.priority, "comment")
    lines = [
        f"### <font color=\"{colour}\">【{priority_zh(page)}优先级】</font> 患者告警 {page.rule}",
        *(f"> {label}: {value}" for label, value in facts_zh(page, lambda v: f"<font color=\"{colour}\">{v}</font>")),
    ]
    if page.link:
        lines.append(f"[打开并确认告警]({page.link})")
    if mention:
        lines.append(f"<@{mention}>")
    return {"msgtype": "markdown", "markdown": {"content": clip_utf8("\n".join(lines), MAX_CONTENT_BYTES)}}


class WeComChannel:
    """Posts pages to one WeCom group robot."""

    kind: Final = "wecom"

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        try:
            self.url = check_url(url, "WeCom robot url")
        except ValueError as exc:
            raise ChannelConfigError(str(exc)) from None
        self._timeout_s = timeout_s

    def send(self, page: Page, address: str | None) -> None:
        post_robot(self.url, markdown(page, address), timeout_s=self._timeout_s, transient_codes=RATE_LIMITED,
                   service="WeCom robot")
