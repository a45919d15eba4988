"""Verification of edge-signed HTTP requests (the DICOMweb uploads of edge/dicom/forwarder.py).

An edge signs, with its Ed25519 key, the text `METHOD\\npath\\nsha256(body)\\ntimestamp\\nedge_id` (timestamp in
Unix milliseconds; edge/dicom/signing.py is the signer) and sends it in X-Telemed-Edge, X-Telemed-Timestamp
and X-Telemed-Signature. We accept it when the edge is registered and active in `edges`, the timestamp is
within ±5 minutes of our clock, the signature verifies over the body we actually received, and the signature
was not seen before within the window (replay cache).

The replay cache is per process. A replay to another API replica would pass it; what it can achieve is
bounded by the window and by STOW-RS being idempotent (the same instances, stored once). A shared cache
(a table, Redis) implements the same `ReplayCache.check_and_add` when that matters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import AsyncConnection

from proto import keys, topics

EDGE_HEADER: Final = "x-telemed-edge"
TIMESTAMP_HEADER: Final = "x-telemed-timestamp"
SIGNATURE_HEADER: Final = "x-telemed-signature"
CLOCK_WINDOW_S: Final = 300.0


class EdgeAuthError(Exception):
    """The request is not from an active edge we know: 401 (unauthenticated) or 403 (revoked)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class EdgeKey:
    edge_id: str
    site_id: str
    public_key: Ed25519PublicKey
    active: bool


@dataclass(frozen=True, slots=True)
class VerifiedEdge:
    """Who sent a verified request."""

    edge_id: str
    site_id: str


KeyLookup = Callable[[str], Awaitable[EdgeKey | None]]


def signing_text(method: str, path: str, body_sha256: str, timestamp_ms: int, edge_id: str) -> bytes:
    """The signed bytes (the same construction as edge/dicom/signing.py)."""
    return "\n".join((method.upper(), path, body_sha256, str(timestamp_ms), edge_id)).encode("utf-8")


class ReplayCache:
    """Signatures seen within the clock window, bounded in memory (oldest forgotten first); thread-safe."""

    def __init__(self, *, window_s: float = CLOCK_WINDOW_S, max_entries: int = 200_000) -> None:
        self._window_s = window_s
        self._max_entries = max_entries
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_add(self, signature: bytes, *, timestamp_s: float, now: float) -> bool:
        """True the first time a signature is presented, False for a replay."""
        key = hashlib.sha256(signature).digest()
        with self._lock:
            while self._seen:
                oldest_key, expires = next(iter(self._seen.items()))
                if expires >= now and len(self._seen) < self._max_entries:
                    break
                del self._seen[oldest_key]
            if key in self._seen:
                return False
            # A signature stays interesting until its timestamp leaves the window (entries are added in
            # roughly increasing expiry order, so popping from the front evicts expired ones first).
            self._seen[key] = max(timestamp_s, now) + self._window_s
            return True


@dataclass(frozen=True, slots=True)
class SignedClaim:
    """A request's signature headers from an active edge we know, not yet checked against the body."""

    edge_id: str
    timestamp_ms: int
    signature: bytes
    key: EdgeKey


async def check_sender(headers: Mapping[str, str], *, lookup: KeyLookup, now: float) -> SignedClaim:
    """Everything that can be checked before the body is read (so a large upload from a stranger is refused
    before it is received); raises EdgeAuthError (401/403) saying why not."""
    edge_id = headers.get(EDGE_HEADER, "")
    timestamp_text = headers.get(TIMESTAMP_HEADER, "")
    signature_text = headers.get(SIGNATURE_HEADER, "")
    if not edge_id or not timestamp_text or not signature_text:
        raise EdgeAuthError(401, "missing edge signature headers")
    try:
        topics.check_id(edge_id, "edge")
        timestamp_ms = int(timestamp_text)
        signature = base64.b64decode(signature_text, validate=True)
    except (topics.TopicError, ValueError, binascii.Error):
        raise EdgeAuthError(401, "malformed edge signature headers") from None
    if abs(now - timestamp_ms / 1000.0) > CLOCK_WINDOW_S:
        raise EdgeAuthError(401, "request timestamp outside the allowed clock window")
    key = await lookup(edge_id)
    if key is None:
        raise EdgeAuthError(401, "unknown edge")
    if not key.active:
        raise EdgeAuthError(403, "edge revoked")
    return SignedClaim(edge_id, timestamp_ms, signature, key)


def check_signature(claim: SignedClaim, *, method: str, path: str, body_sha256: str, replay: ReplayCache,
                    now: float) -> VerifiedEdge:
    """The claim's signature over the request we received, once (replay cache); EdgeAuthError (401) if not."""
    text = signing_text(method, path, body_sha256, claim.timestamp_ms, claim.edge_id)
    try:
        claim.key.public_key.verify(claim.signature, text)
    except InvalidSignature:
        raise EdgeAuthError(401, "bad signature") from None
    if not replay.check_and_add(claim.signature, timestamp_s=claim.timestamp_ms / 1000.0, now=now):
        raise EdgeAuthError(401, "replayed request")
    return VerifiedEdge(edge_id=claim.edge_id, site_id=claim.key.site_id)


async def verify(*, method: str, path: str, body: bytes, headers: Mapping[str, str], lookup: KeyLookup,
                 replay: ReplayCache, now: float) -> VerifiedEdge:
    """Check a signed request; raises EdgeAuthError (401/403) saying why not."""
    claim = await check_sender(headers, lookup=lookup, now=now)
    return check_signature(claim, method=method, path=path, body_sha256=hashlib.sha256(body).hexdigest(),
                           replay=replay, now=now)


def database_lookup(conn: AsyncConnection[Any]) -> KeyLookup:
    """A key lookup over the `edges` table (public_key is base64 raw Ed25519, proto.keys)."""

    async def lookup(edge_id: str) -> EdgeKey | None:
        cursor = await conn.execute("SELECT site_id, public_key, status FROM edges WHERE edge_id = %s", (edge_id,))
        row = await cursor.fetchone()
        if row is None:
            return None
        site_id, public_key, state = row
        try:
            key = keys.public_from_text(str(public_key))
        except keys.KeyFormatError:
            return None
        return EdgeKey(edge_id=edge_id, site_id=str(site_id), public_key=key, active=state == "active")

    return lookup
