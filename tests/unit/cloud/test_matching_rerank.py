"""Learned re-ranking: trained only on enough two-sided history, otherwise the rules stand."""

from __future__ import annotations

import dataclasses
import random
import uuid

from cloud.matching.filters import MatchRequest
from cloud.matching.matrix import ExpertMatrix, ExpertRecord
from cloud.matching.rerank import OfferOutcome, labelled, rerank, train
from cloud.matching.scoring import FACTORS, Match, ScoringWeights
from cloud.matching.service import rank_experts

LANGUAGE = FACTORS.index("language")


def history(count: int, seed: int = 3) -> list[OfferOutcome]:
    """Offers whose good outcome depends on language only: the model must learn to prefer it."""
    rng = random.Random(seed)
    outcomes = []
    for _ in range(count):
        factors = [rng.random() for _ in FACTORS]
        factors[LANGUAGE] = float(rng.random() < 0.5)
        good = rng.random() < (0.9 if factors[LANGUAGE] else 0.1)
        outcomes.append(OfferOutcome(tuple(factors), accepted=True, rating=5 if good else 2))
    return outcomes


def test_labels_come_from_answers_and_ratings() -> None:
    f = tuple(0.5 for _ in FACTORS)
    x, y = labelled([
        OfferOutcome(f, accepted=False, rating=None),  # declined or expired: bad
        OfferOutcome(f, accepted=True, rating=4),  # accepted and well rated: good
        OfferOutcome(f, accepted=True, rating=3),
        OfferOutcome(f, accepted=True, rating=None),  # outcome unknown yet: left out
        OfferOutcome((0.1, 0.2), accepted=False, rating=None),  # other factor set: left out
    ])
    assert x.shape == (3, len(FACTORS)) and y.tolist() == [0, 1, 0]


def test_too_little_or_one_sided_history_means_no_model() -> None:
    assert train(history(50), min_samples=200) is None
    one_sided = [dataclasses.replace(o, rating=5) for o in history(400)]
    assert train(one_sided, min_samples=200) is None


def match(n: int, language: float, score: float) -> Match:
    factors = dict.fromkeys(FACTORS, 0.5) | {"language": language}
    return Match(uuid.UUID(int=n), rank=n, score=score, factors=factors, contributions=dict.fromkeys(FACTORS, 0.0))


def test_a_model_reorders_by_predicted_outcome_and_explains_itself() -> None:
    model = train(history(600), min_samples=200)
    assert model is not None and model.samples == 600
    ranked = [match(1, language=0.0, score=0.9), match(2, language=1.0, score=0.8)]

    result = rerank(ranked, model)

    assert [r.match.expert_id.int for r in result] == [2, 1]
    assert [r.match.rank for r in result] == [1, 2]
    learned = result[0].learned
    assert learned is not None and learned.probability > 0.5
    assert learned.contributions["language"] > 0
    assert set(learned.contributions) == set(FACTORS)


def test_without_a_model_the_rule_order_stands() -> None:
    ranked = [match(1, 0.0, 0.9), match(2, 1.0, 0.8)]
    assert [r.match for r in rerank(ranked, None)] == ranked


def test_rank_experts_uses_the_model_over_the_rule_top_n() -> None:
    base = ExpertRecord(uuid.UUID(int=1), frozenset({"cardiology"}), frozenset(), "chief", 30, frozenset({"zh"}),
                        "510000", 3, True, True)
    records = [base, dataclasses.replace(base, expert_id=uuid.UUID(int=2), title="resident", years_practice=2,
                                         languages=frozenset({"zh", "en"}))]
    matrix = ExpertMatrix.build(records)
    request = MatchRequest(specialty="cardiology", language="en")
    rules = rank_experts(matrix, request, ScoringWeights(), None, limit=2, top_n=10)
    assert [c.match.expert_id.int for c in rules.candidates] == [1, 2]
    learned = rank_experts(matrix, request, ScoringWeights(), train(history(600), min_samples=200), limit=1,
                           top_n=10)
    assert learned.method == "learned"
    assert [c.match.expert_id.int for c in learned.candidates] == [2]
