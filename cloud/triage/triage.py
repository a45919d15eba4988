"""Pre-consultation triage of a chief complaint in Chinese or English (pure, driven by cloud.triage.lexicon).

Chinese has no spaces, so the text is scanned left to right taking the longest lexicon term at each position
(maximum matching, the classic dictionary segmentation); English terms must also sit on word boundaries.
Negation follows NegEx (Chapman et al., J Biomed Inform 2001): a cue ("无", "否认", "no", "denies")
negates the symptoms after it until clause punctuation or a scope breaker ("但", "伴", "but", "with").
The first stated duration ("2小时", "3 days") is taken as the onset of the chief complaint.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cloud.triage.lexicon import (
    BREAKERS_EN,
    BREAKERS_ZH,
    CLAUSE_PUNCTUATION,
    NEGATIONS_EN,
    NEGATIONS_ZH,
    ONSET_QUESTION,
    RED_FLAGS,
    SYMPTOMS,
    Language,
    Question,
    RedFlag,
    Urgency,
)

FALLBACK_SPECIALTY = "general_practice"
MAX_SPECIALTIES = 5


class TokenKind(enum.Enum):
    SYMPTOM = "symptom"
    NEGATION = "negation"
    BREAKER = "breaker"


@dataclass(frozen=True, slots=True)
class Token:
    """A lexicon term found at `start` in the normalised text."""

    kind: TokenKind
    value: str  # symptom id, or the cue itself
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Finding:
    """A symptom mentioned in the complaint, and whether it was negated there."""

    symptom: str
    term: str
    negated: bool


@dataclass(frozen=True, slots=True)
class SpecialtyScore:
    specialty: str
    score: float  # share of the evidence, the scores of one result sum to 1


@dataclass(frozen=True, slots=True)
class RedFlagHit:
    id: str
    urgency: Urgency
    label: str


@dataclass(frozen=True, slots=True)
class TriageResult:
    """What triage suggests for one complaint; texts are in `language`."""

    language: Language
    urgency: Urgency
    specialties: tuple[SpecialtyScore, ...]
    red_flags: tuple[RedFlagHit, ...]
    symptoms: tuple[str, ...]  # present, in order of first mention
    negated: tuple[str, ...]  # mentioned only as absent
    findings: tuple[Finding, ...]
    follow_up: tuple[str, ...]
    onset_hours: float | None
    recognised: bool  # False: no lexicon symptom found (the specialty is the fallback)


def normalise(text: str) -> str:
    """NFKC (full-width digits and punctuation to ASCII forms) and lower case: offsets stay per character."""
    return unicodedata.normalize("NFKC", text).lower()


def _is_ascii_word(term: str) -> bool:
    return term.isascii()


def _build_terms() -> dict[str, tuple[TokenKind, str]]:
    terms: dict[str, tuple[TokenKind, str]] = {}

    def add(term: str, kind: TokenKind, value: str) -> None:
        key = normalise(term)
        if key in terms and terms[key] != (kind, value):
            raise ValueError(f"lexicon term {term!r} means both {terms[key]} and {(kind, value)}")
        terms[key] = (kind, value)

    for symptom in SYMPTOMS.values():
        for term in (*symptom.zh, *symptom.en):
            add(term, TokenKind.SYMPTOM, symptom.id)
    for cue in (*NEGATIONS_ZH, *NEGATIONS_EN):
        add(cue, TokenKind.NEGATION, cue)
    for word in (*BREAKERS_ZH, *BREAKERS_EN):
        add(word, TokenKind.BREAKER, word)
    return terms


_TERMS = _build_terms()
_LENGTHS = sorted({len(t) for t in _TERMS}, reverse=True)


def _word_char(text: str, index: int) -> bool:
    return 0 <= index < len(text) and text[index].isascii() and text[index].isalnum()


def _match_at(text: str, i: int) -> str | None:
    """The longest term starting at `i` (ASCII terms only on word boundaries)."""
    for length in _LENGTHS:
        candidate = text[i:i + length]
        if len(candidate) != length or candidate not in _TERMS:
            continue
        if _is_ascii_word(candidate) and (_word_char(text, i - 1) or _word_char(text, i + length)):
            continue
        return candidate
    return None


def scan(text: str) -> list[Token]:
    """Lexicon tokens of normalised `text` by longest match; clause punctuation comes out as breakers."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        if text[i] in CLAUSE_PUNCTUATION:
            tokens.append(Token(TokenKind.BREAKER, text[i], i, i + 1))
            i += 1
            continue
        term = _match_at(text, i)
        if term is None:
            if _word_char(text, i):  # skip the rest of an unknown English word: no match inside words
                while _word_char(text, i):
                    i += 1
            else:
                i += 1
            continue
        kind, value = _TERMS[term]
        tokens.append(Token(kind, value, i, i + len(term)))
        i += len(term)
    return tokens


def findings(text: str, tokens: Iterable[Token]) -> list[Finding]:
    """Symptoms with their negation status (NegEx scope: from a cue to the next breaker)."""
    result: list[Finding] = []
    negating = False
    for token in tokens:
        if token.kind is TokenKind.NEGATION:
            negating = True
        elif token.kind is TokenKind.BREAKER:
            negating = False
        else:
            result.append(Finding(token.value, text[token.start:token.end], negating))
    return result


_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_EN_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
               "eight": 8, "nine": 9, "ten": 10, "half a": 0.5, "half an": 0.5}
