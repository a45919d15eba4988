"""The audit chain without a database: canonical encoding, the hash formula, and detection of every tampering."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.audit.chain import (
    GENESIS,
    AuditEncodingError,
    ChainVerifier,
    Draft,
    Entry,
    Head,
    SealedEntry,
    StoredEntry,
    canonical_json,
    encode_entry,
    entry_hash,
    seal,
    verify,
)

T0 = dt.datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=dt.UTC)
USER = uuid.UUID("00000000-0000-4000-8000-000000000001")


def entry(seq: int, event: str = "vitals.latest", **detail: object) -> Entry:
    return Entry(seq=seq, at=T0 + dt.timedelta(seconds=seq), draft=Draft(
        username="doc-a", event=event, user_id=USER, patient_id=f"P-{seq % 3}", detail=detail, ip="10.0.0.1"))


def chain_of(n: int) -> list[SealedEntry]:
    return seal(GENESIS, [entry(seq, count=seq) for seq in range(1, n + 1)])


def stored(sealed: list[SealedEntry]) -> list[StoredEntry]:
    return [StoredEntry(entry=s.entry, prev_hash=s.prev_hash, entry_hash=s.entry_hash) for s in sealed]


def head_of(sealed: list[SealedEntry]) -> Head:
    return Head(seq=sealed[-1].entry.seq, entry_hash=sealed[-1].entry_hash)


# --- canonical encoding ---------------------------------------------------------------------------------


def test_canonical_json_sorts_keys_without_whitespace_and_keeps_unicode() -> None:
    assert canonical_json({"b": [1, True, None], "a": "病人", "c": {"z": 1, "y": "x\ny"}}) == (
        '{"a":"病人","b":[1,true,null],"c":{"y":"x\\ny","z":1}}')


@pytest.mark.parametrize(("number", "text"), [
    (1.0, "1.0"), (0.1, "0.1"), (-2.5, "-2.5"), (1e16, "10000000000000000"), (1.5e-7, "0.00000015"),
    (-0.0, "0.0"), (0.0, "0.0"), (123456789.125, "123456789.125"), (10, "10"), (-(2**70), str(-(2**70))),
])
def test_numbers_are_plain_decimals_so_jsonb_returns_the_same_text(number: float, text: str) -> None:
    assert canonical_json(number) == text


def test_float_encoding_survives_a_text_round_trip() -> None:
    """What PostgreSQL hands back (the decimal text, parsed by json.loads) encodes identically."""
    for number in (1e16, 1.5e-7, 2.5e300, 0.30000000000000004, 7.0):
        text = canonical_json(number)
        assert canonical_json(json.loads(text)) == text


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"k": "a\x00b"}, {1: "x"}, {"t": dt.date(2024, 1, 1)},
                                 "\ud800"])
def test_values_postgres_cannot_store_or_json_cannot_express_are_refused(bad: object) -> None:
    with pytest.raises(AuditEncodingError):
        canonical_json(bad)


def test_naive_entry_time_is_refused() -> None:
    naive = dataclasses.replace(entry(1), at=dt.datetime(2024, 5, 1, 8, 0))
    with pytest.raises(AuditEncodingError):
        encode_entry(naive)


def test_entry_hash_is_sha256_of_previous_hash_and_canonical_entry() -> None:
    first = entry(1, kind="heart_rate")
    expected_document = (
        '{"at":"2024-05-01T08:00:01.123456Z","detail":{"kind":"heart_rate"},"entity":null,"entity_id":null,'
        '"event":"vitals.latest","ip":"10.0.0.1","patient_id":"P-1","seq":1,'
        f'"user_id":"{USER}","username":"doc-a","v":1}}'
    ).encode()
    assert encode_entry(first) == expected_document
    assert entry_hash(GENESIS, first) == hashlib.sha256(bytes(32) + expected_document).digest()
    second = entry(2)
    sealed = seal(GENESIS, [first, second])
    assert sealed[1].prev_hash == sealed[0].entry_hash
    assert sealed[1].entry_hash == hashlib.sha256(sealed[0].entry_hash + encode_entry(second)).digest()


def test_times_in_other_zones_encode_as_the_same_utc_instant() -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    local = dataclasses.replace(entry(1), at=T0.astimezone(shanghai) + dt.timedelta(seconds=1))
    assert encode_entry(local) == encode_entry(entry(1))


# --- verification ---------------------------------------------------------------------------------------


def test_an_untouched_chain_verifies() -> None:
    sealed = chain_of(6)
    assert verify(stored(sealed), head_of(sealed)) is None
    assert verify([], None) is None


def test_a_changed_field_is_reported_at_that_entry() -> None:
    rows = stored(chain_of(6))
    changed = dataclasses.replace(rows[3].entry.draft, patient_id="P-other")
    rows[3] = dataclasses.replace(rows[3], entry=dataclasses.replace(rows[3].entry, draft=changed))
    broken = verify(rows, Head(6, rows[-1].entry_hash or b""))
    assert broken is not None
    assert (broken.seq, broken.problem) == (4, "content")


def test_a_deleted_entry_breaks_the_link_of_the_next_one() -> None:
    sealed = chain_of(6)
    rows = stored(sealed)
    del rows[2]
    broken = verify(rows, head_of(sealed))
    assert broken is not None
    assert (broken.seq, broken.problem) == (4, "link")


def test_swapped_entries_are_detected() -> None:
    sealed = chain_of(6)
    rows = stored(sealed)
    # Swap the contents of entries 2 and 3 while keeping their sequence numbers (an "UPDATE ... SET id" swap).
    two, three = rows[1], rows[2]
    rows[1] = dataclasses.replace(three, entry=dataclasses.replace(three.entry, seq=2))
    rows[2] = dataclasses.replace(two, entry=dataclasses.replace(two.entry, seq=3))
    broken = verify(rows, head_of(sealed))
    assert broken is not None
    assert broken.seq == 2


def test_a_rehashed_forgery_still_breaks_the_next_link() -> None:
    """An attacker who recomputes the changed entry's own hash breaks the link of its successor."""
    sealed = chain_of(5)
    rows = stored(sealed)
    forged_entry = dataclasses.replace(rows[1].entry, draft=dataclasses.replace(rows[1].entry.draft, event="none"))
    rows[1] = StoredEntry(forged_entry, rows[1].prev_hash, entry_hash(rows[1].prev_hash or GENESIS, forged_entry))
    broken = verify(rows, head_of(sealed))
    assert broken is not None
    assert (broken.seq, broken.problem) == (3, "link")


