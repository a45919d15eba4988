"""Sealing a finished recording for the cloud: AES-256-GCM in chunks, the key wrapped for the cloud only.

Container (version 1), read by cloud/recordings/sealed.py:

    b"TMREC" | 0x01 | header length (4 bytes, big endian) | header (JSON, UTF-8) | chunk | chunk | ...

The header names the recording (ids, times, media type), `chunk_bytes` and a random 7-byte `nonce_prefix`,
and carries the per-recording key wrapped for the cloud (`key`). Chunk i is
AES-256-GCM(key, nonce = prefix | i (4 bytes) | last (1 byte), plaintext chunk, AD = SHA-256(preamble and
header)): every chunk but the last holds exactly `chunk_bytes` of media, the last 0..chunk_bytes. This is
the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizar 2015): a chunk moved, dropped, duplicated
or cut off, or a changed header, fails authentication, and the cloud can decrypt on the fly while serving.

Key wrapping ("X25519-HKDF-SHA256-A256GCM"): the edge already holds the cloud's Ed25519 public key (its
config bundle); the Montgomery form of that key (RFC 7748 section 4.1 birational map, as libsodium's
crypto_sign_ed25519_pk_to_curve25519 and age's ssh-ed25519 recipients do) is an X25519 key only the cloud
can use. An ephemeral X25519 agreement with it, through HKDF-SHA256 (RFC 5869), gives the key that
encrypts the recording key. So the edge forgets the recording key as soon as the file is sealed, and a
sealed file waiting on the edge's disk for the uplink is unreadable there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC: Final = b"TMREC"
VERSION: Final = 1
PREAMBLE: Final = struct.Struct(">5sBI")
KEY_BYTES: Final = 32  # AES-256
TAG_BYTES: Final = 16
NONCE_PREFIX_BYTES: Final = 7
CHUNK_BYTES: Final = 1 << 20
WRAP_ALGORITHM: Final = "X25519-HKDF-SHA256-A256GCM"
WRAP_INFO: Final = b"telemed.recording.key-wrap.v1"
_P: Final = 2**255 - 19


def montgomery_public(ed25519: Ed25519PublicKey) -> X25519PublicKey:
    """The X25519 form of an Ed25519 public key: u = (1 + y) / (1 - y) mod p (RFC 7748 section 4.1)."""
    raw = ed25519.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)  # the top bit is the sign of x
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    return X25519PublicKey.from_public_bytes(u.to_bytes(32, "little"))


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def wrap_key(key: bytes, *, recipient: Ed25519PublicKey, recording_id: str) -> dict[str, str]:
    """`key` encrypted for the holder of `recipient`'s private key, bound to the recording."""
    cloud = montgomery_public(recipient)
    ephemeral = X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    kek = HKDF(hashes.SHA256(), KEY_BYTES, salt=epk + _raw(cloud), info=WRAP_INFO).derive(ephemeral.exchange(cloud))
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(kek).encrypt(nonce, key, recording_id.encode("utf-8"))
    return {"alg": WRAP_ALGORITHM, "epk": _b64(epk), "nonce": _b64(nonce), "sealed": _b64(sealed)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def chunk_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    """The 96-bit nonce of chunk `index`."""
    return prefix + struct.pack(">IB", index, 1 if last else 0)


@dataclass(frozen=True)
class SealedFile:
    """What sealing produced: the container's path, size and SHA-256 (of the container bytes)."""

    path: Path
    bytes: int
    sha256: str
    media_bytes: int


def _chunks(source: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """The source in chunks of `size`, each with whether it is the last (one chunk read ahead)."""
    current = source.read(size)
    while True:
        following = source.read(size) if len(current) == size else b""
        last = not following
        yield current, last
        if last:
            return
        current = following


def seal_file(plain: Path, sealed: Path, *, header: Mapping[str, Any], recipient: Ed25519PublicKey,
              chunk_bytes: int = CHUNK_BYTES) -> SealedFile:
    """Encrypt `plain` into `sealed` (written to a temporary name, fsynced, then renamed into place).

    `header` holds the recording's description and must include `recording_id`; the key and nonce
    prefix are generated here and the key is not kept.
    """
    recording_id = str(header["recording_id"])
    key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    prefix = secrets.token_bytes(NONCE_PREFIX_BYTES)
    document = dict(header) | {"chunk_bytes": chunk_bytes, "nonce_prefix": _b64(prefix),
                               "key": wrap_key(key, recipient=recipient, recording_id=recording_id)}
    text = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    head = PREAMBLE.pack(MAGIC, VERSION, len(text)) + text
    associated = hashlib.sha256(head).digest()
    aead = AESGCM(key)
    digest = hashlib.sha256(head)
    temporary = sealed.with_name(f".{sealed.name}.{secrets.token_hex(4)}.tmp")
    total = len(head)
    media = 0
    try:
        with plain.open("rb") as source, temporary.open("wb") as out:
            out.write(head)
            for index, (chunk, last) in enumerate(_chunks(source, chunk_bytes)):
                block = aead.encrypt(chunk_nonce(prefix, index, last), chunk, associated)
                out.write(block)
                digest.update(block)
                total += len(block)
                media += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, sealed)
    finally:
        temporary.unlink(missing_ok=True)
    del key, aead
    return SealedFile(path=sealed, bytes=total, sha256=digest.hexdigest(), media_bytes=media)


def read_header(path: Path) -> dict[str, Any]:
    """The header of a sealed container (its description; the key in it is only usable by the cloud)."""
    with path.open("rb") as handle:
        preamble = handle.read(PREAMBLE.size)
        if len(preamble) != PREAMBLE.size:
            raise ValueError(f"{path.name}: not a sealed recording")
        magic, version, length = PREAMBLE.unpack(preamble)
        if magic != MAGIC or version != VERSION or length > 64 * 1024:
            raise ValueError(f"{path.name}: not a version {VERSION} sealed recording")
        document = json.loads(handle.read(length))
    if not isinstance(document, dict):
        raise ValueError(f"{path.name}: malformed header")
    return document
