"""The experts as column arrays (pure numpy): what filtering and scoring read, one row per expert.

Built from `ExpertRecord`s (profile of migration 0004 plus history statistics); sets (specialties, ICD-10
prefixes, languages) become boolean matrices over a per-matrix vocabulary so a request is answered by
column lookups instead of a Python loop over experts. Load and availability change by the minute: they come
per request as a `LiveState` (cloud.matching.filters), read only for the experts that pass the other filters.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# 专业技术职务 ladder (professional titles of Chinese physicians), lowest first.
TITLES: tuple[str, ...] = ("resident", "attending", "associate_chief", "chief")

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ExpertRecord:
    """One expert as matching sees them."""

    expert_id: uuid.UUID
    specialties: frozenset[str]
    icd10_prefixes: frozenset[str]
    title: str
    years_practice: int
    languages: frozenset[str]
    licence_region: str
    max_concurrent: int
    on_duty: bool
    online: bool
    median_response_s: float | None = None  # historical offer-to-answer time; None without history
    rating_sum: float = 0.0  # outcome ratings (1..5) of closed consultations
    rating_count: int = 0
    load: int = 0  # consultations held now (pending offers, accepted, in session)


def _vocabulary(sets: Iterable[frozenset[str]]) -> dict[str, int]:
    return {item: i for i, item in enumerate(sorted(set().union(*sets)))}


def _membership(sets: Sequence[frozenset[str]], vocabulary: Mapping[str, int]) -> BoolArray:
    matrix = np.zeros((len(sets), max(1, len(vocabulary))), dtype=np.bool_)
    for row, items in enumerate(sets):
        for item in items:
            matrix[row, vocabulary[item]] = True
    return matrix


@dataclass(frozen=True, eq=False)
class ExpertMatrix:
    """Column arrays over experts; `order` is each expert's position in id order (the deterministic tie-break)."""

    ids: tuple[uuid.UUID, ...]
    positions: Mapping[int, int]  # expert id (as its 128-bit int: hashing a UUID object is slow) -> row
    order: IntArray
    specialty_vocabulary: Mapping[str, int]
    specialties: BoolArray
    prefix_vocabulary: Mapping[str, int]
    prefixes: BoolArray
    has_prefixes: BoolArray
    language_vocabulary: Mapping[str, int]
    languages: BoolArray
    region_vocabulary: Mapping[str, int]
    regions: IntArray
    available: BoolArray
    max_concurrent: IntArray
    load: IntArray
    title_rank: IntArray
    years: FloatArray
    median_response_s: FloatArray  # NaN without history
    rating_sum: FloatArray
    rating_count: FloatArray

    @classmethod
    def build(cls, records: Sequence[ExpertRecord]) -> ExpertMatrix:
        """The matrix of `records` (ValueError on an unknown title)."""
        unknown = {r.title for r in records} - set(TITLES)
        if unknown:
            raise ValueError(f"unknown titles {sorted(unknown)}")
        ids = tuple(r.expert_id for r in records)
        specialty_vocabulary = _vocabulary(r.specialties for r in records)
        prefix_vocabulary = _vocabulary(r.icd10_prefixes for r in records)
        language_vocabulary = _vocabulary(r.languages for r in records)
        region_vocabulary = _vocabulary(frozenset({r.licence_region}) for r in records)
        order = np.empty(len(ids), dtype=np.int64)
        order[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
        return cls(
            ids=ids,
            positions={expert_id.int: row for row, expert_id in enumerate(ids)},
            order=order,
            specialty_vocabulary=specialty_vocabulary,
            specialties=_membership([r.specialties for r in records], specialty_vocabulary),
            prefix_vocabulary=prefix_vocabulary,
            prefixes=_membership([r.icd10_prefixes for r in records], prefix_vocabulary),
            has_prefixes=np.array([bool(r.icd10_prefixes) for r in records], dtype=np.bool_),
            language_vocabulary=language_vocabulary,
            languages=_membership([r.languages for r in records], language_vocabulary),
            region_vocabulary=region_vocabulary,
            regions=np.array([region_vocabulary[r.licence_region] for r in records], dtype=np.int64),
            available=np.array([r.on_duty and r.online for r in records], dtype=np.bool_),
            max_concurrent=np.array([r.max_concurrent for r in records], dtype=np.int64),
            load=np.array([r.load for r in records], dtype=np.int64),
            title_rank=np.array([TITLES.index(r.title) for r in records], dtype=np.int64),
            years=np.array([r.years_practice for r in records], dtype=np.float64),
            median_response_s=np.array(
                [np.nan if r.median_response_s is None else r.median_response_s for r in records], dtype=np.float64
            ),
            rating_sum=np.array([r.rating_sum for r in records], dtype=np.float64),
            rating_count=np.array([r.rating_count for r in records], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, ids: Iterable[uuid.UUID]) -> IntArray:
        """Row numbers of the known ids among `ids` (unknown ones are skipped)."""
        rows = [self.positions.get(i.int) for i in ids]
        return np.array([r for r in rows if r is not None], dtype=np.int64)
