"""The audit chain, pure: canonical encoding of an entry, SHA-256 chaining and verification (no I/O).

Each entry commits to its predecessor: `entry_hash = SHA-256(prev_hash || canonical JSON of the entry)`,
starting from 32 zero bytes. Changing, deleting, inserting or reordering any entry breaks the link of the
entry itself or of the one after it; truncating the tail leaves the recorded head pointing past the end.

Canonical JSON (version 1): UTF-8, object keys sorted, no insignificant whitespace, non-ASCII characters as
themselves, and numbers in plain decimal notation (floats as the exact decimal of their shortest repr, without
an exponent; -0.0 as 0.0). That form reads back unchanged from a PostgreSQL `jsonb` column, whose numeric
type keeps the decimal digits but drops exponents, so an entry hashes the same before it is stored and after.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

GENESIS: Final = bytes(32)
HASH_BYTES: Final = 32
ENCODING_VERSION: Final = 1


class AuditEncodingError(ValueError):
    """A value cannot be part of an audit entry (not JSON, NaN, a NUL character, a naive time...)."""


@dataclass(frozen=True, slots=True)
class Draft:
    """An entry before it is placed in the chain: who did what to which patient or entity."""

    username: str
    event: str
    user_id: uuid.UUID | None = None
    patient_id: str | None = None
    entity: str | None = None
    entity_id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """An entry at its place: sequence number (`access_log.id`) and time, plus the draft's fields."""

    seq: int
    at: dt.datetime
    draft: Draft


@dataclass(frozen=True, slots=True)
class SealedEntry:
    """An entry with the hash of its predecessor and its own."""

    entry: Entry
    prev_hash: bytes
    entry_hash: bytes


Problem = Literal["content", "link", "unsealed", "order", "head", "anchor"]


@dataclass(frozen=True, slots=True)
class Break:
    """The first place the chain does not hold: which entry (seq) and what is wrong with it."""

    seq: int | None
    problem: Problem
    message: str


@dataclass(frozen=True, slots=True)
class Head:
    """The last sealed entry as recorded (in `audit_chain_head`, or externally as an anchor)."""

    seq: int
    entry_hash: bytes


# --- canonical encoding ---------------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """The canonical JSON text of a JSON-like value (the module docstring says which form)."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, Mapping):
        keys = list(value)
        if not all(isinstance(key, str) for key in keys):
            raise AuditEncodingError("object keys must be strings")
        out.append("{")
        for index, key in enumerate(sorted(keys)):
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise AuditEncodingError(f"not a JSON value: {type(value).__name__}")


