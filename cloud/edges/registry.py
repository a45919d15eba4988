"""The edge registry as ingest sees it: a cached proto.envelope.KeyLookup over the `edges` table.

The cache is refreshed from its source every `ttl_s` seconds and, at most once per `unknown_refresh_s`, when
an unknown edge shows up (a newly provisioned edge is recognised at once, and a flood of messages from a
bogus edge does not turn into a flood of queries). The ingest store also feeds it the rows it reads inside
each transaction (`observe`), so a revocation committed before that transaction is always honoured.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proto import keys
from proto.envelope import SignerKey

log = logging.getLogger(__name__)

EdgeState = Literal["active", "revoked"]


@dataclass(frozen=True, slots=True)
class EdgeRecord:
    """One row of `edges`."""

    edge_id: str
    site_id: str
    public_key: str  # base64 raw Ed25519 (proto.keys.public_to_text)
    status: EdgeState
    name: str | None = None
    created_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None


EdgeSource = Callable[[], Iterable[EdgeRecord]]


class EdgeRegistry:
    """Signer keys of registered edges; callable as a KeyLookup. Thread-safe."""

    def __init__(
        self,
        source: EdgeSource,
        *,
        ttl_s: float = 5.0,
        unknown_refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._unknown_refresh_s = unknown_refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, SignerKey] = {}
        self._parsed: dict[str, Ed25519PublicKey] = {}  # key text -> key, so refreshes do not re-parse
        self._refreshed_at: float | None = None

    def __call__(self, signer: str) -> SignerKey | None:
        return self.lookup(signer)

    def lookup(self, edge_id: str) -> SignerKey | None:
        """The edge's key and site (revoked edges included, flagged), or None if it is not registered."""
        now = self._clock()
        with self._lock:
            stale = self._refreshed_at is None or now - self._refreshed_at >= self._ttl_s
            unknown_may_refresh = (
                edge_id not in self._entries
                and (self._refreshed_at is None or now - self._refreshed_at >= self._unknown_refresh_s)
            )
        if stale or unknown_may_refresh:
            self.refresh()
        with self._lock:
            return self._entries.get(edge_id)

    def site_of(self, edge_id: str) -> str | None:
        entry = self.lookup(edge_id)
        return entry.site if entry is not None else None

    def refresh(self) -> None:
        """Reload every edge from the source."""
        records = list(self._source())
        with self._lock:
            self._entries = {r.edge_id: self._entry(r) for r in records if self._usable(r)}
            self._refreshed_at = self._clock()
        log.debug("edges.registry_refreshed edges=%d", len(records))

    def observe(self, asked: Iterable[str], records: Iterable[EdgeRecord]) -> None:
        """Fresh rows for the edges `asked` about: update them, forget those that have no row."""
        fresh = {r.edge_id: r for r in records}
        with self._lock:
            for edge_id in asked:
                record = fresh.get(edge_id)
                if record is None or not self._usable(record):
                    self._entries.pop(edge_id, None)
                else:
                    self._entries[edge_id] = self._entry(record)

    def _usable(self, record: EdgeRecord) -> bool:
        try:
            self._key(record.public_key)
        except keys.KeyFormatError:
            log.error("edges.bad_public_key edge=%s", record.edge_id)
            return False
        return True

    def _key(self, text: str) -> Ed25519PublicKey:
        key = self._parsed.get(text)
        if key is None:
            key = keys.public_from_text(text)
            self._parsed[text] = key
        return key

    def _entry(self, record: EdgeRecord) -> SignerKey:
        return SignerKey(self._key(record.public_key), site=record.site_id, revoked=record.status != "active")
