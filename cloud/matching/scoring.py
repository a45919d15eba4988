"""Explainable scoring of eligible experts (pure, vectorised over the ExpertMatrix).

Each factor is normalised to [0, 1] and weighted; the score is the sum of the weighted factors, added in
FACTORS order, so the contributions returned with a match add up to its score exactly. Ties are broken by
expert id, so a ranking is deterministic.

    title          专业技术职务 ladder: resident 0, attending 1/3, associate chief 2/3, chief 1
    experience     years of practice, saturating at `experience_cap_years`
    response_time  1 - median historical response / response horizon (0.5 without history)
    load           1 - held consultations / max concurrent
    language       1 if the expert speaks the request's language
    rating         Bayesian mean of outcome ratings (1..5) shrunk towards `rating_prior_mean`, mapped to [0, 1]
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from cloud.matching.filters import FilterOutcome, MatchRequest
from cloud.matching.matrix import TITLES, ExpertMatrix, FloatArray, IntArray

FACTORS: tuple[str, ...] = ("title", "experience", "response_time", "load", "language", "rating")


@dataclass(frozen=True)
class ScoringWeights:
    """Factor weights (they need not sum to 1) and normalisation constants."""

    title: float = 0.20
    experience: float = 0.15
    response_time: float = 0.20
    load: float = 0.15
    language: float = 0.10
    rating: float = 0.20
    experience_cap_years: float = 30.0
    response_horizon_s: float = 15 * 60.0  # the routine response target: answering later earns nothing
    rating_prior_mean: float = 3.5
    rating_prior_weight: float = 5.0

    def __post_init__(self) -> None:
        if any(getattr(self, f) < 0 for f in FACTORS):
            raise ValueError("weights must be non-negative")
        if self.experience_cap_years <= 0 or self.response_horizon_s <= 0 or self.rating_prior_weight <= 0:
            raise ValueError("normalisation constants must be positive")

    def vector(self) -> FloatArray:
        return np.array([getattr(self, f) for f in FACTORS], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Match:
    """A ranked expert with the factor values and each factor's contribution to the score."""

    expert_id: uuid.UUID
    rank: int
    score: float
    factors: Mapping[str, float]  # normalised values in [0, 1]
    contributions: Mapping[str, float]  # weight * factor; they sum to `score`


def factor_matrix(
    matrix: ExpertMatrix, rows: IntArray, request: MatchRequest, weights: ScoringWeights, load: IntArray,
) -> FloatArray:
    """The normalised factors of experts `rows` (with current `load` per expert), shape (len(rows), len(FACTORS))."""
    title = matrix.title_rank[rows] / (len(TITLES) - 1)
    experience = np.minimum(matrix.years[rows], weights.experience_cap_years) / weights.experience_cap_years
    response = matrix.median_response_s[rows]
    response_time = np.where(np.isnan(response), 0.5,
                             np.clip(1.0 - np.nan_to_num(response) / weights.response_horizon_s, 0.0, 1.0))
    spare = np.clip(1.0 - load[rows] / np.maximum(matrix.max_concurrent[rows], 1), 0.0, 1.0)
    language_column = matrix.language_vocabulary.get(request.language)
    language = (matrix.languages[rows, language_column].astype(np.float64) if language_column is not None
                else np.zeros(len(rows), dtype=np.float64))
    prior = weights.rating_prior_mean * weights.rating_prior_weight
    mean_rating = (matrix.rating_sum[rows] + prior) / (matrix.rating_count[rows] + weights.rating_prior_weight)
    rating = np.clip((mean_rating - 1.0) / 4.0, 0.0, 1.0)
    return np.column_stack([title, experience, response_time, spare, language, rating]).astype(np.float64)


def weighted(factors: FloatArray, weights: ScoringWeights) -> tuple[FloatArray, FloatArray]:
    """(contributions, scores): the score is accumulated column by column in FACTORS order."""
    contributions = factors * weights.vector()
    scores = np.zeros(factors.shape[0], dtype=np.float64)
    for column in range(contributions.shape[1]):
        scores = scores + contributions[:, column]
    return contributions, scores


def rank(
    matrix: ExpertMatrix, eligible: FilterOutcome, request: MatchRequest, weights: ScoringWeights, *, limit: int,
) -> list[Match]:
    """The best `limit` eligible experts, best first (score descending, then expert id)."""
    rows = np.flatnonzero(eligible.mask)
    if rows.size == 0 or limit <= 0:
        return []
    factors = factor_matrix(matrix, rows, request, weights, eligible.load)
    contributions, scores = weighted(factors, weights)
    if rows.size > limit * 4:
        # Keep a superset of the top `limit` (every row scoring at least the limit-th best) before the exact sort.
        threshold = np.partition(scores, rows.size - limit)[rows.size - limit]
        keep = np.flatnonzero(scores >= threshold)
        rows, factors, contributions, scores = rows[keep], factors[keep], contributions[keep], scores[keep]
    order = np.lexsort((matrix.order[rows], -scores))[:limit]
    return [
        Match(
            expert_id=matrix.ids[rows[i]],
            rank=position + 1,
            score=float(scores[i]),
            factors=dict(zip(FACTORS, (float(v) for v in factors[i]), strict=True)),
            contributions=dict(zip(FACTORS, (float(v) for v in contributions[i]), strict=True)),
        )
        for position, i in enumerate(order)
    ]
