"""When to try a failed delivery again (pure): capped exponential backoff with jitter.

The delay is drawn uniformly from [0.1, 1] x min(cap, initial * 2**(attempt-1)): jitter (the AWS
Architecture Blog, "Exponential Backoff And Jitter") keeps deliveries that failed together from retrying in
lockstep against a recovering receiver, and the floor keeps a retry from following a failure at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` in all; delays start near `initial_s` and double up to `max_s`."""

    max_attempts: int = 6
    initial_s: float = 1.0
    max_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(f"bad retry policy {self!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.max_s, self.initial_s * 2.0 ** min(attempt - 1, 60))
        draw: float = (rng or random).random()
        return ceiling * (0.1 + 0.9 * draw)

    def gives_up_after(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
