"""ICE servers for a call (pure): STUN as configured, TURN with time-limited REST credentials.

TURN credentials follow coturn's `use-auth-secret` mode, the "TURN REST API" of
draft-uberti-behave-turn-rest-00 section 2.2: username = "<expiry as Unix time>:<user id>", password =
base64(HMAC-SHA1(static-auth-secret, username)). coturn recomputes the HMAC from its own copy of the
secret and refuses the username once the expiry has passed, so nothing per user is provisioned on the
TURN server and a leaked credential dies with its TTL (deploy/coturn.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from cloud.video.settings import VideoSettings


def turn_credentials(secret: str, user: str, *, now: float, ttl_s: int) -> tuple[str, str]:
    """(username, credential) for `user`, valid until now + ttl_s."""
    if ":" in user:
        raise ValueError("the user part of a TURN REST username must not contain ':'")
    username = f"{int(now) + ttl_s}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(settings: VideoSettings, *, user: str, now: float) -> list[dict[str, Any]]:
    """RTCIceServer dictionaries (W3C WebRTC section 4.2.1) for one participant of a call."""
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls:
        username, credential = turn_credentials(settings.turn_secret, user, now=now, ttl_s=settings.turn_ttl_s)
        servers.append({"urls": list(settings.turn_urls), "username": username, "credential": credential})
    return servers
