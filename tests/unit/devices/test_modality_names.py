"""Chinese names: splitting, Pinyin and the DICOM Person Name encoding."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from devices.modality.errors import InvalidPatientNameError
from devices.modality.identity import COUNTY_HOSPITALS, Patient, random_patient
from devices.modality.names import ChineseName, parse_chinese_name, romanise_given_name


def test_common_name_gets_pinyin_and_ideographic_groups() -> None:
    name = parse_chinese_name("张伟")
    assert name == ChineseName("张", "伟", "Zhang", "Wei")
    assert name.to_dicom() == "Zhang^Wei=张^伟"
    assert name.hanzi == "张伟"


def test_compound_family_name_is_split_before_single_character_ones() -> None:
    assert parse_chinese_name("欧阳秀英").to_dicom() == "Ouyang^Xiuying=欧阳^秀英"


def test_caret_marks_the_split_explicitly() -> None:
    assert parse_chinese_name("司马^光").family == "司马"
    assert parse_chinese_name("李^建国").to_dicom() == "Li^Jianguo=李^建国"
    assert parse_chinese_name(" 王 秀英 ").to_dicom() == "Wang^Xiuying=王^秀英"


def test_unknown_character_leaves_the_name_in_characters_only() -> None:
    name = parse_chinese_name("张龘")
    assert name.given_pinyin is None
    assert name.to_dicom() == "张^龘"


def test_pinyin_apostrophe_separates_a_vowel_initial_syllable() -> None:
    assert romanise_given_name("西安") is None  # 西 is not a given-name character we know
    assert romanise_given_name("欣安") == "Xin'an"
    assert romanise_given_name("春梅") == "Chunmei"


@pytest.mark.parametrize("bad", ["", "张", "张^", "^伟", "张 伟 明", "张伟1", "Zhang^Wei=张^伟"])
def test_names_without_family_and_given_part_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidPatientNameError):
        parse_chinese_name(bad)


def test_random_patients_have_fully_romanised_names_and_site_ids() -> None:
    rng = np.random.default_rng(7)
    today = dt.date(2025, 3, 1)
    for site in COUNTY_HOSPITALS:
        for _ in range(40):
            patient = random_patient(rng, site, today=today)
            assert patient.name.family_pinyin and patient.name.given_pinyin
            assert patient.patient_id.startswith(site.code) and len(patient.patient_id) == 10
            assert 18 <= patient.age_on(today) <= 88


def test_age_counts_completed_years() -> None:
    patient = Patient(parse_chinese_name("王芳"), "QC1", "F", dt.date(1960, 6, 15))
    assert patient.age_on(dt.date(2025, 6, 14)) == 64
    assert patient.age_on(dt.date(2025, 6, 15)) == 65
