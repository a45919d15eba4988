"""Hard filters of expert matching (pure, vectorised): who may be offered a consultation at all.

In order: the requested specialty; ICD-10 expertise (an expert declaring prefixes must cover one of the
request's codes, an expert declaring none covers their whole specialty); licence region (the province of
the patient's site, when recorded: under 《医师执业注册管理办法》 (2017) a physician's registered practice
location is a province); on duty and online; spare capacity (held consultations below `max_concurrent`); and not
already offered this consultation. The count left after each filter explains an empty result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from cloud.matching.matrix import BoolArray, ExpertMatrix, IntArray

FILTERS: tuple[str, ...] = ("specialty", "icd10", "region", "available", "capacity", "not_excluded")


@dataclass(frozen=True, slots=True)
class MatchRequest:
    """What a consultation asks of its expert."""

    specialty: str
    icd10_codes: tuple[str, ...] = ()  # dotted form, e.g. "I21.4"
    regions: frozenset[str] | None = None  # acceptable licence regions; None: anywhere
    language: str = "zh"
    exclude: frozenset[uuid.UUID] = field(default_factory=frozenset)  # already offered, declined or expired


@dataclass(frozen=True, slots=True)
class LiveState:
    """What changes by the minute, read per request, keyed by expert id as int (`uuid.UUID.int`: hashing
    UUID objects is slow): consultations held, and duty/online changes since the matrix was built."""

    loads: Mapping[int, int]
    available: Mapping[int, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FilterOutcome:
    """The experts passing every filter, how many were left after each one (in FILTERS order), and the loads
    used (current for every expert that reached the capacity filter)."""

    mask: BoolArray
    remaining: Mapping[str, int]
    load: IntArray


def covering_prefixes(code: str) -> list[str]:
    """Every declarable expertise prefix covering `code`: "I21.4" -> ["I", "I2", "I21", "I21.4"]."""
    code = code.strip().upper()
    return [code[:n] for n in range(1, len(code) + 1) if not code[:n].endswith(".")]


def _column(matrix: BoolArray, vocabulary: Mapping[str, int], keys: list[str]) -> BoolArray:
    columns = [vocabulary[k] for k in keys if k in vocabulary]
    if not columns:
        return np.zeros(matrix.shape[0], dtype=np.bool_)
    found: BoolArray = np.asarray(matrix[:, columns].any(axis=1), dtype=np.bool_)
    return found


def _available(matrix: ExpertMatrix, live: LiveState | None) -> BoolArray:
    if live is None or not live.available:
        return matrix.available
    patched = matrix.available.copy()
    for expert_id, value in live.available.items():
        row = matrix.positions.get(expert_id)
        if row is not None:
            patched[row] = value
    return patched


def _loads(matrix: ExpertMatrix, live: LiveState | None, rows: IntArray) -> IntArray:
    if live is None:
        return matrix.load
    load = np.zeros(len(matrix), dtype=np.int64)
    if rows.size:
        ids = matrix.ids
        load[rows] = [live.loads.get(ids[r].int, 0) for r in rows.tolist()]
    return load


def eligible(matrix: ExpertMatrix, request: MatchRequest, live: LiveState | None = None) -> FilterOutcome:
    """Apply the hard filters of `request` to every expert of `matrix` (loads and availability from `live`
    when given, else the matrix snapshot's)."""
    size = len(matrix)
    mask = _column(matrix.specialties, matrix.specialty_vocabulary, [request.specialty])
    remaining: dict[str, int] = {"specialty": int(mask.sum())}
    if request.icd10_codes:
        prefixes = sorted({p for code in request.icd10_codes for p in covering_prefixes(code)})
        mask &= _column(matrix.prefixes, matrix.prefix_vocabulary, prefixes) | ~matrix.has_prefixes
    remaining["icd10"] = int(mask.sum())
    if request.regions is not None:
        wanted = [matrix.region_vocabulary[r] for r in request.regions if r in matrix.region_vocabulary]
        mask &= np.isin(matrix.regions, np.array(wanted, dtype=np.int64))
    remaining["region"] = int(mask.sum())
    mask &= _available(matrix, live)
    remaining["available"] = int(mask.sum())
    load = _loads(matrix, live, np.flatnonzero(mask))  # only the experts still in the running
    mask &= load < matrix.max_concurrent
    remaining["capacity"] = int(mask.sum())
    if request.exclude:
        mask[matrix.index_of(request.exclude)] = False
    remaining["not_excluded"] = int(mask.sum())
    assert list(remaining) == list(FILTERS) and mask.shape == (size,)
    return FilterOutcome(mask=mask, remaining=remaining, load=load)
