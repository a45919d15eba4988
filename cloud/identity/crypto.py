"""Field encryption and blind indexes for patient identity (pure: no I/O).

Ciphertext layout (one bytea column per field):

    format (1 byte, 0x01) | key version (4 bytes, big endian) | nonce (12 bytes) | AES-256-GCM ciphertext + tag (16)

AES-GCM with a 96-bit random nonce (NIST SP 800-38D section 8.2.2: random IVs are safe up to 2^32
encryptions per key; rotation keeps far below that). The associated data binds a ciphertext to its table,
column and row, so a ciphertext copied to another row or column fails authentication. Plaintexts are padded
to a multiple of 16 bytes (ISO/IEC 7816-4 padding: 0x80 then zeros) so lengths of names do not show.

Blind indexes are HMAC-SHA256 (RFC 2104) under a separate key, over purpose, site and the normalised value:
equal values at one site give equal indexes (exact lookup), and nothing links one person across sites.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT: Final = 0x01
KEY_BYTES: Final = 32  # AES-256; also the HMAC-SHA256 key size
NONCE_BYTES: Final = 12  # 96 bits, the GCM default (SP 800-38D section 5.2.1.1)
TAG_BYTES: Final = 16
PAD_BLOCK: Final = 16
_HEADER = struct.Struct(">BI")
_AD_LABEL: Final = b"telemed.identity.v1"
_CHECK_LABEL: Final = b"telemed identity key check v1"


class IdentityCryptoError(Exception):
    """Base of the field-encryption errors."""


class UnknownKeyVersionError(IdentityCryptoError):
    """A ciphertext names a key version the key ring does not hold."""

    def __init__(self, version: int) -> None:
        super().__init__(f"no identity key version {version} in the key ring")
        self.version = version


class DecryptionError(IdentityCryptoError):
    """A ciphertext is malformed, was moved to another row or column, or was tampered with."""


class KeyRingError(IdentityCryptoError):
    """A key ring is inconsistent (wrong key size, current version missing)."""


@dataclass(frozen=True)
class KeyRing:
    """Versioned keys: `data` keys encrypt fields, `index` keys compute blind indexes; new data uses `current_*`."""

    data: Mapping[int, bytes]
    current_data: int
    index: Mapping[int, bytes]
    current_index: int
    check_values: Mapping[tuple[str, int], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for purpose, keys, current in (("data", self.data, self.current_data),
                                       ("index", self.index, self.current_index)):
            if current not in keys:
                raise KeyRingError(f"the current {purpose} key version {current} is not in the ring")
            for version, key in keys.items():
                if version < 1 or version > 0xFFFF_FFFF:
                    raise KeyRingError(f"{purpose} key version out of range: {version}")
                if len(key) != KEY_BYTES:
                    raise KeyRingError(f"{purpose} key {version} is not {KEY_BYTES} bytes")
        values = {("data", v): check_value(k) for v, k in self.data.items()}
        values.update({("index", v): check_value(k) for v, k in self.index.items()})
        object.__setattr__(self, "check_values", values)

    @classmethod
    def generate(cls) -> KeyRing:
        """A fresh ring: one random data key and one random index key, both version 1."""
        return cls(data={1: secrets.token_bytes(KEY_BYTES)}, current_data=1,
                   index={1: secrets.token_bytes(KEY_BYTES)}, current_index=1)

    def rotated(self, *, data: bool = True, index: bool = False) -> KeyRing:
        """This ring plus a new random current data key (and index key); older versions stay for reading."""
        new_data, new_index = dict(self.data), dict(self.index)
        current_data, current_index = self.current_data, self.current_index
        if data:
            current_data = max(new_data) + 1
            new_data[current_data] = secrets.token_bytes(KEY_BYTES)
        if index:
            current_index = max(new_index) + 1
            new_index[current_index] = secrets.token_bytes(KEY_BYTES)
        return KeyRing(data=new_data, current_data=current_data, index=new_index, current_index=current_index)


def check_value(key: bytes) -> bytes:
    """A key check value: identifies a key without revealing it (HMAC of a fixed label, 16 bytes)."""
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest()[:16]


def associated_data(table: str, column: str, row_id: str) -> bytes:
    """The GCM associated data binding a ciphertext to one cell."""
    return b"\x1f".join((_AD_LABEL, table.encode(), column.encode(), row_id.encode("utf-8")))


def _pad(data: bytes) -> bytes:
    padded = data + b"\x80"
    return padded + b"\x00" * (-len(padded) % PAD_BLOCK)


def _unpad(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    if not stripped.endswith(b"\x80"):
        raise DecryptionError("bad padding")
    return stripped[:-1]


def encrypt_field(ring: KeyRing, plaintext: str, *, table: str, column: str, row_id: str) -> bytes:
    """Encrypt one field value under the ring's current data key."""
    version = ring.current_data
    nonce = secrets.token_bytes(NONCE_BYTES)
    header = _HEADER.pack(FORMAT, version)
    sealed = AESGCM(ring.data[version]).encrypt(
        nonce, _pad(plaintext.encode("utf-8")), header + associated_data(table, column, row_id))
    return header + nonce + sealed


def ciphertext_version(blob: bytes) -> int:
    """The key version a ciphertext was made with."""
    if len(blob) < _HEADER.size + NONCE_BYTES + TAG_BYTES or blob[0] != FORMAT:
        raise DecryptionError("not an identity ciphertext")
    version: int = _HEADER.unpack_from(blob)[1]
    return version


def decrypt_field(ring: KeyRing, blob: bytes, *, table: str, column: str, row_id: str) -> str:
    """Decrypt one field value; UnknownKeyVersionError or DecryptionError when it cannot be read."""
    version = ciphertext_version(blob)
    key = ring.data.get(version)
    if key is None:
        raise UnknownKeyVersionError(version)
    body = _HEADER.size + NONCE_BYTES
    header, nonce, sealed = blob[:_HEADER.size], blob[_HEADER.size:body], blob[body:]
    try:
        padded = AESGCM(key).decrypt(nonce, sealed, header + associated_data(table, column, row_id))
    except InvalidTag:
        raise DecryptionError(f"{table}.{column} of {row_id}: authentication failed") from None
    try:
        return _unpad(padded).decode("utf-8")
    except UnicodeDecodeError:
        raise DecryptionError("plaintext is not UTF-8") from None


def blind_index(ring: KeyRing, purpose: str, site_id: str, normalised: str, *, version: int | None = None) -> bytes:
    """HMAC-SHA256 of (purpose, site, normalised value) under an index key (default: the current one)."""
    key = ring.index.get(ring.current_index if version is None else version)
    if key is None:
        raise UnknownKeyVersionError(version if version is not None else ring.current_index)
    message = b"\x1f".join((purpose.encode(), site_id.encode("utf-8"), normalised.encode("utf-8")))
    return hmac.new(key, message, hashlib.sha256).digest()


def blind_indexes(ring: KeyRing, purpose: str, site_id: str, normalised: str) -> list[bytes]:
    """The value's index under every index key version (rows not yet re-indexed after a rotation still match)."""
    return [blind_index(ring, purpose, site_id, normalised, version=v) for v in sorted(ring.index)]
