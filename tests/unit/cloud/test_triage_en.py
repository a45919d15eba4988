"""Triage of English chief complaints: word boundaries, negation, onset and answers in English."""

from __future__ import annotations

import pytest

from cloud.triage.lexicon import Language, Urgency
from cloud.triage.triage import triage


def test_chest_pain_with_sweating_for_two_hours() -> None:
    result = triage("Chest pain with sweating for 2 hours")

    assert result.language is Language.EN
    assert result.urgency is Urgency.EMERGENCY
    assert [f.id for f in result.red_flags] == ["acs"]
    assert result.red_flags[0].label == "Chest pain with sweating: suspected acute coronary syndrome"
    assert result.specialties[0].specialty == "cardiology"
    assert result.onset_hours == 2.0
    assert "Does the pain spread to the left arm, jaw or back?" in result.follow_up
    assert all(q.isascii() for q in result.follow_up)


def test_cough_and_fever_for_three_days() -> None:
    result = triage("Cough and fever for 3 days")
    assert result.urgency is Urgency.ROUTINE
    assert result.specialties[0].specialty == "respiratory"
    assert result.symptoms == ("cough", "fever")
    assert result.onset_hours == 72.0


@pytest.mark.parametrize("text, present, negated", [
    ("no chest pain but cough", ("cough",), ("chest_pain",)),
    ("Denies chest pain or shortness of breath. Headache 1 day", ("headache",), ("chest_pain", "dyspnea")),
    ("fever, no cough", ("fever",), ("cough",)),
    ("without vomiting; abdominal pain since yesterday", ("abdominal_pain",), ("vomiting",)),
])
def test_negation(text: str, present: tuple[str, ...], negated: tuple[str, ...]) -> None:
    result = triage(text)
    assert (result.symptoms, result.negated) == (present, negated)


def test_terms_match_whole_words_only() -> None:
    # "cough" inside "coughed"? no term; "fit" inside "fitness" and "no" inside "nothing" must not match.
    assert triage("nothing unusual, fitness check").symptoms == ()
    assert triage("chills and rigors").symptoms == ("fever",)


def test_longest_phrase_wins() -> None:
    assert triage("severe headache since this morning").symptoms == ("thunderclap_headache",)
    assert triage("severe headache").urgency is Urgency.EMERGENCY
    assert triage("headache").urgency is Urgency.ROUTINE


@pytest.mark.parametrize("text, hours", [
    ("cough for two weeks", 336), ("fever 3d", 72), ("palpitations for half an hour", 0.5), ("rash 2 months", 1440),
])
def test_onset_in_english(text: str, hours: float) -> None:
    assert triage(text).onset_hours == hours


def test_stroke_signs_are_an_emergency_for_neurology() -> None:
    result = triage("sudden facial droop and slurred speech 40 minutes ago")
    assert result.urgency is Urgency.EMERGENCY
    assert result.specialties[0].specialty == "neurology"
    assert {f.id for f in result.red_flags} == {"stroke_weakness", "stroke_speech"}


def test_follow_up_questions_are_capped_and_cover_every_symptom_first() -> None:
    result = triage("chest pain, shortness of breath, palpitations, cough and fever for 1 day", max_questions=5)
    assert len(result.follow_up) == 5
    firsts = {"Is the pain crushing, tight or sharp?", "Can the patient lie flat? Any waking at night breathless?",
              "Are the palpitations constant or do they come and go?",
              "Is the cough productive? What colour is the sputum?", "What was the highest temperature?"}
    assert set(result.follow_up) == firsts


def test_chinese_text_can_be_answered_in_english_and_vice_versa() -> None:
    assert triage("cough", Language.ZH).follow_up[0] == "症状是什么时候开始的？是突然发生还是逐渐加重？"
