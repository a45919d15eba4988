"""Expert matching against the database: an in-memory ExpertMatrix refreshed from the DB, live loads and
availability per request, the rule ranking, and the learned re-ranking when history allows.

The matrix (profiles of migration 0004 plus response-time and rating statistics) is rebuilt every
`refresh_s`; between rebuilds each request reads only what changes by the minute: the consultations every
expert holds and the duty/online flags changed since the build. The outcome model is retrained at each
rebuild from past offers (cloud.matching.rerank).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cloud.api.auth.store import Conn
from cloud.matching import rerank
from cloud.matching.filters import FilterOutcome, LiveState, MatchRequest, eligible
from cloud.matching.matrix import ExpertMatrix, ExpertRecord
from cloud.matching.scoring import FACTORS, ScoringWeights, rank

log = logging.getLogger(__name__)

HISTORY_LIMIT = 20_000  # most recent answered offers used to train the outcome model

_PROFILES = """
SELECT p.user_id, p.specialties, p.icd10_prefixes, p.title, p.years_practice, p.languages, p.licence_region,
       p.max_concurrent, p.on_duty, p.online
  FROM expert_profiles p JOIN users u ON u.user_id = p.user_id
 WHERE 'expert' = ANY(u.roles) AND NOT u.disabled
"""
_RESPONSE_TIMES = """
SELECT expert_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM responded_at - offered_at))
  FROM consultation_offers WHERE outcome IN ('accepted', 'declined') AND responded_at IS NOT NULL
 GROUP BY expert_id
"""
_RATINGS = """
SELECT assigned_expert_id, sum(rating)::float8, count(rating)
  FROM consultations WHERE rating IS NOT NULL AND assigned_expert_id IS NOT NULL GROUP BY assigned_expert_id
"""
_LOADS = """
SELECT expert_id, count(*) FROM (
    SELECT assigned_expert_id AS expert_id FROM consultations WHERE state IN ('accepted', 'in_session')
    UNION ALL SELECT expert_id FROM consultation_offers WHERE outcome = 'pending'
) AS held GROUP BY expert_id
"""
_STATUS_SINCE = "SELECT user_id, on_duty AND online FROM expert_profiles WHERE status_changed_at >= %s"
_HISTORY = """
SELECT o.factors, o.outcome = 'accepted', c.rating
  FROM consultation_offers o JOIN consultations c USING (consultation_id)
 WHERE o.outcome IN ('accepted', 'declined', 'expired') AND o.method <> 'admin'
 ORDER BY o.offered_at DESC LIMIT %s
"""


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Ranked candidates with their explanations, the filter funnel and the ranking method used."""

    candidates: list[rerank.Reranked]
    remaining: Mapping[str, int]
    experts: int  # experts known to matching
    method: str  # "rules" or "learned"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    matrix: ExpertMatrix
    model: rerank.OutcomeModel | None
    built_at: float  # monotonic
    db_time: dt.datetime  # database clock at build: availability changes after it are read live


async def load_records(conn: Conn) -> list[ExpertRecord]:
    """Every enabled expert with a profile, with response-time and rating statistics."""
    responses = {row[0]: float(row[1]) for row in await (await conn.execute(_RESPONSE_TIMES)).fetchall()}
    ratings = {row[0]: (float(row[1]), int(row[2])) for row in await (await conn.execute(_RATINGS)).fetchall()}
    records = []
    for row in await (await conn.execute(_PROFILES)).fetchall():
        expert_id = row[0]
        rating_sum, rating_count = ratings.get(expert_id, (0.0, 0))
        records.append(ExpertRecord(
            expert_id=expert_id, specialties=frozenset(row[1]), icd10_prefixes=frozenset(row[2]), title=row[3],
            years_practice=int(row[4]), languages=frozenset(row[5]), licence_region=row[6],
            max_concurrent=int(row[7]), on_duty=bool(row[8]), online=bool(row[9]),
            median_response_s=responses.get(expert_id), rating_sum=rating_sum, rating_count=rating_count,
        ))
    return records


