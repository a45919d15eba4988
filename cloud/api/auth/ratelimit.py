"""Login throttling: a sliding window of failed attempts per (username, client IP).

The window lives in the database (`login_attempts`) so every API replica enforces the same limit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoginLimit:
    """At most `max_failures` failed logins per (username, IP) within any `window`.

    5 per 15 minutes follows the OWASP Authentication Cheat Sheet's example lockout policy; a success
    clears the pair's failures.
    """

    max_failures: int = 5
    window: dt.timedelta = dt.timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if self.window <= dt.timedelta(0):
            raise ValueError("window must be positive")


def retry_after(failures: Sequence[dt.datetime], *, now: dt.datetime, limit: LoginLimit) -> dt.timedelta | None:
    """How long the pair must wait before the next attempt, or None if it may try now.

    `failures` are the pair's failed attempts, in any order; those outside the window are ignored.
    """
    recent = sorted(at for at in failures if at > now - limit.window)
    if len(recent) < limit.max_failures:
        return None
    # The pair may try again once enough failures have left the window to bring it under the limit.
    release = recent[len(recent) - limit.max_failures] + limit.window
    return max(release - now, dt.timedelta(seconds=1))
