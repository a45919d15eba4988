"""Optional learned re-ranking from consultation history (scikit-learn), falling back to the rules.

Training rows are past offers: the normalised factors the expert had when offered (stored with the offer)
and whether the offer ended well, i.e. accepted and later rated 4 or 5. Declined and expired offers are
negatives; accepted offers not yet rated are left out. A LogisticRegression is fitted only with enough rows
of both classes; otherwise there is no model and the rule ranking stands. With a model, the rules' top
candidates are re-ordered by the predicted probability of a good outcome (ties by rule score), and each
candidate's explanation gains the model's per-factor contributions to the log-odds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cloud.matching.scoring import FACTORS, Match

if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

GOOD_RATING = 4


@dataclass(frozen=True, slots=True)
class OfferOutcome:
    """One past offer: the factors at offer time, whether it was accepted, and the outcome rating if any."""

    factors: tuple[float, ...]
    accepted: bool
    rating: int | None


@dataclass(frozen=True, slots=True)
class LearnedExplanation:
    """Why the model likes a candidate: probability, intercept and per-factor log-odds contributions."""

    probability: float
    intercept: float
    contributions: dict[str, float]


@dataclass(frozen=True, slots=True)
class Reranked:
    """A candidate after re-ranking: the rule match (its `rank` updated) and the model's view, if any."""

    match: Match
    learned: LearnedExplanation | None


@dataclass(frozen=True, eq=False)
class OutcomeModel:
    """A fitted model and what it was trained on."""

    model: LogisticRegression
    samples: int
    positives: int

    def explain(self, factors: np.ndarray) -> list[LearnedExplanation]:
        """Probability and contributions for each row of `factors` (shape (n, len(FACTORS)))."""
        probabilities = self.model.predict_proba(factors)[:, 1]
        coefficients = self.model.coef_[0]
        intercept = float(self.model.intercept_[0])
        return [
            LearnedExplanation(
                probability=float(p), intercept=intercept,
                contributions={f: float(c * x) for f, c, x in zip(FACTORS, coefficients, row, strict=True)},
            )
            for p, row in zip(probabilities, factors, strict=True)
        ]


def labelled(outcomes: Sequence[OfferOutcome]) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) from the offers with a known outcome."""
    rows: list[tuple[float, ...]] = []
    labels: list[int] = []
    for outcome in outcomes:
        if len(outcome.factors) != len(FACTORS):
            continue  # stored under another factor set: not comparable
        if not outcome.accepted:
            rows.append(outcome.factors)
            labels.append(0)
        elif outcome.rating is not None:
            rows.append(outcome.factors)
            labels.append(1 if outcome.rating >= GOOD_RATING else 0)
    return np.array(rows, dtype=np.float64).reshape(-1, len(FACTORS)), np.array(labels, dtype=np.int64)


def train(outcomes: Sequence[OfferOutcome], *, min_samples: int = 200, min_per_class: int = 20) -> OutcomeModel | None:
    """A model of good outcomes, or None when the history is too small or one-sided (use the rules)."""
    x, y = labelled(outcomes)
    positives = int(y.sum())
    if len(y) < min_samples or positives < min_per_class or len(y) - positives < min_per_class:
        return None
    # Imported here: scikit-learn takes a second or more to import, and most processes never need it.
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(x, y)
    return OutcomeModel(model=model, samples=len(y), positives=positives)


def rerank(matches: Sequence[Match], model: OutcomeModel | None) -> list[Reranked]:
    """`matches` re-ordered by the model (stable on rule order for ties), or unchanged without a model."""
    if model is None or not matches:
        return [Reranked(m, None) for m in matches]
    factors = np.array([[m.factors[f] for f in FACTORS] for m in matches], dtype=np.float64)
    explained = model.explain(factors)
    order = sorted(range(len(matches)), key=lambda i: (-explained[i].probability, matches[i].rank))
    return [
        Reranked(dataclasses.replace(matches[i], rank=position + 1), explained[i])
        for position, i in enumerate(order)
    ]
