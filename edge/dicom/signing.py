"""Signing of the edge's HTTP requests to the cloud (DICOMweb uploads) with its Ed25519 key.

The signed text is five lines joined by LF (no trailing LF):

    METHOD            upper case, e.g. POST
    path              the request target's path as sent, with the query string if any (`/dicomweb/studies`)
    sha256(body)      64 lowercase hex digits of the SHA-256 of the exact body bytes
    timestamp         Unix time in milliseconds, decimal
    edge_id           the edge's id

and travels in three headers: X-Telemed-Edge, X-Telemed-Timestamp and X-Telemed-Signature (base64 of the
64-byte RFC 8032 signature). The cloud (cloud/dicomweb/auth.py) accepts a timestamp within 5 minutes of its
clock and each signature once, so a captured request cannot be replayed. Millisecond timestamps keep two
attempts of the same upload distinct (Ed25519 is deterministic: the same text gives the same signature).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proto import topics

EDGE_HEADER: Final = "X-Telemed-Edge"
TIMESTAMP_HEADER: Final = "X-Telemed-Timestamp"
SIGNATURE_HEADER: Final = "X-Telemed-Signature"


def signing_text(method: str, path: str, body_sha256: str, timestamp_ms: int, edge_id: str) -> bytes:
    """The exact bytes that are signed."""
    return "\n".join((method.upper(), path, body_sha256, str(timestamp_ms), edge_id)).encode("utf-8")


class RequestSigner:
    """Signs requests as `edge_id`; `clock` returns Unix seconds (injectable for tests)."""

    def __init__(self, edge_id: str, key: Ed25519PrivateKey, *, clock: Callable[[], float] = time.time) -> None:
        self.edge_id = topics.check_id(edge_id, "edge")
        self._key = key
        self._clock = clock

    def headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The authentication headers for one request."""
        timestamp_ms = int(self._clock() * 1000)
        digest = hashlib.sha256(body).hexdigest()
        signature = self._key.sign(signing_text(method, path, digest, timestamp_ms, self.edge_id))
        return {
            EDGE_HEADER: self.edge_id,
            TIMESTAMP_HEADER: str(timestamp_ms),
            SIGNATURE_HEADER: base64.b64encode(signature).decode("ascii"),
        }
