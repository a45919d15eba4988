"""Consultation policy knobs, read from `TELEMED_CONSULT__*` variables (e.g. `TELEMED_CONSULT__SLA__URGENT_RESPONSE_S`,
`TELEMED_CONSULT__SCHEDULER_INTERVAL_S`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cloud.consult.sla import SlaPolicy
from cloud.matching.scoring import ScoringWeights
from proto.settings import SettingsError, load_settings


@dataclass(frozen=True)
class ConsultPolicy:
    """SLA targets, the scheduler's pace and matching limits."""

    sla: SlaPolicy = field(default_factory=SlaPolicy)
    weights: ScoringWeights = field(default_factory=ScoringWeights)
    scheduler_interval_s: float = 5.0  # how often the SLA timers are evaluated (deadlines are minutes apart)
    scheduler_enabled: bool = True
    matrix_refresh_s: float = 60.0  # expert profiles and history statistics; loads are read live
    match_limit: int = 10  # candidates shown with explanations
    rerank_top_n: int = 20  # rule candidates the learned model may re-order
    rerank_min_samples: int = 200  # labelled past offers needed before a model is trusted
    cross_region: bool = False  # True: ignore licence regions (e.g. a national expert network)

    def __post_init__(self) -> None:
        if self.scheduler_interval_s <= 0 or self.matrix_refresh_s <= 0:
            raise ValueError("scheduler_interval_s and matrix_refresh_s must be positive")
        if self.match_limit < 1 or self.rerank_top_n < 1 or self.rerank_min_samples < 2:
            raise ValueError("match_limit, rerank_top_n must be >= 1 and rerank_min_samples >= 2")


@dataclass(frozen=True)
class _ConsultEnvironment:
    consult: ConsultPolicy = field(default_factory=ConsultPolicy)


def load_consult_policy(environ: Mapping[str, str] = os.environ) -> ConsultPolicy:
    """The policy from `TELEMED_CONSULT__*` over the defaults (SettingsError naming a bad key)."""
    wanted = {key: value for key, value in environ.items() if key.startswith("TELEMED_CONSULT__")}
    try:
        return load_settings(_ConsultEnvironment, environ=wanted).consult
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError("consult", str(exc)) from exc
