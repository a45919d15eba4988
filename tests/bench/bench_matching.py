"""Expert matching latency over 10,000 experts: filters, explainable scores and the top 10, per request.

Each request varies (specialty, ICD-10 codes, region, language, exclusions) and is answered the way the
service does it: the in-memory ExpertMatrix with live loads and availability, hard filters, scoring, top-k
(the two database reads of live state are not included). p95 carries the target (< 10 ms); the same-run
baseline scores the same experts with a plain Python loop over records, which is what the matrix replaces.
"""

from __future__ import annotations

import random
import time
import uuid

from cloud.matching.filters import LiveState, MatchRequest, covering_prefixes
from cloud.matching.matrix import TITLES, ExpertMatrix, ExpertRecord
from cloud.matching.scoring import ScoringWeights
from cloud.matching.service import rank_experts
from tests.bench.harness import BenchContext, percentile

SPECIALTIES = ("cardiology", "respiratory", "neurology", "gastroenterology", "endocrinology", "nephrology",
               "general_surgery", "orthopedics", "pediatrics", "obstetrics_gynecology", "emergency",
               "critical_care", "oncology", "infectious_disease", "geriatrics", "internal_medicine")
PREFIXES = ("I2", "I21", "I48", "I50", "J1", "J44", "J45", "E11", "E10", "N18", "K25", "K80", "C34", "G40", "I63")
CODES = ("I21.4", "I48", "I50.0", "J18.9", "J44.1", "E11.9", "N18.5", "K25.0", "C34.9", "G40.9", "I63.9", "I10")
REGIONS = ("510000", "520000", "530000", "500000", "610000")


def experts(count: int, rng: random.Random) -> list[ExpertRecord]:
    return [
        ExpertRecord(
            expert_id=uuid.UUID(int=rng.getrandbits(128)),
            specialties=frozenset(rng.sample(SPECIALTIES, rng.randint(1, 2))),
            icd10_prefixes=frozenset(rng.sample(PREFIXES, rng.randint(0, 3))),
            title=rng.choice(TITLES), years_practice=rng.randint(0, 40),
            languages=frozenset(rng.sample(("zh", "en", "yue"), rng.randint(1, 2))) | {"zh"},
            licence_region=rng.choice(REGIONS), max_concurrent=rng.randint(1, 6),
            on_duty=rng.random() < 0.7, online=rng.random() < 0.8,
            median_response_s=None if rng.random() < 0.2 else rng.uniform(30, 1800),
            rating_sum=float(rng.randint(0, 200)), rating_count=rng.randint(0, 40),
        )
        for _ in range(count)
    ]


def requests(count: int, records: list[ExpertRecord], rng: random.Random) -> list[MatchRequest]:
    return [
        MatchRequest(
            specialty=rng.choice(SPECIALTIES),
            icd10_codes=tuple(rng.sample(CODES, rng.randint(0, 2))),
            regions=frozenset({rng.choice(REGIONS)}) if rng.random() < 0.8 else None,
            language=rng.choice(("zh", "zh", "en")),
            exclude=frozenset(r.expert_id for r in rng.sample(records, 3)),
        )
        for _ in range(count)
    ]


def naive_top(records: list[ExpertRecord], request: MatchRequest, w: ScoringWeights, limit: int) -> list[uuid.UUID]:
    """The rules scored record by record in Python (the baseline the vectorised matrix replaces)."""
    prefixes = {p for code in request.icd10_codes for p in covering_prefixes(code)}
    scored = []
    for r in records:
        if request.specialty not in r.specialties or r.expert_id in request.exclude:
            continue
        if prefixes and r.icd10_prefixes and not (r.icd10_prefixes & prefixes):
            continue
        if request.regions is not None and r.licence_region not in request.regions:
            continue
        if not (r.on_duty and r.online) or r.load >= r.max_concurrent:
            continue
        response = 0.5 if r.median_response_s is None else min(1.0, max(0.0, 1 - r.median_response_s / 900))
        rating = ((r.rating_sum + 17.5) / (r.rating_count + 5) - 1) / 4
        score = (w.title * TITLES.index(r.title) / 3 + w.experience * min(r.years_practice, 30) / 30
                 + w.response_time * response + w.load * (1 - r.load / r.max_concurrent)
                 + w.language * (request.language in r.languages) + w.rating * rating)
        scored.append((-score, r.expert_id))
    return [expert_id for _, expert_id in sorted(scored)[:limit]]


def run(ctx: BenchContext) -> None:
    rng = random.Random(20260301)
    count = ctx.scale(10_000, 500)
    records = experts(count, rng)
    matrix = ExpertMatrix.build(records)
    weights = ScoringWeights()
    batch = requests(ctx.scale(400, 20), records, rng)
    # A busy network: a fifth of the experts hold consultations, 1 % changed duty status since the refresh.
    live = LiveState(loads={r.expert_id.int: rng.randint(0, 3) for r in rng.sample(records, count // 5)},
                     available={r.expert_id.int: rng.random() < 0.5 for r in rng.sample(records, count // 100)})

    for request in batch[:10]:  # warm-up
        rank_experts(matrix, request, weights, None, limit=10, top_n=20, live=live)
    latencies = []
    for request in batch:
        start = time.perf_counter()
        result = rank_experts(matrix, request, weights, None, limit=10, top_n=20, live=live)
        latencies.append((time.perf_counter() - start) * 1000)
        assert len(result.candidates) <= 10
    naive = []
    for request in batch[: ctx.scale(100, 10)]:
        start = time.perf_counter()
        naive_top(records, request, weights, 10)
        naive.append((time.perf_counter() - start) * 1000)

    p95 = percentile(latencies, 95)
    ctx.record(f"match p95, {count} experts (ms)", p95, "ms", baseline=percentile(naive, 95),
               baseline_name="python loop over records, p95", target=10.0, higher_is_better=False)
    ctx.record(f"match p50, {count} experts (ms)", percentile(latencies, 50), "ms", higher_is_better=False)
    start = time.perf_counter()
    ExpertMatrix.build(records)
    ctx.record(f"matrix build, {count} experts (ms)", (time.perf_counter() - start) * 1000, "ms",
               higher_is_better=False, notes="once per refresh (matching.refresh_s), not per request")
