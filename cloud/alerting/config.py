"""Settings of the alerting service (`TELEMED_ALERTING__<KEY>` or `TELEMED_ALERTING_<KEY>` variables).

cloud/settings.py has no `[alerting]` section (another package owns it), so these come from the defaults
below and the environment only; `load()` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cloud.alerting.notify.retry import RetryPolicy
from proto import topics
from proto.settings import load_settings


@dataclass(frozen=True)
class AlertingSettings:
    """How the alerting service subscribes, evaluates, saves its state, pages and retries."""

    # MQTT: a stable client id with a persistent session (clean start off): a restarted service gets the
    # messages published while it was down, for `session_expiry_s`.
    client_id: str = "telemed-alerting"
    session_expiry_s: int = 600
    receive_maximum: int = 256
    queue_size: int = 512
    batch_max_messages: int = 64
    edge_cache_ttl_s: float = 5.0
    # How often the engines' state is saved; a clean stop always saves. A crash loses at most this much
    # evaluation context (alarm delays are at most a minute, rate rules look back 10-30 min), never an
    # incident. Saving a large ward costs a few hundred ms of the engine thread, so not too often.
    state_save_interval_s: float = 300.0
    # How often timers (pages, acknowledgement timeouts, auto-resolve) are checked between messages.
    sweep_interval_s: float = 1.0
    # How often on-call rotas, departments and policies are re-read.
    directory_refresh_s: float = 10.0
    # Dashboard URL that an incident id is appended to in pages ("" for none).
    link_base: str = ""
    delivery_concurrency: int = 8
    retry_max_attempts: int = 6
    retry_initial_s: float = 2.0
    retry_max_s: float = 60.0
    anomaly_enabled: bool = True
    anomaly_interval_s: float = 60.0
    # Baselines fitted per round at most (a fit reads a patient's day and takes ~0.1-1 s of CPU): a large
    # deployment reaches every patient over several rounds instead of stalling one.
    anomaly_fits_per_round: int = 50

    def __post_init__(self) -> None:
        topics.check_id(self.client_id, "alerting client")
        if self.sweep_interval_s <= 0 or self.state_save_interval_s <= 0 or self.directory_refresh_s <= 0:
            raise ValueError("alerting intervals must be positive")
        if not 1 <= self.receive_maximum <= 65_535:  # MQTT v5 section 3.1.2.11.3
            raise ValueError("alerting.receive_maximum must be 1..65535")

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.retry_max_attempts, self.retry_initial_s, self.retry_max_s)


@dataclass(frozen=True)
class _Root:
    alerting: AlertingSettings = field(default_factory=AlertingSettings)


def load(environ: Mapping[str, str] = os.environ) -> AlertingSettings:
    """The alerting settings from the defaults and `TELEMED_ALERTING__*` variables."""
    return load_settings(_Root, environ=environ).alerting
