"""API policy knobs (session lifetime, login throttling, live-update limits, FHIR time zone).

They sit beside `cloud.settings.ApiSettings` (host, port) and are read from the same `TELEMED_API__*`
variables (e.g. `TELEMED_API__SESSION_TTL_S`), so they can later move into `api.*` unchanged.
"""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field

from cloud.api.auth.ratelimit import LoginLimit
from proto.settings import SettingsError, load_settings


@dataclass(frozen=True)
class ApiPolicy:
    """How the API treats sessions, logins, live clients and FHIR dates."""

    session_ttl_s: int = 12 * 3600  # one clinical shift
    cookie_secure: bool = True  # browsers still send Secure cookies to http://localhost
    login_max_failures: int = 5
    login_window_s: int = 15 * 60
    live_queue_size: int = 256  # updates buffered per WebSocket client before it is dropped as too slow
    live_revalidate_s: float = 30.0  # how often a live connection re-checks that its session is still valid
    fhir_timezone: str = "Asia/Shanghai"  # for FHIR dates given without a UTC offset

    def __post_init__(self) -> None:
        if self.session_ttl_s < 60:
            raise ValueError("session_ttl_s must be at least 60")
        if self.live_queue_size < 1 or self.live_revalidate_s <= 0:
            raise ValueError("live_queue_size and live_revalidate_s must be positive")
        try:
            zoneinfo.ZoneInfo(self.fhir_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.fhir_timezone!r}") from exc
        LoginLimit(self.login_max_failures, dt.timedelta(seconds=self.login_window_s))

    @property
    def session_ttl(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.session_ttl_s)

    @property
    def login_limit(self) -> LoginLimit:
        return LoginLimit(self.login_max_failures, dt.timedelta(seconds=self.login_window_s))


@dataclass(frozen=True)
class _PolicyEnvironment:
    api: ApiPolicy = field(default_factory=ApiPolicy)


def load_policy(environ: Mapping[str, str] = os.environ) -> ApiPolicy:
    """The policy from `TELEMED_API__*` variables over the defaults (SettingsError naming a bad key)."""
    wanted = {key: value for key, value in environ.items() if key.startswith("TELEMED_API__")}
    try:
        return load_settings(_PolicyEnvironment, environ=wanted).api
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError("api", str(exc)) from exc
