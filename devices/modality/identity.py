"""Who and where: synthetic patients, county hospitals and referring physicians for generated studies."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import numpy as np

from devices.modality.names import FAMILY_NAMES, ChineseName, parse_chinese_name

Sex = Literal["M", "F"]

_MALE_GIVEN = ("伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "刚", "建国", "建华", "国强", "志强", "德明",
               "建军", "浩", "宇", "鹏", "斌", "辉", "永福", "庆生", "光荣")
_FEMALE_GIVEN = ("芳", "娜", "秀英", "敏", "静", "丽", "艳", "娟", "秀兰", "霞", "桂英", "玉兰", "淑珍", "海燕",
                 "春梅", "小红", "婷", "欣怡", "子涵", "秋菊", "慧", "佳琳", "翠花", "凤英")


@dataclass(frozen=True)
class Site:
    """A county hospital running the simulated modality."""

    institution: str
    department: str
    code: str  # prefix of patient IDs, accession numbers and station names (SH, so short and ASCII)


COUNTY_HOSPITALS: tuple[Site, ...] = (
    Site("青川县人民医院", "放射科", "QC"),
    Site("平武县人民医院", "放射科", "PW"),
    Site("剑阁县人民医院", "医学影像科", "JG"),
    Site("苍溪县人民医院", "医学影像科", "CX"),
    Site("宁强县人民医院", "放射科", "NQ"),
)


@dataclass(frozen=True)
class Patient:
    """The demographics a modality receives from the worklist (Patient module, PS3.3 C.7.1.1)."""

    name: ChineseName
    patient_id: str
    sex: Sex
    birth_date: dt.date

    def age_on(self, day: dt.date) -> int:
        """Completed years of age on `day`."""
        before_birthday = (day.month, day.day) < (self.birth_date.month, self.birth_date.day)
        return day.year - self.birth_date.year - int(before_birthday)


def random_name(rng: np.random.Generator, sex: Sex) -> ChineseName:
    """A plausible Chinese name for `sex`, drawn from common family and given names."""
    family = str(rng.choice(list(FAMILY_NAMES)))
    given = str(rng.choice(_MALE_GIVEN if sex == "M" else _FEMALE_GIVEN))
    return parse_chinese_name(family + "^" + given)


def random_patient(
    rng: np.random.Generator, site: Site, *, name: str | None = None, today: dt.date | None = None
) -> Patient:
    """A county-hospital patient, mostly older adults as in county imaging workloads; `name` overrides."""
    sex: Sex = "M" if rng.random() < 0.5 else "F"
    chinese = parse_chinese_name(name) if name else random_name(rng, sex)
    day = today or dt.date.today()
    age_days = int(rng.integers(18 * 365, 88 * 365))
    return Patient(
        name=chinese,
        patient_id=f"{site.code}{int(rng.integers(0, 10**8)):08d}",
        sex=sex,
        birth_date=day - dt.timedelta(days=age_days),
    )


def random_physician(rng: np.random.Generator) -> ChineseName:
    """A referring physician at the same county hospital."""
    return random_name(rng, "M" if rng.random() < 0.5 else "F")


def pick_site(rng: np.random.Generator) -> Site:
    """One of the county hospitals."""
    return COUNTY_HOSPITALS[int(rng.integers(0, len(COUNTY_HOSPITALS)))]
