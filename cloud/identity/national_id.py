"""Citizen identity numbers (公民身份号码, GB 11643-1999): validation, and the birth date and sex they encode.

Layout (section 5): 6-digit address code (GB/T 2260), 8-digit birth date YYYYMMDD, 3-digit sequence code
(odd for men, even for women), 1 check character. The check character is ISO 7064 MOD 11-2 (section 7):
S = sum of digit_i * W_i with W_i = 2^(i-1) mod 11 counted from the right, check = (12 - S mod 11) mod 11,
written X for 10.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final, Literal

from cloud.identity.regions import ID_PREFIXES

# W_i for positions 1..17 from the left (i = 18..2 from the right).
WEIGHTS: Final = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS: Final = "10X98765432"  # indexed by S mod 11
_FORM = re.compile(r"^[0-9]{17}[0-9X]$")
EARLIEST_BIRTH: Final = dt.date(1880, 1, 1)


class NationalIdError(ValueError):
    """A national ID number is malformed; the message says what is wrong (never echoing the number)."""


@dataclass(frozen=True, slots=True)
class NationalId:
    """A valid national ID number (normalised: upper-case X) and what it encodes."""

    number: str
    birth_date: dt.date
    sex: Literal["male", "female"]

    @property
    def birth_year(self) -> int:
        return self.birth_date.year


def check_character(first17: str) -> str:
    """The MOD 11-2 check character for the first 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARS[total % 11]


def normalise_national_id(text: str) -> str:
    """Blanks removed, the check letter upper-cased (people write x and X alike)."""
    return "".join(text.split()).upper()


def parse_national_id(text: str, *, today: dt.date | None = None) -> NationalId:
    """Validate an 18-character ID number; NationalIdError naming the first problem found."""
    number = normalise_national_id(text)
    if not _FORM.match(number):
        raise NationalIdError("must be 17 digits followed by a digit or X")
    if number[:2] not in ID_PREFIXES:
        raise NationalIdError("the address code names no province")
    if check_character(number[:17]) != number[17]:
        raise NationalIdError("the check character does not match (GB 11643-1999 MOD 11-2)")
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise NationalIdError("the birth date is not a calendar date") from None
    if not EARLIEST_BIRTH <= birth <= (today or dt.date.today()):
        raise NationalIdError("the birth date is out of range")
    return NationalId(number=number, birth_date=birth, sex="male" if int(number[16]) % 2 else "female")
