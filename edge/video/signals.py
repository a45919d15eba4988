"""The video signalling messages between cloud and edge (pure): parse `signal` command args, build replies.

Cloud -> edge: Command(name="signal", args={...}) on down/cmd. Every message carries its route:
`consultation_id`, `user_id`, `role`, `session` (one per browser connection to the cloud) and `n` (the
negotiation within that session; a reconnect negotiates again with n + 1). By `type`:
- `offer`: `sdp` (the browser's offer), optional `source` (camera | ultrasound | synthetic),
  `ice_servers` (STUN/TURN for this call, with time-limited TURN credentials), `record` (bool, only ever
  true when the cloud holds the patient's recorded consent) and then `consent_id`;
- `candidate`: `candidate` (an a=candidate line without the "a=", or null for end-of-candidates),
  `sdp_mid`, `sdp_mline_index`;
- `source`: `source` to switch to, without renegotiating;
- `bye`: the participant left.
Edge -> cloud: Event(event_type="signal", signal={...route..., "type": ...}) on up/events, with types
`answer` (`sdp`, `sources`, `source`), `source` (the source now shown), `quality` (the ladder's rung),
`error` (`reason`, `detail`), `closed` and `recording` (`active`: whether the call is being recorded).

Cloud -> edge, per consultation rather than per participant, with no route: a `signal` of type `record`
{consultation_id, record, consent_id?} when consent is recorded (record a running call) or revoked (stop).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from edge.video.errors import SignalError

_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_MAX_SDP: Final = 64 * 1024
Role = Literal["requester", "expert", "observer"]
_ROLES: Final = ("requester", "expert", "observer")


@dataclass(frozen=True, slots=True)
class Route:
    """Who a signal is from and for which negotiation."""

    consultation_id: str
    user_id: str
    role: Role
    session: str
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"consultation_id": self.consultation_id, "user_id": self.user_id, "session": self.session,
                "n": self.n}


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    route: Route
    sdp: str
    source: str | None
    ice_servers: tuple[IceServer, ...]
    record: bool
    consent_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordRequest:
    """The cloud's word on recording a consultation's call: start (consent stands) or stop (revoked)."""

    consultation_id: str
    record: bool
    consent_id: str | None


@dataclass(frozen=True, slots=True)
class Candidate:
    route: Route
    candidate: str | None  # None: end of candidates
    sdp_mid: str | None
    sdp_mline_index: int | None


@dataclass(frozen=True, slots=True)
class SelectSource:
    route: Route
    source: str


@dataclass(frozen=True, slots=True)
class Bye:
    route: Route


SignalMessage = Offer | Candidate | SelectSource | Bye


def _text(args: Mapping[str, Any], name: str, *, pattern: re.Pattern[str] | None = None,
          optional: bool = False) -> str | None:
    value = args.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise SignalError(f"{name}: a non-empty string is required")
    if pattern is not None and not pattern.match(value):
        raise SignalError(f"{name}: malformed")
    return value


def parse_route(args: Mapping[str, Any]) -> Route:
    """The route of a signal; SignalError when it is missing or malformed (nobody can be answered then)."""
    consultation_id = _text(args, "consultation_id", pattern=_ID)
    user_id = _text(args, "user_id", pattern=_ID)
    session = _text(args, "session", pattern=_ID)
    role = args.get("role")
    n = args.get("n")
    if role not in _ROLES:
        raise SignalError(f"role: one of {', '.join(_ROLES)}")
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n < 1 << 31:
        raise SignalError("n: a negotiation number is required")
    assert consultation_id is not None and user_id is not None and session is not None
    return Route(consultation_id, user_id, role, session, n)


def _ice_servers(value: Any) -> tuple[IceServer, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SignalError("ice_servers: a list is required")
    servers = []
    for entry in value:
        if not isinstance(entry, Mapping):
            raise SignalError("ice_servers: entries are objects")
        urls = entry.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not urls or not all(
                isinstance(u, str) and u.startswith(("stun:", "turn:", "turns:")) for u in urls):
            raise SignalError("ice_servers: urls must be stun:/turn:/turns: URLs")
        username, credential = entry.get("username"), entry.get("credential")
        if not isinstance(username, str | None) or not isinstance(credential, str | None):
            raise SignalError("ice_servers: username and credential are strings")
        servers.append(IceServer(tuple(urls), username, credential))
    return tuple(servers)


def parse_signal(args: Mapping[str, Any]) -> SignalMessage:
    """A signal command's args as a typed message; SignalError names the offending field."""
    route = parse_route(args)
    kind = args.get("type")
    if kind == "offer":
        sdp = _text(args, "sdp")
        assert sdp is not None
        if len(sdp) > _MAX_SDP or not sdp.startswith("v=0"):
            raise SignalError("sdp: not a session description")
        source = _text(args, "source", optional=True)
        record = args.get("record", False)
        if not isinstance(record, bool):
            raise SignalError("record: a boolean is required")
        consent_id = _text(args, "consent_id", pattern=_ID, optional=True) if record else None
        return Offer(route, sdp, source, _ice_servers(args.get("ice_servers")), record, consent_id)
    if kind == "candidate":
        candidate = _text(args, "candidate", optional=True)
        if candidate is not None and (len(candidate) > 1024 or not candidate.startswith("candidate:")):
            raise SignalError("candidate: an ICE candidate attribute is required")
        mid = _text(args, "sdp_mid", optional=True)
        index = args.get("sdp_mline_index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 64):
            raise SignalError("sdp_mline_index: a small non-negative integer is required")
        if candidate is not None and mid is None and index is None:
            raise SignalError("a candidate needs sdp_mid or sdp_mline_index")
        return Candidate(route, candidate, mid, index)
    if kind == "source":
        source = _text(args, "source")
        assert source is not None
        return SelectSource(route, source)
    if kind == "bye":
        return Bye(route)
    raise SignalError(f"type: unknown signal type {kind!r}")


def is_record(args: Mapping[str, Any]) -> bool:
    return args.get("type") == "record"


def parse_record(args: Mapping[str, Any]) -> RecordRequest:
    """A `record` signal's args; SignalError names the offending field."""
    consultation_id = _text(args, "consultation_id", pattern=_ID)
    record = args.get("record")
    if not isinstance(record, bool):
        raise SignalError("record: a boolean is required")
    consent_id = _text(args, "consent_id", pattern=_ID, optional=True) if record else None
    assert consultation_id is not None
    return RecordRequest(consultation_id, record, consent_id)


# --- replies -------------------------------------------------------------------------------------------


def answer(route: Route, *, sdp: str, sources: tuple[str, ...], source: str) -> dict[str, Any]:
    return route.as_dict() | {"type": "answer", "sdp": sdp, "sources": list(sources), "source": source}


def source_changed(route: Route, source: str) -> dict[str, Any]:
    return route.as_dict() | {"type": "source", "source": source}


def quality(route: Route, *, rung: str, width: int | None, height: int | None, bitrate_bps: int,
            fps: float) -> dict[str, Any]:
    return route.as_dict() | {"type": "quality", "rung": rung, "width": width, "height": height,
                              "bitrate_bps": bitrate_bps, "fps": fps}


def error(route: Route, reason: str, detail: str) -> dict[str, Any]:
    return route.as_dict() | {"type": "error", "reason": reason, "detail": detail[:300]}


def closed(route: Route, reason: str) -> dict[str, Any]:
    return route.as_dict() | {"type": "closed", "reason": reason}


def recording(route: Route, *, active: bool) -> dict[str, Any]:
    return route.as_dict() | {"type": "recording", "active": active}
