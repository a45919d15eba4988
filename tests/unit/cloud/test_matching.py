"""Expert matching: the hard filters, explainable scores that sum exactly, and deterministic ranking."""

from __future__ import annotations

import dataclasses
import random
import uuid

import numpy as np
import pytest

from cloud.matching.filters import FILTERS, LiveState, MatchRequest, covering_prefixes, eligible
from cloud.matching.matrix import ExpertMatrix, ExpertRecord
from cloud.matching.scoring import FACTORS, ScoringWeights, rank
from cloud.matching.service import rank_experts

SICHUAN, GUIZHOU = "510000", "520000"
WEIGHTS = ScoringWeights()


def expert(n: int, **changes: object) -> ExpertRecord:
    base = ExpertRecord(
        expert_id=uuid.UUID(int=n), specialties=frozenset({"cardiology"}), icd10_prefixes=frozenset(),
        title="attending", years_practice=10, languages=frozenset({"zh"}), licence_region=SICHUAN,
        max_concurrent=3, on_duty=True, online=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def ids(matrix: ExpertMatrix, mask: np.ndarray) -> set[int]:
    return {matrix.ids[i].int for i in np.flatnonzero(mask)}


CARDIO = MatchRequest(specialty="cardiology", regions=frozenset({SICHUAN}))


def test_each_hard_filter_removes_whom_it_should() -> None:
    matrix = ExpertMatrix.build([
        expert(1),
        expert(2, specialties=frozenset({"respiratory"})),
        expert(3, licence_region=GUIZHOU),
        expert(4, on_duty=False),
        expert(5, online=False),
        expert(6, load=3),
        expert(7),
    ])
    outcome = eligible(matrix, dataclasses.replace(CARDIO, exclude=frozenset({uuid.UUID(int=7)})))

    assert ids(matrix, outcome.mask) == {1}
    assert list(outcome.remaining) == list(FILTERS)
    assert outcome.remaining == {"specialty": 6, "icd10": 6, "region": 5, "available": 3, "capacity": 2,
                                 "not_excluded": 1}


def test_icd10_expertise_prefixes() -> None:
    matrix = ExpertMatrix.build([
        expert(1, icd10_prefixes=frozenset({"I2"})),  # ischaemic heart disease
        expert(2, icd10_prefixes=frozenset({"I48"})),  # atrial fibrillation only
        expert(3, icd10_prefixes=frozenset({"I21.4"})),
        expert(4),  # declares no prefixes: covers the whole specialty
        expert(5, icd10_prefixes=frozenset({"E11"})),
    ])
    mi = dataclasses.replace(CARDIO, icd10_codes=("I21.4",))
    assert ids(matrix, eligible(matrix, mi).mask) == {1, 3, 4}
    af = dataclasses.replace(CARDIO, icd10_codes=("I48", "I10"))
    assert ids(matrix, eligible(matrix, af).mask) == {2, 4}
    assert ids(matrix, eligible(matrix, CARDIO).mask) == {1, 2, 3, 4, 5}  # no codes: no expertise filter
    assert covering_prefixes("I21.4") == ["I", "I2", "I21", "I21.4"]


def test_no_region_means_any_licence_region() -> None:
    matrix = ExpertMatrix.build([expert(1), expert(2, licence_region=GUIZHOU)])
    anywhere = dataclasses.replace(CARDIO, regions=None)
    assert ids(matrix, eligible(matrix, anywhere).mask) == {1, 2}
    nowhere = dataclasses.replace(CARDIO, regions=frozenset({"110000"}))
    assert ids(matrix, eligible(matrix, nowhere).mask) == set()


def test_live_loads_and_availability_override_the_snapshot() -> None:
    matrix = ExpertMatrix.build([expert(1, load=2), expert(2), expert(3, on_duty=False)])
    live = LiveState(loads={1: 3}, available={3: True, 99: True})  # 99: unknown to the matrix
    outcome = eligible(matrix, CARDIO, live)
    assert ids(matrix, outcome.mask) == {2, 3}
    assert outcome.load.tolist() == [3, 0, 0]  # expert 1's snapshot load of 2 is replaced, not added to
    assert ids(matrix, eligible(matrix, CARDIO).mask) == {1, 2}  # without live state: the snapshot


def random_experts(count: int, seed: int) -> list[ExpertRecord]:
    rng = random.Random(seed)
    titles = ("resident", "attending", "associate_chief", "chief")
    return [
        expert(
            n + 1, title=rng.choice(titles), years_practice=rng.randint(0, 40),
            languages=frozenset(rng.sample(["zh", "en", "yue"], rng.randint(1, 3))),
            max_concurrent=rng.randint(1, 5), load=rng.randint(0, 2),
            median_response_s=None if rng.random() < 0.2 else rng.uniform(30, 2400),
            rating_sum=float(rng.randint(0, 100)), rating_count=rng.randint(0, 25),
        )
        for n in range(count)
    ]


def test_explanations_sum_exactly_to_the_score_and_lie_in_range() -> None:
    records = [r for r in random_experts(300, seed=1) if r.rating_sum <= 5 * r.rating_count]
    matrix = ExpertMatrix.build(records)
    request = dataclasses.replace(CARDIO, language="en")
    matches = rank(matrix, eligible(matrix, request), request, WEIGHTS, limit=50)

    assert len(matches) == 50
    for m in matches:
        assert sum(m.contributions[f] for f in FACTORS) == m.score  # exact, not approximate
        assert all(0.0 <= m.factors[f] <= 1.0 for f in FACTORS)
        assert all(m.contributions[f] == pytest.approx(m.factors[f] * getattr(WEIGHTS, f)) for f in FACTORS)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert [m.rank for m in matches] == list(range(1, 51))


def test_factor_values() -> None:
    matrix = ExpertMatrix.build([
        expert(1, title="chief", years_practice=45, languages=frozenset({"zh", "en"}), load=1, max_concurrent=4,
               median_response_s=225.0, rating_sum=50.0, rating_count=10),
        expert(2, title="resident", years_practice=0, median_response_s=None, load=0),
    ])
    request = dataclasses.replace(CARDIO, language="en")
    by_id = {m.expert_id.int: m for m in rank(matrix, eligible(matrix, request), request, WEIGHTS, limit=5)}
    chief, resident = by_id[1].factors, by_id[2].factors
    assert chief["title"] == 1.0 and resident["title"] == 0.0
    assert chief["experience"] == 1.0 and resident["experience"] == 0.0  # saturates at 30 years
    assert chief["response_time"] == pytest.approx(0.75) and resident["response_time"] == 0.5  # no history
    assert chief["load"] == 0.75 and resident["load"] == 1.0
    assert chief["language"] == 1.0 and resident["language"] == 0.0
    # Bayesian mean: (50 + 3.5 * 5) / (10 + 5) = 4.5 -> (4.5 - 1) / 4
    assert chief["rating"] == pytest.approx(0.875) and resident["rating"] == pytest.approx(0.625)


def test_ranking_is_deterministic_with_ties_broken_by_expert_id() -> None:
    twins = [expert(n) for n in (5, 3, 9, 1, 7)]  # identical profiles: identical scores
    matrix = ExpertMatrix.build(twins)
    first = rank(matrix, eligible(matrix, CARDIO), CARDIO, WEIGHTS, limit=5)
    assert [m.expert_id.int for m in first] == [1, 3, 5, 7, 9]
    shuffled = ExpertMatrix.build(list(reversed(twins)))
    again = rank(shuffled, eligible(shuffled, CARDIO), CARDIO, WEIGHTS, limit=5)
    assert [m.expert_id for m in again] == [m.expert_id for m in first]


def test_the_top_k_shortcut_agrees_with_a_full_sort() -> None:
    records = random_experts(2000, seed=7)
    matrix = ExpertMatrix.build(records)
    outcome = eligible(matrix, CARDIO)
    top = rank(matrix, outcome, CARDIO, WEIGHTS, limit=10)
    everything = rank(matrix, outcome, CARDIO, WEIGHTS, limit=len(records))
    assert [m.expert_id for m in top] == [m.expert_id for m in everything[:10]]


def test_rank_experts_reports_the_funnel_and_the_rules_method() -> None:
    matrix = ExpertMatrix.build([expert(1), expert(2, online=False)])
    result = rank_experts(matrix, CARDIO, WEIGHTS, None, limit=5, top_n=20)
    assert result.method == "rules" and result.experts == 2
    assert [c.match.expert_id.int for c in result.candidates] == [1]
    assert result.remaining["available"] == 1
    assert all(c.learned is None for c in result.candidates)


def test_weights_must_be_non_negative() -> None:
    with pytest.raises(ValueError):
        ScoringWeights(title=-0.1)
