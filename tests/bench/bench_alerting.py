"""Alarm engine throughput: samples/s through observe_batch on a simulated ward, one core.

Workload: a ward at 1 Hz (HR, SpO2, RR) with cuff BP every 15 min, hourly temperature, charted ACVPU and
air/oxygen, oximeter motion episodes, and a few patients deteriorating (so incidents open, escalate and
clear). Batches of 1 s of event time, as edges upload them live, and of 60 s, as a backlog after an outage.
Baseline in the same run: observe() sample by sample (the unvectorised path, what the edge runs live).
Target (issue 6): the cloud keeps up with 50,000 samples/s on ingest.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from proto.alerting import AlarmEngine
from proto.vitals import VitalsBatch, from_micros
from tests.bench.harness import BenchContext, median
from tests.unit.proto.test_alerting_helpers import WardPlan, ward_batches


def _batched(batches: list[VitalsBatch]) -> tuple[float, AlarmEngine, int]:
    engine = AlarmEngine()
    changes = 0
    start = time.perf_counter()
    for batch in batches:
        changes += len(engine.observe_batch(batch))
        changes += len(engine.tick(from_micros(int(batch.time_us[-1]))))
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed, engine, changes


def _one_by_one(batches: list[VitalsBatch], limit: int) -> float:
    engine = AlarmEngine()
    rows = [s for b in batches for s in b.iter_samples()][:limit]
    start = time.perf_counter()
    for s in rows:
        engine.observe(s.patient_id, s.kind, s.value, s.time, s.quality, s.device_id or None)
    return len(rows) / (time.perf_counter() - start)


def run(ctx: BenchContext) -> None:
    plan = WardPlan(patients=ctx.scale(200, 8), seconds=ctx.scale(900, 120), seed=6,
                    deteriorating=(1, 5), artefact_rate=0.001)
    live = list(ward_batches(plan, batch_seconds=1))
    backlog = list(ward_batches(plan, batch_seconds=60))
    rounds = ctx.scale(3, 1)

    baseline = median([_one_by_one(live, ctx.scale(60_000, 2_000)) for _ in range(rounds)])
    results = [_batched(live) for _ in range(rounds)]
    rate = median([r[0] for r in results])
    _, engine, changes = results[-1]
    ctx.record("observe_batch, live (1 s batches)", rate, "samples/s", baseline=baseline,
               baseline_name="observe() per sample", target=50_000)
    backlog_rate = median([_batched(backlog)[0] for _ in range(rounds)])
    ctx.record("observe_batch, backlog (60 s batches)", backlog_rate, "samples/s", baseline=baseline,
               baseline_name="observe() per sample", target=50_000)
    ctx.record("samples walked one by one (live)", 100.0 * engine.stats.walked / engine.stats.samples, "%",
               higher_is_better=False, notes=f"{changes} alarm changes, {len(engine.patients)} patients")

    now = from_micros(int(live[-1].time_us[-1])) + dt.timedelta(seconds=1)
    tick_times = []
    for i in range(ctx.scale(50, 3)):
        start = time.perf_counter()
        engine.tick(now + dt.timedelta(seconds=i))
        tick_times.append((time.perf_counter() - start) * 1000)
    ctx.record(f"tick with {len(engine.patients)} patients", median(tick_times), "ms", higher_is_better=False)

    start = time.perf_counter()
    state = json.dumps(engine.to_dict())
    AlarmEngine.from_dict(json.loads(state))
    ctx.record("state save + restore", (time.perf_counter() - start) * 1000, "ms", higher_is_better=False,
               notes=f"{len(state) / len(engine.patients):.0f} bytes/patient as JSON")
