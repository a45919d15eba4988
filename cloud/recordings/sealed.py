"""Opening the edges' sealed recordings (pure apart from reading a file object).

The container (written by edge/video/sealing.py; the layout is repeated here because cloud and edge share
no code but proto):

    b"TMREC" | 0x01 | header length (4 bytes, big endian) | header (JSON) | chunk | chunk | ...

Chunk i is AES-256-GCM(key, prefix | i (4 bytes) | last (1 byte), media, AD = SHA-256(preamble + header));
the recording key is in the header, wrapped for the cloud: X25519 between the header's ephemeral key and
the Montgomery form of the cloud's Ed25519 key (whose X25519 private scalar is SHA-512(seed)[:32], as
RFC 8032 section 5.1.5 derives the signing scalar), through HKDF-SHA256, then AES-256-GCM bound to the
recording id. Any change to header or chunks, reordering, dropping or truncation fails with SealError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC: Final = b"TMREC"
VERSION: Final = 1
PREAMBLE: Final = struct.Struct(">5sBI")
MAX_HEADER_BYTES: Final = 64 * 1024
KEY_BYTES: Final = 32
TAG_BYTES: Final = 16
NONCE_PREFIX_BYTES: Final = 7
MAX_CHUNK_BYTES: Final = 16 << 20
WRAP_ALGORITHM: Final = "X25519-HKDF-SHA256-A256GCM"
WRAP_INFO: Final = b"telemed.recording.key-wrap.v1"


class SealError(Exception):
    """Not a sealed recording, not for this cloud key, or tampered with."""


@dataclass(frozen=True)
class SealedHeader:
    """A container's header: the recording's description and how its chunks are laid out."""

    fields: dict[str, Any]
    associated: bytes  # SHA-256 of preamble and header: the AD of every chunk
    size: int  # bytes of preamble and header
    chunk_bytes: int
    nonce_prefix: bytes

    @property
    def recording_id(self) -> str:
        return str(self.fields.get("recording_id", ""))


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise SealError(f"header: {name} missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"header: {name} is not base64") from None


def read_header(source: BinaryIO) -> SealedHeader:
    """Read and check the preamble and header; the source is left at the first chunk."""
    preamble = source.read(PREAMBLE.size)
    if len(preamble) != PREAMBLE.size:
        raise SealError("too short for a sealed recording")
    magic, version, length = PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise SealError("not a sealed recording")
    if version != VERSION:
        raise SealError(f"sealed recording version {version} is not supported")
    if length > MAX_HEADER_BYTES:
        raise SealError("header too large")
    text = source.read(length)
    if len(text) != length:
        raise SealError("header cut short")
    try:
        fields = json.loads(text)
    except ValueError:
        raise SealError("header is not JSON") from None
    if not isinstance(fields, dict):
        raise SealError("header is not a JSON object")
    chunk_bytes = fields.get("chunk_bytes")
    if not isinstance(chunk_bytes, int) or isinstance(chunk_bytes, bool) or not 0 < chunk_bytes <= MAX_CHUNK_BYTES:
        raise SealError("header: chunk_bytes out of range")
    prefix = _b64(fields.get("nonce_prefix"), "nonce_prefix")
    if len(prefix) != NONCE_PREFIX_BYTES:
        raise SealError("header: nonce_prefix must be 7 bytes")
    return SealedHeader(fields=fields, associated=hashlib.sha256(preamble + text).digest(),
                        size=len(preamble) + length, chunk_bytes=chunk_bytes, nonce_prefix=prefix)


def cloud_agreement_key(cloud_key: Ed25519PrivateKey) -> X25519PrivateKey:
    """The X25519 private key matching the Montgomery form of the cloud's Ed25519 public key."""
    seed = cloud_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
    return X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32])  # X25519 clamps it


def unwrap_key(header: SealedHeader, cloud_key: Ed25519PrivateKey) -> bytes:
    """The recording key from the header; SealError if it was not wrapped for this cloud key or was altered."""
    wrapped = header.fields.get("key")
    if not isinstance(wrapped, dict) or wrapped.get("alg") != WRAP_ALGORITHM:
        raise SealError(f"header: key must be wrapped with {WRAP_ALGORITHM}")
    epk = _b64(wrapped.get("epk"), "key.epk")
    nonce = _b64(wrapped.get("nonce"), "key.nonce")
    sealed = _b64(wrapped.get("sealed"), "key.sealed")
    if len(epk) != 32 or len(nonce) != 12:
        raise SealError("header: malformed wrapped key")
    ours = cloud_agreement_key(cloud_key)
    mine = ours.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        shared = ours.exchange(X25519PublicKey.from_public_bytes(epk))
    except ValueError:
        raise SealError("header: bad ephemeral key") from None
    kek = HKDF(hashes.SHA256(), KEY_BYTES, salt=epk + mine, info=WRAP_INFO).derive(shared)
    try:
        key = AESGCM(kek).decrypt(nonce, sealed, header.recording_id.encode("utf-8"))
    except InvalidTag:
        raise SealError("the recording key is not wrapped for this cloud key, or was altered") from None
    if len(key) != KEY_BYTES:
        raise SealError("the recording key has the wrong size")
    return key


def decrypt_chunks(source: BinaryIO, header: SealedHeader, key: bytes) -> Iterator[bytes]:
    """The media, chunk by chunk, from a source positioned after the header; SealError on any tampering.

    Each chunk is authenticated before it is yielded; a container cut after a chunk that is not marked
    last fails at the end, so a caller streaming to a client must treat SealError as a broken download.
    """
    aead = AESGCM(key)
    block = header.chunk_bytes + TAG_BYTES
    current = source.read(block)
    index = 0
    while True:
        following = source.read(block) if len(current) == block else b""
        last = not following
        if len(current) < TAG_BYTES:
            raise SealError("recording cut short")
        nonce = header.nonce_prefix + struct.pack(">IB", index, 1 if last else 0)
        try:
            yield aead.decrypt(nonce, current, header.associated)
        except InvalidTag:
            raise SealError(f"chunk {index} failed authentication") from None
        if last:
            return
        current = following
        index += 1
