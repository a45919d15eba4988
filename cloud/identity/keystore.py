"""The key check values in the database (`identity_keys`): a process's key ring must agree with them.

A replica started with another key file, or a key file lost and silently regenerated, would otherwise write
ciphertexts nobody else can read. Check values identify keys without revealing them (crypto.check_value).
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection, Connection

from cloud.identity.crypto import KeyRing
from cloud.identity.keys import KeySource

log = logging.getLogger(__name__)

_SELECT = "SELECT purpose, version, check_value FROM identity_keys"
_INSERT = "INSERT INTO identity_keys (purpose, version, check_value) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"


class KeyMismatchError(RuntimeError):
    """The key ring differs from the keys the database was written with."""


def compare(ring: KeyRing, registered: dict[tuple[str, int], bytes]) -> None:
    """KeyMismatchError if a registered key version is missing from the ring or is a different key."""
    for (purpose, version), value in sorted(registered.items()):
        mine = ring.check_values.get((purpose, version))
        if mine is None:
            raise KeyMismatchError(f"the identity key ring lacks {purpose} key version {version}, which the "
                                   "database uses: restore the key file (identity_keys.json) from backup")
        if mine != value:
            raise KeyMismatchError(f"{purpose} key version {version} differs from the one the database was "
                                   "written with: every replica must share one identity key file")


def _unregistered(ring: KeyRing, registered: dict[tuple[str, int], bytes]) -> list[tuple[str, int, bytes]]:
    return [(purpose, version, value) for (purpose, version), value in sorted(ring.check_values.items())
            if (purpose, version) not in registered]


async def registered_async(conn: AsyncConnection[Any]) -> dict[tuple[str, int], bytes]:
    cur = await conn.execute(_SELECT)
    return {(row[0], row[1]): bytes(row[2]) for row in await cur.fetchall()}


async def verified_ring(conn: AsyncConnection[Any], source: KeySource) -> KeyRing:
    """The source's ring after checking it against the database (creating both on first use)."""
    registered = await registered_async(conn)
    ring = source.ring(create=not registered)
    if any(key not in ring.check_values for key in registered):
        ring = source.refresh()  # another process rotated: our cached ring is behind the file
    compare(ring, registered)
    missing = _unregistered(ring, registered)
    if missing:
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT, missing)
        compare(ring, await registered_async(conn))  # a concurrent first start may have won
        log.info("identity.keys_registered versions=%s", ",".join(f"{p}:{v}" for p, v, _ in missing))
    return ring


def verified_ring_sync(conn: Connection[Any], source: KeySource) -> KeyRing:
    """`verified_ring` for the command line."""
    registered = {(row[0], row[1]): bytes(row[2]) for row in conn.execute(_SELECT).fetchall()}
    ring = source.ring(create=not registered)
    compare(ring, registered)
    register_sync(conn, ring)
    return ring


def register_sync(conn: Connection[Any], ring: KeyRing) -> None:
    """Record the check values of the ring's keys (after a rotation), verifying the existing ones."""
    registered = {(row[0], row[1]): bytes(row[2]) for row in conn.execute(_SELECT).fetchall()}
    compare(ring, registered)
    missing = _unregistered(ring, registered)
    if missing:
        with conn.cursor() as cur:
            cur.executemany(_INSERT, missing)
    compare(ring, {(row[0], row[1]): bytes(row[2]) for row in conn.execute(_SELECT).fetchall()})


class VerifiedKeys:
    """A process's key source, checked against the database once per ring (cheap to ask per request)."""

    def __init__(self, source: KeySource) -> None:
        self.source = source
        self._verified: KeyRing | None = None

    async def ring(self, conn: AsyncConnection[Any], *, refresh: bool = False) -> KeyRing:
        """The verified ring; `refresh` re-reads the key file first (a ciphertext named an unknown version)."""
        verified = self._verified
        if verified is not None and not refresh and self.source.ring() is verified:
            return verified
        if refresh:
            self.source.refresh()
        ring = await verified_ring(conn, self.source)
        self._verified = ring
        return ring