async def load_history(conn: Conn, limit: int = HISTORY_LIMIT) -> list[rerank.OfferOutcome]:
    """Past answered offers with the factors they were made on."""
    outcomes = []
    for factors, accepted, rating in await (await conn.execute(_HISTORY, (limit,))).fetchall():
        if not isinstance(factors, dict) or set(factors) != set(FACTORS):
            continue
        outcomes.append(rerank.OfferOutcome(
            factors=tuple(float(factors[f]) for f in FACTORS), accepted=bool(accepted), rating=rating,
        ))
    return outcomes


async def live_state(conn: Conn, *, since: dt.datetime) -> LiveState:
    """Consultations each expert holds now (pending offers, accepted, in session) and the duty/online flags
    changed since `since`."""
    loads = {row[0].int: int(row[1]) for row in await (await conn.execute(_LOADS)).fetchall()}
    changed = {row[0].int: bool(row[1]) for row in await (await conn.execute(_STATUS_SINCE, (since,))).fetchall()}
    return LiveState(loads=loads, available=changed)


class MatchingService:
    """Ranks experts for consultations; one per process, shared by requests and the SLA scheduler."""

    def __init__(
        self, *, weights: ScoringWeights, refresh_s: float, rerank_top_n: int, rerank_min_samples: int,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._weights = weights
        self._refresh_s = refresh_s
        self._top_n = rerank_top_n
        self._min_samples = rerank_min_samples
        self._monotonic = monotonic
        self._snapshot: _Snapshot | None = None
        self._lock = asyncio.Lock()

    @property
    def weights(self) -> ScoringWeights:
        return self._weights

    def invalidate(self) -> None:
        """Rebuild at the next request (a profile was edited)."""
        self._snapshot = None

    async def _current(self, conn: Conn) -> _Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and self._monotonic() - snapshot.built_at < self._refresh_s:
            return snapshot
        async with self._lock:
            snapshot = self._snapshot
            if snapshot is not None and self._monotonic() - snapshot.built_at < self._refresh_s:
                return snapshot
            row = await (await conn.execute("SELECT now()")).fetchone()
            assert row is not None
            records = await load_records(conn)
            history = await load_history(conn)
            matrix = ExpertMatrix.build(records)
            model = await asyncio.to_thread(rerank.train, history, min_samples=self._min_samples)
            snapshot = _Snapshot(matrix=matrix, model=model, built_at=self._monotonic(), db_time=row[0])
            self._snapshot = snapshot
            log.info("matching.refreshed experts=%d history=%d model=%s", len(matrix), len(history),
                     "learned" if model is not None else "rules")
            return snapshot

    async def match(self, conn: Conn, request: MatchRequest, *, limit: int) -> MatchResult:
        """The best `limit` eligible experts for `request`, explained."""
        snapshot = await self._current(conn)
        live = await live_state(conn, since=snapshot.db_time)
        return rank_experts(snapshot.matrix, request, self._weights, snapshot.model, limit=limit, top_n=self._top_n,
                            live=live)


def rank_experts(
    matrix: ExpertMatrix, request: MatchRequest, weights: ScoringWeights, model: rerank.OutcomeModel | None,
    *, limit: int, top_n: int, live: LiveState | None = None,
) -> MatchResult:
    """Filter, score and (with a model) re-rank: the pure core of `MatchingService.match`."""
    outcome: FilterOutcome = eligible(matrix, request, live)
    ranked = rank(matrix, outcome, request, weights, limit=max(limit, top_n if model is not None else limit))
    reordered = rerank.rerank(ranked, model)
    return MatchResult(candidates=reordered[:limit], remaining=outcome.remaining, experts=len(matrix),
                       method="learned" if model is not None and reordered else "rules")


def explanation(candidate: rerank.Reranked, weights: ScoringWeights) -> dict[str, Any]:
    """A candidate's explanation as JSON: each factor's value, weight and contribution, and the model's view."""
    match = candidate.match
    body: dict[str, Any] = {
        "score": match.score,
        "factors": {
            f: {"value": match.factors[f], "weight": getattr(weights, f), "contribution": match.contributions[f]}
            for f in FACTORS
        },
    }
    if candidate.learned is not None:
        body["learned"] = {"probability": candidate.learned.probability, "intercept": candidate.learned.intercept,
                           "contributions": dict(candidate.learned.contributions)}
    return body
