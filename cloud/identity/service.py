"""The patients registry: register patients, read, change and look up their identity (encrypted, audited).

Who may touch identity (docs/security.md, "Access rules"): the treating hospital only. County doctors
register and edit the identity of their own site's patients; county and on-call doctors bound to a site
read and look them up. Experts and admins work with pseudonymous ids, sex and birth year. A patient of
another site answers like one that does not exist (404). Every read and write is audited in the same
transaction as the data it concerns; audit details name fields, never values.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

from psycopg import errors, sql
from psycopg.rows import dict_row

from cloud.api.audit import access_draft
from cloud.api.auth.models import Role, User
from cloud.api.auth.store import Conn
from cloud.api.errors import ApiError, ForbiddenError, InvalidParameterError, NotFoundError
from cloud.audit import store as audit_store
from cloud.audit.chain import Draft
from cloud.identity.crypto import DecryptionError, KeyRing, UnknownKeyVersionError, blind_indexes
from cloud.identity.fields import Identity, IdentityFieldError, lookup_national_id, normalise_identity, normalise_phone
from cloud.identity.keys import KeyFileError
from cloud.identity.keystore import KeyMismatchError, VerifiedKeys
from cloud.identity.record import STORED_COLUMNS, StoredIdentity, open_identity, seal_identity
from proto.messages import OPAQUE_ID

log = logging.getLogger(__name__)

T = TypeVar("T")
# Crockford base32 without the ambiguous I, L, O, U: ids read aloud or typed from a wristband survive.
_ID_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ID_LENGTH: Final = 10  # 50 random bits: collisions are retried, guessing is hopeless
_READ_ROLES: Final = frozenset({Role.COUNTY_DOCTOR, Role.ON_CALL})


class ConflictError(ApiError):
    """The request conflicts with existing data (a patient id in use, a person registered twice)."""

    status_code = 409


class IdentityUnavailableError(ApiError):
    """Stored identity cannot be decrypted (a key is missing or a ciphertext was tampered with)."""

    status_code = 500


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    """A patient with their decrypted identity."""

    patient_id: str
    site_id: str
    ward: str | None
    bed: str | None
    identity: Identity


def new_patient_id() -> str:
    """A fresh pseudonymous patient id (`P-` and 10 base32 characters), valid on the wire."""
    return "P-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def reading_site(user: User) -> str:
    """The site whose identities `user` may read (403 for roles that never read identity)."""
    if user.site_id is None or not user.has_any(_READ_ROLES):
        raise ForbiddenError("only doctors of the patient's hospital see patient identity")
    return user.site_id


def writing_site(user: User) -> str:
    """The site whose patients `user` may register and edit (403 for anyone but county doctors)."""
    if user.site_id is None or Role.COUNTY_DOCTOR not in user.roles:
        raise ForbiddenError("only county doctors register and edit patient identity")
    return user.site_id


def _field_error(exc: IdentityFieldError) -> InvalidParameterError:
    return InvalidParameterError(exc.field, exc.message, location="body")


def _normalise(identity: Identity) -> Identity:
    try:
        return normalise_identity(identity)
    except IdentityFieldError as exc:
        raise _field_error(exc) from None


_SELECT = sql.SQL("SELECT patient_id, site_id, ward, bed, {} FROM patients").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in STORED_COLUMNS))


async def _ring(conn: Conn, keys: VerifiedKeys, *, refresh: bool = False) -> KeyRing:
    """The verified key ring; a missing or mismatched ring is a server fault the operator must fix."""
    try:
        return await keys.ring(conn, refresh=refresh)
    except (KeyFileError, KeyMismatchError) as exc:
        log.error("identity.keys_unavailable error=%s", exc)
        raise IdentityUnavailableError("patient identity is unavailable: the identity keys are not usable") from None


async def _with_ring(conn: Conn, keys: VerifiedKeys, work: Callable[[KeyRing], T]) -> T:
    """Run `work` with the ring, re-reading the key file once if a ciphertext names a newer key version."""
    ring = await _ring(conn, keys)
    try:
        return work(ring)
    except UnknownKeyVersionError:
        ring = await _ring(conn, keys, refresh=True)
        try:
            return work(ring)
        except UnknownKeyVersionError as exc:
            log.error("identity.unknown_key_version version=%d", exc.version)
            raise IdentityUnavailableError("patient identity cannot be decrypted: key version missing") from None
    except DecryptionError:
        log.error("identity.decrypt_failed")
        raise IdentityUnavailableError("patient identity cannot be decrypted") from None


def _opened(ring: KeyRing, row: Mapping[str, Any]) -> PatientIdentity:
    try:
        identity = open_identity(ring, patient_id=row["patient_id"], stored=StoredIdentity.from_row(row))
    except DecryptionError:
        log.error("identity.decrypt_failed patient_id=%s", row["patient_id"])
        raise
    return PatientIdentity(patient_id=row["patient_id"], site_id=row["site_id"], ward=row["ward"],
                           bed=row["bed"], identity=identity)


async def _row(conn: Conn, patient_id: str, site_id: str, *, lock: bool) -> dict[str, Any] | None:
    query = sql.SQL("{} WHERE patient_id = %s AND site_id = %s{}").format(
        _SELECT, sql.SQL(" FOR UPDATE") if lock else sql.SQL(""))
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(query, (patient_id, site_id))
    return await cur.fetchone()


async def _store(conn: Conn, patient_id: str, stored: StoredIdentity, user: User) -> None:
    columns = stored.columns()
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in columns)
    try:
        await conn.execute(
            sql.SQL("UPDATE patients SET {}, identity_updated_at = now(), identity_updated_by = %(user_id)s"
                    " WHERE patient_id = %(patient_id)s").format(assignments),
            {**columns, "user_id": user.user_id, "patient_id": patient_id})
    except errors.UniqueViolation:
        raise ConflictError("a patient with this national ID number is already registered at this site") from None


async def _registered_as(conn: Conn, ring: KeyRing, site_id: str, national_id: str | None,
                         *, other_than: str | None) -> str | None:
    """The patient at `site_id` already holding this national ID (under any index key version)."""
    if national_id is None:
        return None
    cur = await conn.execute(
        "SELECT patient_id FROM patients WHERE site_id = %s AND national_id_bidx = ANY(%s)"
        " AND patient_id IS DISTINCT FROM %s LIMIT 1",
        (site_id, blind_indexes(ring, "national_id", site_id, national_id), other_than))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def register_patient(
    conn: Conn, keys: VerifiedKeys, *, user: User, identity: Identity, patient_id: str | None = None,
    ward: str | None = None, bed: str | None = None, ip: str | None = None,
) -> PatientIdentity:
    """Register a patient of the user's site with an identity (a new pseudonymous id unless one is given:
    an id the site's edge already uses, whose patient has no identity yet)."""
    site_id = writing_site(user)
    identity = _normalise(identity)
    if patient_id is not None and not OPAQUE_ID.match(patient_id):
        raise InvalidParameterError("patient_id", "letters, digits and . _ : - (at most 64)", location="body")
    ring = await _ring(conn, keys)
    async with conn.transaction():
        existing = await _registered_as(conn, ring, site_id, identity.national_id, other_than=None)
        if existing is not None:
            raise ConflictError(f"this national ID number is already registered as patient {existing}")
        chosen = patient_id or new_patient_id()
        cur = await conn.execute(
            "INSERT INTO patients (patient_id, site_id, ward, bed) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (patient_id) DO NOTHING RETURNING patient_id", (chosen, site_id, ward, bed))
        if await cur.fetchone() is None:
            row = await _row(conn, chosen, site_id, lock=True)
            if patient_id is None or row is None or row["identity_key_version"] is not None:
                raise ConflictError("this patient id is already in use")
            await conn.execute("UPDATE patients SET ward = coalesce(%s, ward), bed = coalesce(%s, bed)"
                               " WHERE patient_id = %s", (ward, bed, chosen))
        stored = seal_identity(ring, patient_id=chosen, site_id=site_id, identity=identity)
        await _store(conn, chosen, stored, user)
        await audit_store.append(conn, [access_draft("patient.register", user, chosen, ip=ip, detail={
            "fields": _present(identity), "key_version": ring.current_data})])
        row = await _row(conn, chosen, site_id, lock=False)
    assert row is not None
    log.info("identity.registered patient_id=%s site_id=%s", chosen, site_id)
    return PatientIdentity(patient_id=chosen, site_id=site_id, ward=row["ward"], bed=row["bed"], identity=identity)


