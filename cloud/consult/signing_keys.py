"""Experts' report-signing keys: one Ed25519 key pair per expert, generated on first use.

The public key is stored in the clear (anyone verifying a report needs it); the private key is stored
encrypted with the identity key ring's AES-256-GCM field encryption (cloud/identity/crypto.py), its
associated data binding the ciphertext to the expert and the key fingerprint, so a key copied to another
expert's row does not decrypt. Identity key rotation keeps old versions in the ring, so older signing keys
stay readable.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud.api.auth.store import Conn
from cloud.identity.crypto import IdentityCryptoError, UnknownKeyVersionError, decrypt_field, encrypt_field
from cloud.identity.keys import KeyFileError
from cloud.identity.keystore import KeyMismatchError, VerifiedKeys
from proto import keys

log = logging.getLogger(__name__)

_TABLE = "expert_signing_keys"
_COLUMN = "private_key_enc"


class SigningKeyError(Exception):
    """An expert's signing key cannot be read (wrong identity keys, or a tampered row)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An expert's current private key and its fingerprint."""

    fingerprint: str
    private_key: Ed25519PrivateKey


def _row_id(expert_id: uuid.UUID, fingerprint: str) -> str:
    return f"{expert_id}/{fingerprint}"


class ReportKeys:
    """Per-expert signing keys, encrypted at rest under the identity key ring."""

    def __init__(self, keys: VerifiedKeys) -> None:
        self._keys = keys

    async def signing_key(self, conn: Conn, expert_id: uuid.UUID, *, now: dt.datetime) -> SigningKey:
        """The expert's current key, created (and stored) on first use."""
        found = await self._current(conn, expert_id)
        if found is not None:
            return found
        key = keys.generate()
        fingerprint = keys.fingerprint(key.public_key())
        try:
            ring = await self._keys.ring(conn)
        except (KeyFileError, KeyMismatchError) as exc:
            raise SigningKeyError(f"no usable identity keys to protect the signing key: {exc}") from None
        sealed = encrypt_field(ring, keys.private_to_text(key), table=_TABLE, column=_COLUMN,
                               row_id=_row_id(expert_id, fingerprint))
        await conn.execute(
            "INSERT INTO expert_signing_keys (fingerprint, expert_id, public_key, private_key_enc, created_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (expert_id) WHERE retired_at IS NULL DO NOTHING",
            (fingerprint, expert_id, keys.public_to_text(key.public_key()), sealed, now),
        )
        current = await self._current(conn, expert_id)  # a concurrent first use may have won: use its key
        if current is None:
            raise SigningKeyError("the signing key could not be stored")
        if current.fingerprint == fingerprint:
            log.info("consult.signing_key_created expert=%s fingerprint=%s", expert_id, fingerprint)
        return current

    async def _current(self, conn: Conn, expert_id: uuid.UUID) -> SigningKey | None:
        cur = await conn.execute(
            "SELECT fingerprint, public_key, private_key_enc FROM expert_signing_keys"
            " WHERE expert_id = %s AND retired_at IS NULL",
            (expert_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        fingerprint, public_text, sealed = row[0], row[1], bytes(row[2])
        text = await self._decrypt(conn, sealed, _row_id(expert_id, fingerprint))
        try:
            private = keys.private_from_text(text)
        except keys.KeyFormatError:
            raise SigningKeyError(f"signing key {fingerprint} is malformed") from None
        if keys.public_to_text(private.public_key()) != public_text:
            raise SigningKeyError(f"signing key {fingerprint} does not match its public key")
        return SigningKey(fingerprint=fingerprint, private_key=private)

    async def _decrypt(self, conn: Conn, sealed: bytes, row_id: str) -> str:
        try:
            try:
                ring = await self._keys.ring(conn)
                return decrypt_field(ring, sealed, table=_TABLE, column=_COLUMN, row_id=row_id)
            except UnknownKeyVersionError:
                # Another replica rotated the identity keys: re-read the ring once.
                ring = await self._keys.ring(conn, refresh=True)
                return decrypt_field(ring, sealed, table=_TABLE, column=_COLUMN, row_id=row_id)
        except (IdentityCryptoError, KeyFileError, KeyMismatchError) as exc:
            raise SigningKeyError(f"cannot decrypt the signing key: {exc}") from None


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """A stored public key; SigningKeyError when malformed."""
    try:
        return keys.public_from_text(text)
    except keys.KeyFormatError:
        raise SigningKeyError("malformed public key") from None