def _string(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; lone surrogates are not UTF-8.
    if "\x00" in text:
        raise AuditEncodingError("text must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuditEncodingError("text is not valid Unicode") from exc
    return json.dumps(text, ensure_ascii=False)


def _float(number: float) -> str:
    if not math.isfinite(number):
        raise AuditEncodingError("numbers must be finite")
    if number == 0.0:
        return "0.0"  # PostgreSQL numeric has no negative zero
    return format(decimal.Decimal(repr(number)), "f")


def iso_time(at: dt.datetime) -> str:
    """An entry time as RFC 3339 UTC with microseconds (PostgreSQL's timestamptz precision)."""
    if at.tzinfo is None:
        raise AuditEncodingError("entry times must carry a UTC offset")
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_document(entry: Entry) -> dict[str, Any]:
    """The JSON document an entry is hashed as."""
    draft = entry.draft
    return {
        "v": ENCODING_VERSION,
        "seq": entry.seq,
        "at": iso_time(entry.at),
        "user_id": str(draft.user_id) if draft.user_id is not None else None,
        "username": draft.username,
        "event": draft.event,
        "patient_id": draft.patient_id,
        "entity": draft.entity,
        "entity_id": draft.entity_id,
        "detail": dict(draft.detail),
        "ip": draft.ip,
    }


def encode_entry(entry: Entry) -> bytes:
    """The canonical bytes of an entry (what its hash commits to after the previous hash)."""
    return canonical_json(entry_document(entry)).encode("utf-8")


def entry_hash(prev_hash: bytes, entry: Entry) -> bytes:
    """SHA-256(prev_hash || canonical JSON of the entry)."""
    if len(prev_hash) != HASH_BYTES:
        raise AuditEncodingError("a previous hash is 32 bytes")
    return hashlib.sha256(prev_hash + encode_entry(entry)).digest()


def seal(prev_hash: bytes, entries: Iterable[Entry]) -> list[SealedEntry]:
    """Chain `entries` (in order) after the entry whose hash is `prev_hash`."""
    sealed: list[SealedEntry] = []
    for entry in entries:
        digest = entry_hash(prev_hash, entry)
        sealed.append(SealedEntry(entry=entry, prev_hash=prev_hash, entry_hash=digest))
        prev_hash = digest
    return sealed


# --- verification ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A row as read back for verification: the entry and its stored hashes (None when never sealed)."""

    entry: Entry
    prev_hash: bytes | None
    entry_hash: bytes | None


@dataclass(slots=True)
class ChainVerifier:
    """Walks stored entries in sequence order, remembering the first break (fed row by row: O(1) memory)."""

    anchor: Head | None = None  # an entry (seq, hash) recorded outside the database earlier
    prev_hash: bytes = GENESIS
    last_seq: int | None = None
    checked: int = 0
    anchor_seen: bool = False
    broken: Break | None = None

    def feed(self, stored: StoredEntry) -> Break | None:
        """Check the next stored entry; the first break found so far (None while the chain holds)."""
        if self.broken is not None:
            return self.broken
        seq = stored.entry.seq
        if self.last_seq is not None and seq <= self.last_seq:
            return self._break(seq, "order", f"entry {seq} follows entry {self.last_seq}")
        if stored.prev_hash is None or stored.entry_hash is None:
            return self._break(seq, "unsealed", f"entry {seq} carries no hashes inside the chain")
        if stored.prev_hash != self.prev_hash:
            return self._break(seq, "link", f"entry {seq} does not follow its predecessor: an entry before it "
                                            "was deleted, inserted, reordered or its hash changed")
        try:
            expected = entry_hash(stored.prev_hash, stored.entry)
        except AuditEncodingError as exc:
            return self._break(seq, "content", f"entry {seq} cannot be encoded: {exc}")
        if expected != stored.entry_hash:
            return self._break(seq, "content", f"entry {seq} was modified after it was sealed")
        if self.anchor is not None and seq == self.anchor.seq:
            if stored.entry_hash != self.anchor.entry_hash:
                return self._break(seq, "anchor", f"entry {seq} does not have the anchored hash: the chain "
                                                  "was rewritten up to here")
            self.anchor_seen = True
        self.prev_hash = stored.entry_hash
        self.last_seq = seq
        self.checked += 1
        return None

    def finish(self, head: Head | None) -> Break | None:
        """After the last entry: the recorded head must match the walk, and the anchor must have been passed."""
        if self.broken is not None:
            return self.broken
        if head is None:
            if self.last_seq is not None:
                return self._break(None, "head", "the chain head record is missing")
        elif self.last_seq is None:
            return self._break(head.seq, "head", f"the head names entry {head.seq} but the log is empty")
        elif (head.seq, head.entry_hash) != (self.last_seq, self.prev_hash):
            return self._break(head.seq, "head", f"the head names entry {head.seq} but the chain ends at "
                                                 f"{self.last_seq}: entries were removed from or added to the end")
        if self.anchor is not None and not self.anchor_seen:
            return self._break(self.anchor.seq, "anchor", f"the anchored entry {self.anchor.seq} is missing")
        return None

    def _break(self, seq: int | None, problem: Problem, message: str) -> Break:
        self.broken = Break(seq=seq, problem=problem, message=message)
        return self.broken


def verify(stored: Iterable[StoredEntry], head: Head | None, *, anchor: Head | None = None) -> Break | None:
    """The first break of a whole chain given in sequence order, or None when it holds."""
    verifier = ChainVerifier(anchor=anchor)
    for item in stored:
        if verifier.feed(item) is not None:
            break
    return verifier.finish(head)
