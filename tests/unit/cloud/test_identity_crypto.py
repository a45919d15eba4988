"""Field encryption and blind indexes without a database: binding, tampering, versions, rotation, padding."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud.identity.crypto import (
    FORMAT,
    DecryptionError,
    KeyRing,
    KeyRingError,
    UnknownKeyVersionError,
    associated_data,
    blind_index,
    blind_indexes,
    check_value,
    ciphertext_version,
    decrypt_field,
    encrypt_field,
)
from cloud.identity.fields import Identity
from cloud.identity.record import needs_rekey, open_identity, seal_identity

DATA_KEY = bytes(range(32))
INDEX_KEY = bytes(range(32, 64))
RING = KeyRing(data={1: DATA_KEY}, current_data=1, index={1: INDEX_KEY}, current_index=1)
CELL = {"table": "patients", "column": "name_enc", "row_id": "P-A1"}


def test_a_field_round_trips_and_carries_its_key_version() -> None:
    blob = encrypt_field(RING, "张三", **CELL)
    assert "张三".encode() not in blob
    assert blob[0] == FORMAT
    assert ciphertext_version(blob) == 1
    assert decrypt_field(RING, blob, **CELL) == "张三"


def test_ciphertext_is_standard_aes_gcm_over_the_documented_layout() -> None:
    """Anyone holding the key can decrypt with plain AESGCM: header | nonce | ciphertext+tag, header in the AD."""
    blob = encrypt_field(RING, "李四", **CELL)
    header, nonce, sealed = blob[:5], blob[5:17], blob[17:]
    assert header == struct.pack(">BI", FORMAT, 1)
    padded = AESGCM(DATA_KEY).decrypt(nonce, sealed, header + associated_data("patients", "name_enc", "P-A1"))
    assert padded == "李四".encode() + b"\x80" + b"\x00" * (16 - len("李四".encode()) - 1)


def test_nonces_are_fresh_so_equal_values_encrypt_differently() -> None:
    first, second = encrypt_field(RING, "王五", **CELL), encrypt_field(RING, "王五", **CELL)
    assert first != second
    assert first[5:17] != second[5:17]


@pytest.mark.parametrize("moved_to", [
    {"table": "patients", "column": "name_enc", "row_id": "P-A2"},  # another patient's row
    {"table": "patients", "column": "phone_enc", "row_id": "P-A1"},  # another column of the same row
    {"table": "users", "column": "name_enc", "row_id": "P-A1"},  # another table
])
def test_a_ciphertext_moved_to_another_cell_does_not_decrypt(moved_to: dict[str, str]) -> None:
    blob = encrypt_field(RING, "张三", **CELL)
    with pytest.raises(DecryptionError):
        decrypt_field(RING, blob, **moved_to)


def test_any_flipped_bit_is_detected() -> None:
    blob = encrypt_field(RING, "张三", **CELL)
    for index in range(5, len(blob)):  # nonce, ciphertext and tag (the header is checked by the next test)
        tampered = bytearray(blob)
        tampered[index] ^= 0x01
        with pytest.raises(DecryptionError):
            decrypt_field(RING, bytes(tampered), **CELL)


def test_a_relabelled_key_version_is_refused() -> None:
    ring = RING.rotated()
    blob = encrypt_field(ring, "张三", **CELL)
    relabelled = struct.pack(">BI", FORMAT, 1) + blob[5:]
    with pytest.raises(DecryptionError):
        decrypt_field(ring, relabelled, **CELL)


def test_an_unknown_key_version_and_garbage_are_typed_errors() -> None:
    newer = RING.rotated()
    blob = encrypt_field(newer, "张三", **CELL)
    with pytest.raises(UnknownKeyVersionError) as caught:
        decrypt_field(RING, blob, **CELL)
    assert caught.value.version == 2
    with pytest.raises(DecryptionError):
        decrypt_field(RING, b"\x02" + blob[1:], **CELL)
    with pytest.raises(DecryptionError):
        decrypt_field(RING, blob[:20], **CELL)


def test_padding_hides_the_length_of_short_names() -> None:
    lengths = {len(encrypt_field(RING, name, **CELL)) for name in ("王", "张三", "欧阳明", "司马相如")}
    assert lengths == {1 + 4 + 12 + 16 + 16}


def test_rotation_adds_a_current_key_and_keeps_the_old_ones_readable() -> None:
    old_blob = encrypt_field(RING, "张三", **CELL)
    rotated = RING.rotated(index=True)
    assert (rotated.current_data, rotated.current_index) == (2, 2)
    assert rotated.data[1] == DATA_KEY
    assert rotated.data[2] != DATA_KEY
    assert decrypt_field(rotated, old_blob, **CELL) == "张三"
    assert ciphertext_version(encrypt_field(rotated, "张三", **CELL)) == 2


def test_blind_index_is_hmac_sha256_over_purpose_site_and_value() -> None:
    expected = hmac.new(INDEX_KEY, b"national_id\x1fsite-a\x1f11010519491231002X", hashlib.sha256).digest()
    assert blind_index(RING, "national_id", "site-a", "11010519491231002X") == expected


def test_blind_indexes_separate_sites_purposes_and_keys() -> None:
    value = "13800138000"
    at_a = blind_index(RING, "phone", "site-a", value)
    assert at_a == blind_index(RING, "phone", "site-a", value)
    assert at_a != blind_index(RING, "phone", "site-b", value)
    assert at_a != blind_index(RING, "national_id", "site-a", value)
    rotated = RING.rotated(data=False, index=True)
    assert blind_index(rotated, "phone", "site-a", value) != at_a
    assert blind_indexes(rotated, "phone", "site-a", value) == [at_a, blind_index(rotated, "phone", "site-a", value)]


def test_check_values_identify_keys_without_revealing_them() -> None:
    assert RING.check_values[("data", 1)] == check_value(DATA_KEY)
    assert check_value(DATA_KEY) != check_value(INDEX_KEY)
    assert DATA_KEY not in check_value(DATA_KEY)
    assert len(check_value(DATA_KEY)) == 16


@pytest.mark.parametrize(("data", "current"), [({1: b"short"}, 1), ({1: DATA_KEY}, 2), ({0: DATA_KEY}, 0)])
def test_inconsistent_rings_are_refused(data: dict[int, bytes], current: int) -> None:
    with pytest.raises(KeyRingError):
        KeyRing(data=data, current_data=current, index={1: INDEX_KEY}, current_index=1)


def test_a_generated_ring_has_random_distinct_keys() -> None:
    first, second = KeyRing.generate(), KeyRing.generate()
    assert first.data[1] != second.data[1]
    assert first.data[1] != first.index[1]


# --- whole identities ------------------------------------------------------------------------------------


PERSON = Identity(name="张三", national_id="11010519491231002X", phone="13800138000", sex="female",
                  birth_date=dt.date(1949, 12, 31))


def test_an_identity_seals_to_ciphertexts_and_indexes_and_opens_again() -> None:
    stored = seal_identity(RING, patient_id="P-A1", site_id="site-a", identity=PERSON)
    assert stored.identity_key_version == 1
    assert stored.index_key_version == 1
    assert (stored.sex, stored.birth_year) == ("female", 1949)
    assert stored.national_id_bidx == blind_index(RING, "national_id", "site-a", "11010519491231002X")
    for blob in (stored.name_enc, stored.national_id_enc, stored.phone_enc, stored.birth_date_enc):
        assert blob is not None
        assert b"11010519491231002X" not in blob
    assert open_identity(RING, patient_id="P-A1", stored=stored) == PERSON


def test_a_sealed_identity_cannot_be_opened_as_another_patient() -> None:
    stored = seal_identity(RING, patient_id="P-A1", site_id="site-a", identity=PERSON)
    with pytest.raises(DecryptionError):
        open_identity(RING, patient_id="P-A2", stored=stored)


def test_an_empty_identity_stores_no_ciphertext_and_no_key_version() -> None:
    stored = seal_identity(RING, patient_id="P-A1", site_id="site-a", identity=Identity())
    assert stored.identity_key_version is None
    assert stored.index_key_version is None
    assert open_identity(RING, patient_id="P-A1", stored=stored) == Identity()


def test_rows_under_older_keys_need_rekeying() -> None:
    stored = seal_identity(RING, patient_id="P-A1", site_id="site-a", identity=PERSON)
    assert not needs_rekey(RING, stored)
    assert needs_rekey(RING.rotated(), stored)
    assert needs_rekey(RING.rotated(data=False, index=True), stored)
