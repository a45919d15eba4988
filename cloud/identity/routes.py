"""Routes of the patients registry: register, read and change identity, look up by national ID or phone."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from cloud.api.auth.models import Role, User
from cloud.api.deps import ClientIp, Db, require_roles
from cloud.identity import service
from cloud.identity.fields import Identity
from cloud.identity.keystore import VerifiedKeys

router = APIRouter(prefix="/api/patients", tags=["patients"])


def identity_keys(request: Request) -> VerifiedKeys:
    """The application's identity key ring (set up in the lifespan)."""
    keys: VerifiedKeys = request.app.state.identity_keys
    return keys


IdentityKeys = Annotated[VerifiedKeys, Depends(identity_keys)]
# Role gates first (403 before the body is looked at); the service then binds the user to their own site.
Registrar = Annotated[User, Depends(require_roles(Role.COUNTY_DOCTOR))]
IdentityReader = Annotated[User, Depends(require_roles(Role.COUNTY_DOCTOR, Role.ON_CALL))]
SexIn = Literal["female", "male", "other", "unknown"]


class IdentityIn(BaseModel):
    """Identity fields; the national ID number fills sex and birth date when they are left out."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    national_id: str | None = Field(default=None, max_length=40)
    phone: str | None = Field(default=None, max_length=40)
    sex: SexIn | None = None
    birth_date: dt.date | None = None

    def identity(self) -> Identity:
        return Identity(name=self.name, national_id=self.national_id, phone=self.phone, sex=self.sex,
                        birth_date=self.birth_date)


class PatientRegisterIn(IdentityIn):
    """A new patient of the caller's site; `patient_id` only to attach identity to an id the edge already uses."""

    patient_id: str | None = Field(default=None, max_length=64)
    ward: str | None = Field(default=None, max_length=64)
    bed: str | None = Field(default=None, max_length=64)


class IdentityPatchIn(IdentityIn):
    """Fields to change: a value replaces, null clears, an absent field stays."""


class PatientIdentityOut(BaseModel):
    patient_id: str
    site_id: str
    ward: str | None
    bed: str | None
    name: str | None
    national_id: str | None
    phone: str | None
    sex: str | None
    birth_date: dt.date | None
    birth_year: int | None


class PatientLookupOut(BaseModel):
    patients: list[PatientIdentityOut]


def identity_out(found: service.PatientIdentity) -> PatientIdentityOut:
    identity = found.identity
    return PatientIdentityOut(
        patient_id=found.patient_id, site_id=found.site_id, ward=found.ward, bed=found.bed, name=identity.name,
        national_id=identity.national_id, phone=identity.phone, sex=identity.sex, birth_date=identity.birth_date,
        birth_year=identity.birth_year,
    )


@router.post("", response_model=PatientIdentityOut, status_code=status.HTTP_201_CREATED)
async def register_patient(
    body: PatientRegisterIn, user: Registrar, conn: Db, keys: IdentityKeys, ip: ClientIp,
) -> PatientIdentityOut:
    """Register a patient of the caller's site (county doctors)."""
    found = await service.register_patient(conn, keys, user=user, identity=body.identity(),
                                           patient_id=body.patient_id, ward=body.ward, bed=body.bed, ip=ip)
    return identity_out(found)


@router.get("/lookup", response_model=PatientLookupOut)
async def lookup_patients(
    user: IdentityReader, conn: Db, keys: IdentityKeys, ip: ClientIp,
    national_id: Annotated[str | None, Query(max_length=40)] = None,
    phone: Annotated[str | None, Query(max_length=40)] = None,
) -> PatientLookupOut:
    """The caller's site's patients with this national ID number or phone (exact match via the blind index)."""
    found = await service.lookup(conn, keys, user=user, national_id=national_id, phone=phone, ip=ip)
    return PatientLookupOut(patients=[identity_out(p) for p in found])


@router.get("/{patient_id}/identity", response_model=PatientIdentityOut)
async def read_identity(
    patient_id: str, user: IdentityReader, conn: Db, keys: IdentityKeys, ip: ClientIp,
) -> PatientIdentityOut:
    """A patient's decrypted identity (doctors of the patient's site; audited)."""
    return identity_out(await service.read_identity(conn, keys, user=user, patient_id=patient_id, ip=ip))


@router.patch("/{patient_id}/identity", response_model=PatientIdentityOut)
async def update_identity(
    patient_id: str, body: IdentityPatchIn, user: Registrar, conn: Db, keys: IdentityKeys, ip: ClientIp,
) -> PatientIdentityOut:
    """Change identity fields of a patient of the caller's site (county doctors; audited)."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    found = await service.update_identity(conn, keys, user=user, patient_id=patient_id, changes=changes, ip=ip)
    return identity_out(found)
