"""The bundled ICD-10 list: code normalisation, lookup and search in Chinese and English."""

from __future__ import annotations

import re

import pytest

from cloud.consult import icd10


def codes(query: str, limit: int = 20) -> list[str]:
    return [e.code for e in icd10.search(query, limit=limit)]


def test_the_list_is_a_few_hundred_well_formed_unique_codes() -> None:
    assert 300 <= len(icd10.CODES) <= 1000
    for code, entry in icd10.CODES.items():
        assert re.fullmatch(r"[A-Z]\d{2}(\.\d)?", code) and entry.code == code
        assert entry.en and re.search(r"[\u4e00-\u9fff]", entry.zh)


@pytest.mark.parametrize("text, code", [("I21.4", "I21.4"), ("i214", "I21.4"), (" e11 ", "E11"), ("J18.9", "J18.9")])
def test_lookup_normalises_codes(text: str, code: str) -> None:
    assert icd10.lookup(text).code == code


@pytest.mark.parametrize("text", ["I21.7", "Q99", "21.4", "I2", "", "I21.45.1"])
def test_unknown_or_malformed_codes_are_refused(text: str) -> None:
    with pytest.raises(icd10.UnknownCodeError):
        icd10.lookup(text)


def test_search_by_code_prefix_puts_the_exact_code_first() -> None:
    assert codes("I21") == ["I21", "I21.0", "I21.1", "I21.4", "I21.9"]
    assert codes("i21.4") == ["I21.4"]
    assert codes("E11", limit=3) == ["E11", "E11.0", "E11.1"]


def test_search_in_chinese() -> None:
    found = codes("心肌梗死")
    assert found[:5] == ["I21", "I21.0", "I21.1", "I21.4", "I21.9"]
    assert "I25.2" in found  # 陈旧性心肌梗死
    assert codes("糖尿病")[0] == "E14"  # the name that starts with the query comes first


def test_search_in_english_by_words_in_any_order() -> None:
    assert codes("pneumonia")[:3] == ["J13", "J18", "J18.9"]  # titles starting with the word first
    assert "J44.1" in codes("obstructive exacerbation")
    assert codes("myocardial infarction acute") == ["I21", "I21.0", "I21.1", "I21.4", "I21.9"]  # not I25.2 (old)
    assert codes("zzz") == []