def _present(identity: Identity) -> list[str]:
    return sorted(name for name in ("name", "national_id", "phone", "sex", "birth_date")
                  if getattr(identity, name) is not None)


async def update_identity(
    conn: Conn, keys: VerifiedKeys, *, user: User, patient_id: str, changes: Mapping[str, Any],
    ip: str | None = None,
) -> PatientIdentity:
    """Change some identity fields (a value replaces, None clears) of one of the user's site's patients.

    A new national ID number re-derives the birth date and sex unless they are given too.
    """
    site_id = writing_site(user)
    unknown = set(changes) - {"name", "national_id", "phone", "sex", "birth_date"}
    if unknown:
        raise InvalidParameterError(sorted(unknown)[0], "not an identity field", location="body")
    async with conn.transaction():
        row = await _row(conn, patient_id, site_id, lock=True)
        if row is None:
            raise NotFoundError("patient not found")
        current = await _with_ring(conn, keys, lambda ring: _opened(ring, row))
        merged_values = dict(changes)
        if "national_id" in changes:
            merged_values.setdefault("birth_date", None)
            merged_values.setdefault("sex", None)
        merged = _normalise(replace(current.identity, **merged_values))
        existing_as = None
        ring = await _ring(conn, keys)
        if "national_id" in changes:
            existing_as = await _registered_as(conn, ring, site_id, merged.national_id, other_than=patient_id)
        if existing_as is not None:
            raise ConflictError(f"this national ID number is already registered as patient {existing_as}")
        await _store(conn, patient_id, seal_identity(ring, patient_id=patient_id, site_id=site_id,
                                                     identity=merged), user)
        await audit_store.append(conn, [access_draft("patient.identity.update", user, patient_id, ip=ip, detail={
            "fields": sorted(changes), "key_version": ring.current_data})])
    return replace(current, identity=merged)


