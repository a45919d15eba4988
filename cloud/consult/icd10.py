"""The bundled ICD-10 subset (cloud.consult.icd10_data): validation of report diagnoses and search in zh/en.

Codes are compared in the dotted form (`I21.4`); `I214` and ` i21.4 ` are accepted as input. Search takes a
code prefix ("I21", "j18.") or words of the English title or characters of the Chinese name, ranking exact
codes first, then names that start with the query, then names that contain it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cloud.consult.icd10_data import ICD10_ROWS

_CODE = re.compile(r"^([A-Z])(\d{2})\.?([0-9A-Z]{1,2})?$")
_CODE_PREFIX = re.compile(r"^[A-Z](\d{1,2}(\.[0-9A-Z]{0,2})?)?$")


@dataclass(frozen=True, slots=True)
class Icd10Code:
    """One code with its English title and Chinese name."""

    code: str
    en: str
    zh: str


class UnknownCodeError(ValueError):
    """A code that is malformed or not in the bundled list."""

    def __init__(self, code: str) -> None:
        super().__init__(f"unknown ICD-10 code {code!r}")
        self.code = code


CODES: Mapping[str, Icd10Code] = MappingProxyType({code: Icd10Code(code, en, zh) for code, en, zh in ICD10_ROWS})
_ORDER = {code: index for index, code in enumerate(sorted(CODES))}


def normalise_code(text: str) -> str:
    """`text` in the dotted upper-case form ("i214" -> "I21.4"); UnknownCodeError when not code-shaped."""
    match = _CODE.match(text.strip().upper())
    if match is None:
        raise UnknownCodeError(text)
    letter, category, sub = match.groups()
    return f"{letter}{category}.{sub}" if sub else f"{letter}{category}"


def lookup(text: str) -> Icd10Code:
    """The bundled code for `text`; UnknownCodeError when malformed or not bundled."""
    code = normalise_code(text)
    found = CODES.get(code)
    if found is None:
        raise UnknownCodeError(text)
    return found


def _rank_text(entry: Icd10Code, words: list[str]) -> int | None:
    """0: a name starts with the query; 1: a word of the title starts with each query word; 2: contains."""
    en = entry.en.lower()
    joined = " ".join(words)
    if en.startswith(joined) or entry.zh.startswith(joined):
        return 0
    if not all(w in en or w in entry.zh for w in words):
        return None
    title_words = re.split(r"[^a-z0-9]+", en)
    if all(any(t.startswith(w) for t in title_words) or w in entry.zh for w in words):
        return 1
    return 2


def search(query: str, *, limit: int = 20) -> list[Icd10Code]:
    """Codes matching `query` (a code prefix, English words or Chinese characters), best first."""
    text = query.strip()
    if not text:
        return []
    upper = text.upper()
    ranked: list[tuple[int, int, Icd10Code]] = []
    if _CODE_PREFIX.match(upper):
        compact = upper.replace(".", "")
        for entry in CODES.values():
            bare = entry.code.replace(".", "")
            if bare.startswith(compact):
                ranked.append((0 if bare == compact else 1, _ORDER[entry.code], entry))
    if not ranked:
        words = text.lower().split()
        for entry in CODES.values():
            rank = _rank_text(entry, words)
            if rank is not None:
                ranked.append((2 + rank, _ORDER[entry.code], entry))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [entry for _, _, entry in ranked[:limit]]