def test_truncating_the_tail_is_caught_by_the_head() -> None:
    sealed = chain_of(6)
    broken = verify(stored(sealed)[:4], head_of(sealed))
    assert broken is not None
    assert broken.problem == "head"
    missing_head = verify(stored(sealed), None)
    assert missing_head is not None
    assert missing_head.problem == "head"


def test_an_anchor_catches_a_chain_rewritten_from_scratch() -> None:
    original = chain_of(6)
    anchor = Head(seq=3, entry_hash=original[2].entry_hash)
    rewritten = seal(GENESIS, [entry(seq, count=seq) if seq != 2 else entry(2, count=99) for seq in range(1, 7)])
    assert verify(stored(rewritten), head_of(rewritten)) is None  # self-consistent...
    broken = verify(stored(rewritten), head_of(rewritten), anchor=anchor)  # ...but not what was anchored
    assert broken is not None
    assert (broken.seq, broken.problem) == (3, "anchor")
    assert verify(stored(original), head_of(original), anchor=anchor) is None
    gone = verify(stored(original)[:2], Head(2, original[1].entry_hash), anchor=anchor)
    assert gone is not None
    assert gone.problem == "anchor"


def test_an_entry_without_hashes_inside_the_chain_is_a_break() -> None:
    rows = stored(chain_of(4))
    rows[1] = dataclasses.replace(rows[1], prev_hash=None, entry_hash=None)
    broken = verify(rows, Head(4, rows[-1].entry_hash or b""))
    assert broken is not None
    assert (broken.seq, broken.problem) == (2, "unsealed")


def test_the_verifier_stops_at_the_first_break_and_counts_what_held() -> None:
    rows = stored(chain_of(5))
    rows[1] = dataclasses.replace(rows[1], entry_hash=bytes(32))
    verifier = ChainVerifier()
    results = [verifier.feed(row) for row in rows]
    assert results[0] is None
    assert all(r is not None and r.seq == 2 for r in results[1:])
    assert verifier.checked == 1


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_single_tampering_of_a_random_chain_is_detected(data: st.DataObject) -> None:
    size = data.draw(st.integers(min_value=2, max_value=12))
    sealed = seal(GENESIS, [entry(seq, value=data.draw(st.floats(allow_nan=False, allow_infinity=False)))
                            for seq in range(1, size + 1)])
    rows = stored(sealed)
    head = head_of(sealed)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    action = data.draw(st.sampled_from(["edit_detail", "edit_user", "delete", "swap", "truncate"]))
    if action == "edit_detail":
        draft = dataclasses.replace(rows[index].entry.draft, detail={"value": "changed"})
        rows[index] = dataclasses.replace(rows[index], entry=dataclasses.replace(rows[index].entry, draft=draft))
    elif action == "edit_user":
        draft = dataclasses.replace(rows[index].entry.draft, username="someone-else")
        rows[index] = dataclasses.replace(rows[index], entry=dataclasses.replace(rows[index].entry, draft=draft))
    elif action == "delete":
        del rows[index]
    elif action == "swap":
        other = (index + 1) % size
        rows[index], rows[other] = rows[other], rows[index]
    else:
        rows = rows[:index] if index else rows[:1]
        if len(rows) == size:
            rows = rows[:-1]
    assert verify(rows, head) is not None
