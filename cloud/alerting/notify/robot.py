"""What the WeCom and DingTalk group robots share: a JSON POST answered by {"errcode": 0, "errmsg": "ok"}.

Both robots answer HTTP 200 even when they refuse a message, so the outcome is the `errcode`. Rate limiting
(both allow about 20 messages a minute per robot) is worth retrying; any other code is a configuration
problem (bad key, keyword or IP not allowed, malformed message) that retrying cannot fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

from cloud.alerting.errors import DeliveryError
from cloud.alerting.notify.http import post
from cloud.alerting.notify.page import PRIORITY_ZH, STATE_ZH, TIER_ZH, Page


def post_robot(url: str, document: dict[str, Any], *, timeout_s: float, transient_codes: Collection[int],
               service: str) -> None:
    """POST a robot message; DeliveryError unless the robot answers errcode 0."""
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    response = post(url, body, {"Content-Type": "application/json; charset=utf-8"}, timeout_s=timeout_s)
    try:
        answer = json.loads(response.body.decode("utf-8"))
        code = int(answer.get("errcode", -1))
        message = str(answer.get("errmsg", ""))[:200]
    except (ValueError, AttributeError, TypeError):
        raise DeliveryError(f"{service} answered something that is not its JSON reply", transient=True) from None
    if code != 0:
        raise DeliveryError(f"{service} errcode {code}: {message}", transient=code in transient_codes)


def clip_utf8(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def priority_zh(page: Page) -> str:
    """The page's priority in Chinese (高/中/低)."""
    return PRIORITY_ZH.get(page.priority, page.priority)


def facts_zh(page: Page, emphasise: Callable[[str], str]) -> list[tuple[str, str]]:
    """The labelled facts both robots show for a page, in order; `emphasise` marks up the NEWS2 score."""
    facts = [("医院", page.where), ("患者", page.patient_id), ("内容", page.message)]
    if page.news2_total is not None:
        facts.append(("NEWS2", emphasise(str(page.news2_total))))
    escalation = f"{TIER_ZH.get(page.tier, page.tier)} (第 {page.step + 1} 步) · {STATE_ZH.get(page.state, page.state)}"
    facts += [("时间", page.local_time()), ("升级", escalation)]
    return facts