_UNIT_HOURS: Mapping[str, float] = {
    "分钟": 1 / 60, "小时": 1, "钟头": 1, "天": 24, "日": 24, "周": 168, "星期": 168, "月": 720, "年": 8760,
    "min": 1 / 60, "mins": 1 / 60, "minute": 1 / 60, "minutes": 1 / 60, "h": 1, "hr": 1, "hrs": 1, "hour": 1,
    "hours": 1, "d": 24, "day": 24, "days": 24, "w": 168, "wk": 168, "wks": 168, "week": 168, "weeks": 168,
    "month": 720, "months": 720, "y": 8760, "yr": 8760, "yrs": 8760, "year": 8760, "years": 8760,
}
_EN_WORDS = "|".join(sorted((re.escape(w) for w in _EN_NUMBERS), key=len, reverse=True))
_UNITS = "|".join(sorted((re.escape(u) for u in _UNIT_HOURS), key=len, reverse=True))
# number, optional 个 and 半 ("一个半小时"), unit, optional 半 after the unit ("一天半").
_DURATION = re.compile(
    rf"(?<![a-z0-9.])(\d+(?:\.\d+)?|[零一二两三四五六七八九十]+|半|(?:{_EN_WORDS})(?=\s))"
    rf"\s*(?:个)?(半)?\s*({_UNITS})(?![a-z])(半)?"
)


def _zh_number(text: str) -> float:
    if text == "半":
        return 0.5
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_ZH_DIGITS.get(tens, 1) if tens else 1) * 10 + (_ZH_DIGITS.get(ones, 0) if ones else 0)
    value = 0
    for char in text:
        value = value * 10 + _ZH_DIGITS[char]
    return value


def parse_onset_hours(text: str) -> float | None:
    """The first duration in normalised `text` in hours ("2小时" 2, "半天" 12, "一天半" 36, "3 days" 72), or None."""
    match = _DURATION.search(text)
    if match is None:
        return None
    number, half_before, unit, half_after = match.groups()
    if number[0].isdigit():
        value = float(number)
    elif number in _EN_NUMBERS:
        value = float(_EN_NUMBERS[number])
    else:
        value = _zh_number(number)
    if half_before or half_after:
        value += 0.5
    return value * _UNIT_HOURS[unit]


def detect_language(text: str) -> Language:
    """zh when the text contains CJK ideographs, else en."""
    return Language.ZH if any("\u4e00" <= c <= "\u9fff" for c in text) else Language.EN


def _fires(flag: RedFlag, present: frozenset[str], onset_hours: float | None) -> bool:
    if not flag.requires <= present:
        return False
    return flag.max_onset_hours is None or (onset_hours is not None and onset_hours <= flag.max_onset_hours)


def red_flags(present: frozenset[str], onset_hours: float | None) -> list[RedFlag]:
    """The flags raised, most urgent first; a flag is dropped when a more specific or more urgent one that
    covers its symptoms also fired (chest pain alone is implied by chest pain with sweating)."""
    fired = [f for f in RED_FLAGS if _fires(f, present, onset_hours)]
    kept = [f for f in fired if not any(
        other is not f and f.requires <= other.requires and other.urgency.rank >= f.urgency.rank
        and (other.requires != f.requires or other.urgency.rank > f.urgency.rank)
        for other in fired
    )]
    return sorted(kept, key=lambda f: -f.urgency.rank)


def _specialty_scores(present: list[str], flags: list[RedFlag]) -> list[SpecialtyScore]:
    totals: dict[str, float] = {}
    for symptom_id in present:
        for specialty, weight in SYMPTOMS[symptom_id].specialties.items():
            totals[specialty] = totals.get(specialty, 0.0) + weight
    for flag in flags:
        for specialty, weight in flag.boost.items():
            totals[specialty] = totals.get(specialty, 0.0) + weight
    if not totals:
        return [SpecialtyScore(FALLBACK_SPECIALTY, 1.0)]
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:MAX_SPECIALTIES]
    whole = sum(weight for _, weight in ranked)
    return [SpecialtyScore(code, round(weight / whole, 4)) for code, weight in ranked]


def _questions(present: list[str], onset_hours: float | None, language: Language, limit: int) -> list[str]:
    """Follow-up questions: the onset question when no duration was given, then round-robin over the
    symptoms' questions (each symptom's first question before any second one), without repeats."""
    queues: list[list[Question]] = [list(SYMPTOMS[s].questions) for s in present]
    ordered: list[Question] = [ONSET_QUESTION] if onset_hours is None else []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    texts: list[str] = []
    for question in ordered:
        text = question.text(language)
        if text not in texts:
            texts.append(text)
    return texts[:limit]


def triage(text: str, language: Language | None = None, *, max_questions: int = 6) -> TriageResult:
    """Suggested specialties, urgency with the red flags found, and follow-up questions for a complaint."""
    language = language or detect_language(text)
    normal = normalise(text)
    found = findings(normal, scan(normal))
    present: list[str] = []
    for finding in found:
        if not finding.negated and finding.symptom not in present:
            present.append(finding.symptom)
    negated = [f.symptom for f in found if f.negated and f.symptom not in present]
    onset = parse_onset_hours(normal)
    flags = red_flags(frozenset(present), onset)
    urgency = max((f.urgency for f in flags), key=lambda u: u.rank, default=Urgency.ROUTINE)
    return TriageResult(
        language=language,
        urgency=urgency,
        specialties=tuple(_specialty_scores(present, flags)),
        red_flags=tuple(RedFlagHit(f.id, f.urgency, f.label(language)) for f in flags),
        symptoms=tuple(present),
        negated=tuple(dict.fromkeys(negated)),
        findings=tuple(found),
        follow_up=tuple(_questions(present, onset, language, max_questions)),
        onset_hours=onset,
        recognised=bool(present),
    )
