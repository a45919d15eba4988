"""A patient's identity to and from its stored columns (pure): encrypted fields, blind indexes, plain fields.

Stored in `patients`: `name_enc`, `national_id_enc`, `phone_enc`, `birth_date_enc` (AES-GCM, bound to the
row), `identity_key_version`; `national_id_bidx`, `phone_bidx` (HMAC, bound to the site), `index_key_version`;
and in plain text the sex and the birth year, which clinical queries and age need and which identify nobody
on their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from cloud.identity.crypto import KeyRing, blind_index, decrypt_field, encrypt_field
from cloud.identity.fields import Identity, Sex

TABLE: Final = "patients"
ENCRYPTED_FIELDS: Final = ("name", "national_id", "phone", "birth_date")
INDEXED_FIELDS: Final = ("national_id", "phone")


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    """The identity columns of one patient row, as written to or read from the database."""

    name_enc: bytes | None
    national_id_enc: bytes | None
    phone_enc: bytes | None
    birth_date_enc: bytes | None
    identity_key_version: int | None
    national_id_bidx: bytes | None
    phone_bidx: bytes | None
    index_key_version: int | None
    sex: str | None
    birth_year: int | None

    def columns(self) -> dict[str, Any]:
        """Column name -> value, for an UPDATE."""
        return {name: getattr(self, name) for name in self.__slots__}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredIdentity:
        """From a row holding (at least) every identity column."""
        values = {name: row[name] for name in cls.__slots__}
        for name in ("name_enc", "national_id_enc", "phone_enc", "birth_date_enc", "national_id_bidx", "phone_bidx"):
            if values[name] is not None:
                values[name] = bytes(values[name])
        return cls(**values)


STORED_COLUMNS: Final = StoredIdentity.__slots__


def _plaintext(identity: Identity, field: str) -> str | None:
    value = getattr(identity, field)
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def seal_identity(ring: KeyRing, *, patient_id: str, site_id: str, identity: Identity) -> StoredIdentity:
    """Encrypt a (normalised) identity for the row `patient_id` of site `site_id` under the current keys."""
    encrypted: dict[str, bytes | None] = {}
    for field in ENCRYPTED_FIELDS:
        plaintext = _plaintext(identity, field)
        encrypted[field] = None if plaintext is None else encrypt_field(
            ring, plaintext, table=TABLE, column=f"{field}_enc", row_id=patient_id)
    indexes = {field: None if getattr(identity, field) is None else blind_index(ring, field, site_id,
                                                                                getattr(identity, field))
               for field in INDEXED_FIELDS}
    any_encrypted = any(value is not None for value in encrypted.values())
    any_indexed = any(value is not None for value in indexes.values())
    return StoredIdentity(
        name_enc=encrypted["name"], national_id_enc=encrypted["national_id"], phone_enc=encrypted["phone"],
        birth_date_enc=encrypted["birth_date"], identity_key_version=ring.current_data if any_encrypted else None,
        national_id_bidx=indexes["national_id"], phone_bidx=indexes["phone"],
        index_key_version=ring.current_index if any_indexed else None, sex=identity.sex,
        birth_year=identity.birth_year,
    )


def open_identity(ring: KeyRing, *, patient_id: str, stored: StoredIdentity) -> Identity:
    """Decrypt the identity of row `patient_id` (UnknownKeyVersionError / DecryptionError when it cannot)."""
    values: dict[str, str | None] = {}
    for field in ENCRYPTED_FIELDS:
        blob = getattr(stored, f"{field}_enc")
        values[field] = None if blob is None else decrypt_field(
            ring, blob, table=TABLE, column=f"{field}_enc", row_id=patient_id)
    birth = values["birth_date"]
    return Identity(name=values["name"], national_id=values["national_id"], phone=values["phone"],
                    sex=cast(Sex | None, stored.sex), birth_date=dt.date.fromisoformat(birth) if birth else None)


def needs_rekey(ring: KeyRing, stored: StoredIdentity) -> bool:
    """Whether a row is under an older data or index key than the ring's current ones."""
    return (stored.identity_key_version not in (None, ring.current_data)
            or stored.index_key_version not in (None, ring.current_index))
