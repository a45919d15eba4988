"""What the WeCom and DingTalk group robots share: a JSON POST answered by {"errcode": 0, "errmsg": "ok"}.

Both robots answer HTTP 200 even when they refuse a message, so the outcome is the `errcode`. Rate limiting
(both allow about 20 messages a minute per robot) is worth retrying; any other code is a configuration
problem (bad key, keyword or IP not allowed, malformed message) that retrying cannot fix.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from cloud.alerting.errors import DeliveryError
from cloud.alerting.notify.http import post


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
