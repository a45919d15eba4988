"""Messages of the call WebSocket (pure): browser JSON in, `signal` command args out, edge replies back.

Browser -> cloud, JSON objects by `type`:
- `offer` {sdp, source?}: a new negotiation (the first, or a reconnect after the network dropped);
- `candidate` {candidate: {candidate, sdpMid, sdpMLineIndex} | null}: a trickled ICE candidate of the
  current negotiation (null: end of candidates);
- `source` {source}: show another clinical source (camera, ultrasound, synthetic);
- `bye`: leaving the call.
Cloud -> browser: `welcome` {role, ice_servers, session}, then the edge's replies for this connection:
`answer` {n, sdp, sources, source}, `source` {source}, `quality` {rung, width, height, bitrate_bps, fps},
`error` {reason, detail}, `closed` {reason}, `recording` {active}. The edge's routing fields are not passed
on. The cloud itself adds `consent` {standing} when the patient's consent is recorded or revoked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

_MAX_SDP: Final = 64 * 1024
_FORWARDED: Final = {
    "answer": ("n", "sdp", "sources", "source"),
    "source": ("n", "source"),
    "quality": ("n", "rung", "width", "height", "bitrate_bps", "fps"),
    "error": ("n", "reason", "detail"),
    "closed": ("n", "reason"),
    "recording": ("n", "active"),
}


class ClientMessageError(ValueError):
    """A browser message the call cannot use; the text says why (sent back to the browser)."""


@dataclass(frozen=True, slots=True)
class ClientOffer:
    sdp: str
    source: str | None


@dataclass(frozen=True, slots=True)
class ClientCandidate:
    candidate: str | None
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, slots=True)
class ClientSource:
    source: str


@dataclass(frozen=True, slots=True)
class ClientBye:
    pass


ClientMessage = ClientOffer | ClientCandidate | ClientSource | ClientBye


@dataclass(frozen=True, slots=True)
class CallRoute:
    """Who is calling, in which capacity, over which WebSocket connection."""

    consultation_id: str
    user_id: str
    role: str
    session: str

    def args(self, n: int) -> dict[str, Any]:
        return {"consultation_id": self.consultation_id, "user_id": self.user_id, "role": self.role,
                "session": self.session, "n": n}


def _optional_text(data: dict[str, Any], name: str, limit: int = 64) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit:
        raise ClientMessageError(f"{name}: a string of 1..{limit} characters")
    return value


def parse_client(text: str | bytes) -> ClientMessage:
    """One browser message; ClientMessageError explains what is wrong."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ClientMessageError("not JSON") from None
    if not isinstance(data, dict):
        raise ClientMessageError("a JSON object is expected")
    kind = data.get("type")
    if kind == "offer":
        sdp = data.get("sdp")
        if not isinstance(sdp, str) or not sdp.startswith("v=0") or len(sdp) > _MAX_SDP:
            raise ClientMessageError("sdp: a session description is required")
        return ClientOffer(sdp, _optional_text(data, "source"))
    if kind == "candidate":
        candidate = data.get("candidate")
        if candidate is None:
            return ClientCandidate(None, None, None)
        if not isinstance(candidate, dict):
            raise ClientMessageError("candidate: an RTCIceCandidateInit object or null")
        line = candidate.get("candidate")
        if line == "":
            return ClientCandidate(None, None, None)  # the browser's own end-of-candidates marker
        if not isinstance(line, str) or len(line) > 1024 or not line.startswith("candidate:"):
            raise ClientMessageError("candidate.candidate: an ICE candidate attribute")
        mid = _optional_text(candidate, "sdpMid")
        index = candidate.get("sdpMLineIndex")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 64):
            raise ClientMessageError("candidate.sdpMLineIndex: a small non-negative integer")
        if mid is None and index is None:
            raise ClientMessageError("candidate: sdpMid or sdpMLineIndex is required")
        return ClientCandidate(line, mid, index)
    if kind == "source":
        source = _optional_text(data, "source")
        if source is None:
            raise ClientMessageError("source: required")
        return ClientSource(source)
    if kind == "bye":
        return ClientBye()
    raise ClientMessageError(f"type: unknown message type {kind!r}")


def command_args(message: ClientMessage, *, route: CallRoute, n: int, ice_servers: list[dict[str, Any]],
                 record: bool, consent_id: str | None = None) -> dict[str, Any]:
    """The `signal` command args for a browser message in negotiation `n` (edge/video/signals.py).

    `record` is true only while the patient's consent stands (`consent_id`, cloud/video/consent.py).
    """
    args = route.args(n)
    if isinstance(message, ClientOffer):
        args |= {"type": "offer", "sdp": message.sdp, "ice_servers": ice_servers, "record": record}
        if record and consent_id is not None:
            args["consent_id"] = consent_id
        if message.source is not None:
            args["source"] = message.source
    elif isinstance(message, ClientCandidate):
        args |= {"type": "candidate", "candidate": message.candidate, "sdp_mid": message.sdp_mid,
                 "sdp_mline_index": message.sdp_mline_index}
    elif isinstance(message, ClientSource):
        args |= {"type": "source", "source": message.source}
    else:
        args["type"] = "bye"
    return args


def record_args(*, consultation_id: str, record: bool, consent_id: str | None) -> dict[str, Any]:
    """The args of a `signal` command of type `record`: record the consultation's call (consent stands) or stop."""
    args: dict[str, Any] = {"type": "record", "consultation_id": consultation_id, "record": record}
    if record and consent_id is not None:
        args["consent_id"] = consent_id
    return args


def for_browser(signal: Any, *, route: CallRoute) -> dict[str, Any] | None:
    """The browser message for an edge reply, or None when the reply is not for this connection."""
    if not isinstance(signal, dict):
        return None
    if (signal.get("consultation_id"), signal.get("user_id"), signal.get("session")) != (
            route.consultation_id, route.user_id, route.session):
        return None
    kind = signal.get("type")
    fields = _FORWARDED.get(kind) if isinstance(kind, str) else None
    if fields is None:
        return None
    return {"type": kind} | {name: signal[name] for name in fields if name in signal}
