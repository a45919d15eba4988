"""A patient's identity as plain values, normalised and validated (pure).

Normalised forms are what is encrypted and what blind indexes are computed over, so "138 0013 8000",
"+86 138-0013-8000" and "13800138000" find the same patient.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Final, Literal, get_args

from cloud.identity.national_id import NationalIdError, normalise_national_id, parse_national_id

Sex = Literal["female", "male", "other", "unknown"]  # FHIR AdministrativeGender
SEXES: Final[tuple[str, ...]] = get_args(Sex)
NAME_MAX: Final = 64
_MOBILE = re.compile(r"^1[3-9][0-9]{9}$")  # mainland mobile numbers (MIIT numbering plan: 13x-19x)
_LANDLINE = re.compile(r"^0[1-9][0-9]{8,10}$")  # trunk 0 + area code + subscriber number
_INTERNATIONAL = re.compile(r"^\+[1-9][0-9]{6,14}$")  # E.164: at most 15 digits
_PHONE_NOISE = re.compile(r"[\s\-().]")


class IdentityFieldError(ValueError):
    """An identity field is invalid; `field` names it. Messages never echo the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a patient is. Every field is optional: a patient may be registered before all is known."""

    name: str | None = None
    national_id: str | None = None
    phone: str | None = None
    sex: Sex | None = None
    birth_date: dt.date | None = None

    @property
    def birth_year(self) -> int | None:
        return self.birth_date.year if self.birth_date is not None else None


def normalise_name(text: str) -> str:
    """NFC, inner blanks collapsed, outer blanks dropped; 1..64 characters without control characters."""
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not name:
        raise IdentityFieldError("name", "must not be empty")
    if len(name) > NAME_MAX:
        raise IdentityFieldError("name", f"at most {NAME_MAX} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise IdentityFieldError("name", "must not contain control characters")
    return name


def normalise_phone(text: str) -> str:
    """A mainland mobile (11 digits) or landline (0 + area code + number) without the +86 prefix, or E.164."""
    phone = _PHONE_NOISE.sub("", text)
    for prefix in ("+86", "0086"):
        if phone.startswith(prefix):
            phone = phone[len(prefix):]
            if not phone.startswith("0") and not _MOBILE.match(phone):
                phone = "0" + phone  # a landline dialled from abroad drops the trunk 0
            break
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if _MOBILE.match(phone) or _LANDLINE.match(phone) or _INTERNATIONAL.match(phone):
        return phone
    raise IdentityFieldError("phone", "not a mobile, landline or E.164 number")


def normalise_identity(identity: Identity, *, today: dt.date | None = None) -> Identity:
    """Every field normalised and checked; sex and birth date filled from (and checked against) the ID number."""
    name = normalise_name(identity.name) if identity.name is not None else None
    phone = normalise_phone(identity.phone) if identity.phone is not None else None
    if identity.sex is not None and identity.sex not in SEXES:
        raise IdentityFieldError("sex", f"one of {', '.join(SEXES)}")
    sex, birth_date = identity.sex, identity.birth_date
    number = None
    if identity.national_id is not None:
        try:
            parsed = parse_national_id(identity.national_id, today=today)
        except NationalIdError as exc:
            raise IdentityFieldError("national_id", str(exc)) from None
        number = parsed.number
        if birth_date is not None and birth_date != parsed.birth_date:
            raise IdentityFieldError("birth_date", "differs from the birth date in the national ID number")
        if sex in ("male", "female") and sex != parsed.sex:
            raise IdentityFieldError("sex", "differs from the sex encoded in the national ID number")
        birth_date = parsed.birth_date
        sex = sex if sex is not None else parsed.sex
    if birth_date is not None and birth_date > (today or dt.date.today()):
        raise IdentityFieldError("birth_date", "is in the future")
    return replace(identity, name=name, national_id=number, phone=phone, sex=sex, birth_date=birth_date)


def lookup_national_id(text: str) -> str:
    """The normalised form of an ID number typed into a search (validated, so typos answer 422, not 'none')."""
    try:
        return parse_national_id(normalise_national_id(text)).number
    except NationalIdError as exc:
        raise IdentityFieldError("national_id", str(exc)) from None
