"""Ed25519 signing keys of edges and the cloud: generation and text serialisation.

Keys travel in config bundles and the cloud's edge registry as base64 of the raw 32-byte keys, and
are named in logs by a short fingerprint, never printed whole.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat


class KeyFormatError(ValueError):
    """Key text that is not a base64 raw Ed25519 key."""


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_to_text(key: Ed25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()


def public_to_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _raw(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise KeyFormatError("key is not base64") from None
    if len(raw) != 32:
        raise KeyFormatError(f"an Ed25519 key has 32 bytes, got {len(raw)}")
    return raw


def private_from_text(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(_raw(text))


def public_from_text(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(_raw(text))


def fingerprint(key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key (first 16 hex digits of SHA-256 of the raw key)."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def write_private(path: Path, key: Ed25519PrivateKey) -> None:
    """Write a private key readable by its owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_to_text(key) + "\n")


def read_private(path: Path) -> Ed25519PrivateKey:
    return private_from_text(path.read_text())
