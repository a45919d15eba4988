"""Opaque session tokens: random, handed to the client once, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets

# 32 random bytes (256 bits): unguessable, so an unsalted fast hash is enough to keep a stolen
# sessions table from yielding usable tokens (OWASP Session Management Cheat Sheet, "Session ID entropy").
TOKEN_BYTES = 32


def new_token() -> str:
    """A fresh session token (URL-safe base64, valid in a header, a cookie and a WebSocket subprotocol)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """The SHA-256 of a token, the only form the database ever sees."""
    return hashlib.sha256(token.encode("ascii", errors="replace")).digest()
