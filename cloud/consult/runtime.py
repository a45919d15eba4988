"""Composition of the consultation feature inside the API process: the service (matching, signing keys,
policy), the clock and the SLA scheduler, started and stopped by the app's lifespan.

A test may put its own clock on `app.state.consult_clock` before the app starts; routes and the scheduler
then both read time from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from cloud.consult.policy import ConsultPolicy, load_consult_policy
from cloud.consult.scheduler import Clock, SlaScheduler, utc_now
from cloud.consult.service import ConsultationService
from cloud.consult.signing_keys import ReportKeys
from cloud.identity.keys import KeySource
from cloud.identity.keystore import VerifiedKeys
from cloud.matching.service import MatchingService
from cloud.settings import CloudSettings


@dataclass(frozen=True, eq=False)
class ConsultRuntime:
    service: ConsultationService
    scheduler: SlaScheduler
    clock: Clock


def build_service(keys: VerifiedKeys, policy: ConsultPolicy) -> ConsultationService:
    """The consultation service (no I/O until used); `keys` protect the experts' signing keys."""
    matching = MatchingService(weights=policy.weights, refresh_s=policy.matrix_refresh_s,
                               rerank_top_n=policy.rerank_top_n, rerank_min_samples=policy.rerank_min_samples)
    return ConsultationService(matching=matching, keys=ReportKeys(keys), policy=policy)


async def start_consult(
    app: FastAPI, settings: CloudSettings, pool: AsyncConnectionPool[AsyncConnection[Any]],
) -> ConsultRuntime:
    """Create the service on `app.state.consult` and start the SLA scheduler (unless disabled)."""
    policy: ConsultPolicy = getattr(app.state, "consult_policy", None) or load_consult_policy()
    clock: Clock = getattr(app.state, "consult_clock", None) or utc_now
    # The identity feature's verified key ring when the app has one (one ring per process), else our own.
    keys: VerifiedKeys = (getattr(app.state, "identity_keys", None)
                          or VerifiedKeys(KeySource.from_settings(settings)))
    service = build_service(keys, policy)
    scheduler = SlaScheduler(service, pool, clock=clock, interval_s=policy.scheduler_interval_s)
    if policy.scheduler_enabled:
        scheduler.start()
    runtime = ConsultRuntime(service=service, scheduler=scheduler, clock=clock)
    app.state.consult = runtime
    return runtime


async def stop_consult(app: FastAPI) -> None:
    """Stop the scheduler started by `start_consult` (a no-op if it never started)."""
    runtime: ConsultRuntime | None = getattr(app.state, "consult", None)
    if runtime is not None:
        await runtime.scheduler.stop()
