"""Password hashing with scrypt (RFC 7914), stdlib only.

Stored form: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` so the cost can be raised later without
invalidating existing hashes (verification reads the parameters from the stored string).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# RFC 7914 section 2 recommends r=8, p=1; n=2**14 is the interactive-login cost (about 16 MiB, ~50 ms).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
_SCHEME = "scrypt"
# hashlib's default maxmem (32 MiB) is just enough for n=2**14, r=8 (128*n*r = 16 MiB); leave headroom.
_MAXMEM = 64 * 1024 * 1024


class PasswordHashError(ValueError):
    """A stored password hash is not in our format."""


def hash_password(password: str) -> str:
    """A salted scrypt hash of `password` in the stored form."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join((_SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash (constant-time comparison of the digests)."""
    n, r, p, salt, expected = _parse(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def dummy_verify(password: str) -> None:
    """Spend the time of one verification, so unknown usernames answer as slowly as wrong passwords."""
    _scrypt(password, b"\0" * SALT_BYTES, SCRYPT_N, SCRYPT_R, SCRYPT_P)


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash uses weaker parameters than the current ones."""
    n, r, p, _, _ = _parse(stored)
    return (n, r, p) != (SCRYPT_N, SCRYPT_R, SCRYPT_P)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=HASH_BYTES)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise PasswordHashError("not a scrypt password hash")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise PasswordHashError("malformed scrypt password hash") from exc
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or not digest:
        raise PasswordHashError("invalid scrypt parameters")
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
