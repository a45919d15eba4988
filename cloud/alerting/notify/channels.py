"""Channels by kind: the `Channel` interface and building one from its stored configuration.

A channel row (`notification_channels`) has a kind and a JSON config:

    webhook   {"url", "secret", "timeout_s"?}
    wecom     {"url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...", "timeout_s"?}
    dingtalk  {"url": "https://oapi.dingtalk.com/robot/send?access_token=...", "secret"?: "SEC...", "timeout_s"?}
    email     {"host", "port", "sender", "starttls"?: true, "implicit_tls"?: false, "username"?, "password"?,
               "timeout_s"?, "cafile"?}

A user's contact point names a channel and an address on it: nothing for a webhook (the page carries the
user), the WeCom userid or DingTalk mobile to mention, or the e-mail address.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, Protocol, get_args

from cloud.alerting.errors import ChannelConfigError
from cloud.alerting.notify.dingtalk import DingTalkChannel
from cloud.alerting.notify.email import EmailChannel
from cloud.alerting.notify.page import Page
from cloud.alerting.notify.webhook import WebhookChannel
from cloud.alerting.notify.wecom import WeComChannel

ChannelKind = Literal["webhook", "wecom", "dingtalk", "email"]
CHANNEL_KINDS: Final[tuple[ChannelKind, ...]] = get_args(ChannelKind)
# Config keys that are secrets: never returned by the API.
SECRET_KEYS: Final = frozenset({"secret", "password", "url"})


class Channel(Protocol):
    """Delivers a page to one recipient address (blocking; the dispatcher runs it in a thread).

    Raises DeliveryError (transient or permanent) when the page did not get through.
    """

    @property
    def kind(self) -> str: ...

    def send(self, page: Page, address: str | None) -> None: ...


def _str(config: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = config.get(key)
    if value is None or value == "":
        if required:
            raise ChannelConfigError(f"missing {key!r}")
        return None
    if not isinstance(value, str):
        raise ChannelConfigError(f"{key!r} must be a string")
    return value


def _number(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ChannelConfigError(f"{key!r} must be a positive number")
    return float(value)


def _flag(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ChannelConfigError(f"{key!r} must be true or false")
    return value


def build_channel(kind: str, config: Mapping[str, Any]) -> Channel:
    """The channel of `kind` configured by `config`; ChannelConfigError naming what is wrong."""
    timeout = _number(config, "timeout_s", 5.0)
    if kind == "webhook":
        return WebhookChannel(_str(config, "url") or "", _str(config, "secret") or "", timeout_s=timeout)
    if kind == "wecom":
        return WeComChannel(_str(config, "url") or "", timeout_s=timeout)
    if kind == "dingtalk":
        return DingTalkChannel(_str(config, "url") or "", secret=_str(config, "secret", required=False),
                               timeout_s=timeout)
    if kind == "email":
        port = config.get("port", 587)
        if not isinstance(port, int) or isinstance(port, bool):
            raise ChannelConfigError("'port' must be an integer")
        cafile = _str(config, "cafile", required=False)
        return EmailChannel(
            _str(config, "host") or "", port, _str(config, "sender") or "",
            starttls=_flag(config, "starttls", True), implicit_tls=_flag(config, "implicit_tls", False),
            username=_str(config, "username", required=False), password=_str(config, "password", required=False),
            timeout_s=_number(config, "timeout_s", 10.0), cafile=Path(cafile) if cafile else None,
        )
    raise ChannelConfigError(f"unknown channel kind {kind!r}: use {', '.join(CHANNEL_KINDS)}")


def redacted(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with secrets masked (URLs of robots carry their access keys)."""
    return {key: ("***" if key in SECRET_KEYS and value else value) for key, value in config.items()}
