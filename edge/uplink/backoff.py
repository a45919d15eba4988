"""Reconnect delays: jittered exponential backoff as a pure function of the attempt and a random draw."""

from __future__ import annotations

# 2**62 times any sane initial delay is far beyond any cap; stops float overflow for absurd attempt counts.
_MAX_EXPONENT = 62


def backoff_delay(attempt: int, *, initial_s: float, max_s: float, jitter: float, rand: float) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry).

    The ceiling doubles from `initial_s` up to `max_s`; `jitter` (0..1) is the fraction of it that is
    randomised with `rand` (a draw from [0, 1)), so a fleet of edges that lost the broker together does
    not reconnect in lockstep ("equal jitter" at 0.5, "full jitter" at 1).
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if not 0 <= jitter <= 1 or not 0 <= rand < 1 or initial_s <= 0 or max_s < initial_s:
        raise ValueError("backoff needs 0 <= jitter <= 1, 0 <= rand < 1 and 0 < initial_s <= max_s")
    ceiling = min(max_s, initial_s * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return ceiling * (1.0 - jitter * rand)
