"""Expert profiles as values, with their controlled vocabularies and validation (pure).

Titles are the four grades of 卫生专业技术职务 for physicians. Languages are ISO 639 codes (639-1 where one
exists, 639-3 for Chinese varieties without one: yue, wuu, nan, hak). ICD-10 prefixes are what an expert
covers: a chapter letter (I), a category (E11) or a subcategory (I21.0). Licence regions are GB/T 2260
province codes. The specialty list lives in the `specialties` table (migration 0004).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from cloud.identity.regions import is_province_code

Title = Literal["resident", "attending", "associate_chief", "chief"]
TITLE_ORDER: Final[tuple[str, ...]] = get_args(Title)
TITLE_NAMES: Final[dict[str, tuple[str, str]]] = {
    "resident": ("住院医师", "Resident physician"),
    "attending": ("主治医师", "Attending physician"),
    "associate_chief": ("副主任医师", "Associate chief physician"),
    "chief": ("主任医师", "Chief physician"),
}
LANGUAGES: Final[dict[str, tuple[str, str]]] = {
    "zh": ("普通话", "Mandarin Chinese"), "yue": ("粤语", "Cantonese"), "wuu": ("吴语", "Wu Chinese"),
    "nan": ("闽南语", "Southern Min"), "hak": ("客家话", "Hakka"), "en": ("英语", "English"),
    "bo": ("藏语", "Tibetan"), "ug": ("维吾尔语", "Uyghur"), "mn": ("蒙古语", "Mongolian"), "za": ("壮语", "Zhuang"),
    "ii": ("彝语", "Yi"), "ko": ("朝鲜语", "Korean"), "ja": ("日语", "Japanese"), "ru": ("俄语", "Russian"),
    "fr": ("法语", "French"), "de": ("德语", "German"), "es": ("西班牙语", "Spanish"), "ar": ("阿拉伯语", "Arabic"),
}
ICD10_PREFIX: Final = re.compile(r"^[A-Z]([0-9]{1,2}|[0-9]{2}\.[0-9A-Z]{1,2})?$")
MAX_CONCURRENT: Final = 50
MAX_YEARS: Final = 70


class ProfileError(ValueError):
    """A profile field is invalid; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an admin verifies and sets: specialties, ICD-10 expertise, title, experience, licence region."""

    specialties: tuple[str, ...]
    icd10_prefixes: tuple[str, ...]
    title: Title
    years_practice: int
    licence_region: str


@dataclass(frozen=True, slots=True)
class Availability:
    """What the expert sets: languages, how many consultations at once, on duty and online."""

    languages: tuple[str, ...]
    max_concurrent: int
    on_duty: bool
    online: bool


@dataclass(frozen=True, slots=True)
class ExpertProfile:
    """An expert's profile as stored in `expert_profiles`."""

    user_id: uuid.UUID
    credentials: Credentials
    availability: Availability
    status_changed_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def normalise_credentials(credentials: Credentials, *, known_specialties: frozenset[str]) -> Credentials:
    """Checked and normalised credentials (prefixes upper-cased, duplicates dropped, order kept)."""
    specialties = _unique(s.strip().lower() for s in credentials.specialties)
    if not specialties:
        raise ProfileError("specialties", "at least one specialty")
    unknown = [s for s in specialties if s not in known_specialties]
    if unknown:
        raise ProfileError("specialties", f"unknown specialty {unknown[0]!r} (see GET /api/specialties)")
    prefixes = _unique(p.strip().upper() for p in credentials.icd10_prefixes)
    bad = [p for p in prefixes if not ICD10_PREFIX.match(p)]
    if bad:
        raise ProfileError("icd10_prefixes", f"{bad[0]!r} is not an ICD-10 prefix (like I2, E11 or I21.0)")
    if credentials.title not in TITLE_NAMES:
        raise ProfileError("title", f"one of {', '.join(TITLE_ORDER)}")
    if not 0 <= credentials.years_practice <= MAX_YEARS:
        raise ProfileError("years_practice", f"0..{MAX_YEARS}")
    if not is_province_code(credentials.licence_region):
        raise ProfileError("licence_region", "a GB/T 2260 province code such as 440000")
    return Credentials(specialties=specialties, icd10_prefixes=prefixes, title=credentials.title,
                       years_practice=credentials.years_practice, licence_region=credentials.licence_region)


def normalise_availability(availability: Availability) -> Availability:
    """Checked availability (languages known and unique, capacity in range)."""
    languages = _unique(code.strip().lower() for code in availability.languages)
    if not languages:
        raise ProfileError("languages", "at least one language")
    unknown = [code for code in languages if code not in LANGUAGES]
    if unknown:
        raise ProfileError("languages", f"unknown language code {unknown[0]!r}")
    if not 1 <= availability.max_concurrent <= MAX_CONCURRENT:
        raise ProfileError("max_concurrent", f"1..{MAX_CONCURRENT}")
    return Availability(languages=languages, max_concurrent=availability.max_concurrent,
                        on_duty=availability.on_duty, online=availability.online)