async def read_identity(
    conn: Conn, keys: VerifiedKeys, *, user: User, patient_id: str, ip: str | None = None,
) -> PatientIdentity:
    """The decrypted identity of a patient of the user's site (audited before it is returned)."""
    site_id = reading_site(user)
    row = await _row(conn, patient_id, site_id, lock=False)
    if row is None:
        raise NotFoundError("patient not found")
    found = await _with_ring(conn, keys, lambda ring: _opened(ring, row))
    await audit_store.append(conn, [access_draft("patient.identity.read", user, patient_id, ip=ip)])
    return found


async def lookup(
    conn: Conn, keys: VerifiedKeys, *, user: User, national_id: str | None = None, phone: str | None = None,
    ip: str | None = None,
) -> list[PatientIdentity]:
    """The user's site's patients with this national ID number or phone (exactly one of the two)."""
    site_id = reading_site(user)
    if (national_id is None) == (phone is None):
        raise InvalidParameterError("national_id", "give exactly one of national_id and phone")
    try:
        purpose, value = (("national_id", lookup_national_id(national_id)) if national_id is not None
                          else ("phone", normalise_phone(phone or "")))
    except IdentityFieldError as exc:
        raise InvalidParameterError(exc.field, exc.message) from None
    ring = await _ring(conn, keys)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        sql.SQL("{} WHERE site_id = %s AND {} = ANY(%s) ORDER BY patient_id LIMIT 50").format(
            _SELECT, sql.Identifier(f"{purpose}_bidx")),
        (site_id, blind_indexes(ring, purpose, site_id, value)))
    rows = await cur.fetchall()
    found = await _with_ring(conn, keys, lambda ring: [_opened(ring, row) for row in rows])
    drafts: Sequence[Draft] = [access_draft("patient.lookup", user, p.patient_id, ip=ip, detail={"by": purpose})
                               for p in found] or [
        access_draft("patient.lookup", user, None, ip=ip, detail={"by": purpose, "found": 0})]
    await audit_store.append(conn, drafts)
    return found
