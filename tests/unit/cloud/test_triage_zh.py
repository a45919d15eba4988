"""Triage of Chinese chief complaints: longest-match scanning without spaces, negation, onset, red flags."""

from __future__ import annotations

import re

import pytest

from cloud.db.migrate import MIGRATIONS_DIR
from cloud.triage.lexicon import RED_FLAGS, SYMPTOMS, Language, Urgency
from cloud.triage.triage import normalise, parse_onset_hours, scan, triage


def top(text: str) -> str:
    return triage(text).specialties[0].specialty


def test_chest_pain_with_sweating_is_a_cardiology_emergency() -> None:
    result = triage("胸痛 伴 大汗 2小时")

    assert result.language is Language.ZH
    assert result.urgency is Urgency.EMERGENCY
    assert [f.id for f in result.red_flags] == ["acs"]  # "chest pain" alone is implied, not listed again
    assert result.red_flags[0].label == "胸痛伴大汗：警惕急性冠脉综合征"
    assert result.specialties[0].specialty == "cardiology"
    assert result.symptoms == ("chest_pain", "diaphoresis")
    assert result.onset_hours == 2.0
    assert "疼痛是否放射至左臂、下颌或背部？" in result.follow_up
    assert all(re.search(r"[\u4e00-\u9fff]", q) for q in result.follow_up)


def test_cough_and_fever_for_three_days_is_routine_respiratory() -> None:
    result = triage("咳嗽 发热 3天")

    assert result.urgency is Urgency.ROUTINE
    assert result.red_flags == ()
    assert result.specialties[0].specialty == "respiratory"
    assert result.onset_hours == 72.0
    assert "最高体温多少度？" in result.follow_up
    assert sum(s.score for s in result.specialties) == pytest.approx(1.0, abs=1e-3)


def test_no_spaces_are_needed() -> None:
    assert triage("胸痛伴大汗两小时").symptoms == ("chest_pain", "diaphoresis")
    assert triage("患者咳嗽咳痰伴发热").symptoms == ("cough", "sputum", "fever")


def test_negated_symptoms_are_not_counted() -> None:
    result = triage("无胸痛，咳嗽两天")

    assert result.symptoms == ("cough",)
    assert result.negated == ("chest_pain",)
    assert result.urgency is Urgency.ROUTINE


def test_negation_covers_an_enumeration_until_the_clause_ends() -> None:
    result = triage("否认胸痛、气促，腹痛半天")

    assert result.negated == ("chest_pain", "dyspnea")
    assert result.symptoms == ("abdominal_pain",)
    assert result.onset_hours == 12.0


def test_a_breaker_ends_the_negation_scope() -> None:
    result = triage("无发热但有咳嗽")
    assert result.symptoms == ("cough",) and result.negated == ("fever",)


def test_longest_match_keeps_words_containing_a_negation_character() -> None:
    # 无力 (weakness) and 一侧肢体无力 must not read as the negation 无.
    assert triage("四肢无力一周").symptoms == ("fatigue",)
    stroke = triage("突发言语不清，一侧肢体无力1小时")
    assert stroke.symptoms == ("slurred_speech", "focal_weakness")
    assert stroke.urgency is Urgency.EMERGENCY
    assert stroke.specialties[0].specialty == "neurology"


def test_full_width_digits_and_punctuation_are_normalised() -> None:
    result = triage("胸痛２小时，无大汗")
    assert result.onset_hours == 2.0 and result.negated == ("diaphoresis",)
    assert result.urgency is Urgency.URGENT  # chest pain alone


@pytest.mark.parametrize("text, hours", [
    ("发热3天", 72), ("咳嗽两周", 336), ("头痛十二小时", 12), ("腹泻半天", 12), ("胸闷30分钟", 0.5),
    ("乏力1个月", 720), ("咳嗽一天半", 36), ("胸闷一个半小时", 1.5), ("半个月", 360), ("无明显诱因", None),
])
def test_onset_durations(text: str, hours: float | None) -> None:
    assert parse_onset_hours(normalise(text)) == hours


def test_acute_breathlessness_needs_a_stated_recent_onset() -> None:
    assert triage("气促2小时").urgency is Urgency.EMERGENCY
    assert triage("气促3天").urgency is Urgency.URGENT
    assert triage("气促").urgency is Urgency.URGENT


def test_pregnancy_with_bleeding_is_an_obstetric_emergency() -> None:
    result = triage("怀孕8周，阴道流血")
    assert result.urgency is Urgency.EMERGENCY
    assert result.specialties[0].specialty == "obstetrics_gynecology"


def test_unknown_complaints_fall_back_to_general_practice_and_ask_for_the_onset() -> None:
    result = triage("想开点药")
    assert not result.recognised
    assert [s.specialty for s in result.specialties] == ["general_practice"]
    assert result.follow_up == ("症状是什么时候开始的？是突然发生还是逐渐加重？",)


def test_answers_follow_the_requested_language() -> None:
    result = triage("胸痛 伴 大汗", Language.EN)
    assert result.red_flags[0].label.startswith("Chest pain with sweating")
    assert "Does the pain spread to the left arm, jaw or back?" in result.follow_up


def test_scanner_reports_clause_punctuation_as_breakers() -> None:
    kinds = [(t.kind.value, t.value) for t in scan(normalise("无发热，咳嗽"))]
    assert kinds == [("negation", "无"), ("symptom", "fever"), ("breaker", ","), ("symptom", "cough")]


def test_lexicon_specialties_are_codes_of_the_specialties_table() -> None:
    sql = (MIGRATIONS_DIR / "0004_identity_audit.sql").read_text()
    table = set(re.findall(r"\('([a-z_]+)', '[^']*', '[^']*'\)", sql))
    used = {code for s in SYMPTOMS.values() for code in s.specialties}
    used |= {code for f in RED_FLAGS for code in f.boost}
    assert table and used <= table, sorted(used - table)
