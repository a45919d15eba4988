"""The persistence and hysteresis state machine behind every alarm rule (pure, event-time driven).

A rule has levels, most severe first. Evidence arrives at event times: for each level, whether the value
is beyond its threshold (`beyond`) and whether it is back inside the clear band (`clear_ok`). Between
evidence points the last evidence stands (sample and hold) for at most `hold` microseconds.

- A level is raised when its condition has held continuously for its delay (IEC 60601-1-8 "alarm
  condition delay"); raising a level latches every less severe level too (their conditions are implied).
- An active level clears only after the value has been inside its clear band for its clear delay
  (hysteresis), and never while a more severe level is still active.
- Evidence older than `hold` stops vouching: pending timers lapse, active levels stay latched.
- With no evidence at all for `stale` microseconds, every level clears (cause "stale").

Timers fire at their exact deadlines, whether the next evidence or a tick reveals them, so the outcome
never depends on how samples were batched or how often the caller ticks (given in-order event time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

INF_US = 2**62  # "never" as an event time (year ~146,000)

Cause = Literal["condition", "stale"]


@dataclass(frozen=True, slots=True)
class LevelTiming:
    delay_us: int
    clear_delay_us: int


@dataclass(frozen=True, slots=True)
class Transition:
    """The most severe active level changed at `at_us` (None: no level active any more)."""

    at_us: int
    top: int | None
    cause: Cause


_RAISE, _CLEAR, _LAPSE, _STALE = 0, 1, 2, 3
_NOTHING: tuple[int, list[tuple[int, int]]] = (INF_US + 1, [])


class LevelTracker:
    """State of one rule for one patient (or device). Idle trackers carry no information and may be dropped."""

    __slots__ = ("active", "clear_since", "last_evidence", "onset", "time", "vouch")

    def __init__(self, levels: int) -> None:
        self.onset: list[int | None] = [None] * levels
        self.active: list[bool] = [False] * levels
        self.clear_since: list[int | None] = [None] * levels
        self.time = -INF_US
        self.vouch = INF_US
        self.last_evidence: int | None = None

    @property
    def top(self) -> int | None:
        """Index of the most severe active level."""
        for i, on in enumerate(self.active):
            if on:
                return i
        return None

    @property
    def idle(self) -> bool:
        """No level active and no timer pending."""
        return not any(self.active) and all(o is None for o in self.onset)

    def _next_events(self, timings: Sequence[LevelTiming], stale_us: int | None) -> tuple[int, list[tuple[int, int]]]:
        """The earliest instant something is due, and every (event, level) due then."""
        candidates: list[tuple[int, int, int]] = []
        vouch, active = self.vouch, self.active
        lapse = severe_active = False
        for i, timing in enumerate(timings):
            if active[i]:
                since = self.clear_since[i]
                if since is not None and not severe_active:  # never clear below an active severer level
                    deadline = since + timing.clear_delay_us
                    if deadline <= vouch:
                        candidates.append((deadline, _CLEAR, i))
                    else:
                        lapse = True
                severe_active = True
            else:
                onset = self.onset[i]
                if onset is not None:
                    deadline = onset + timing.delay_us
                    if deadline <= vouch:
                        candidates.append((deadline, _RAISE, i))
                    else:
                        lapse = True
        if lapse:
            candidates.append((vouch, _LAPSE, 0))
        if stale_us is not None and severe_active and self.last_evidence is not None:
            candidates.append((self.last_evidence + stale_us, _STALE, 0))
        if not candidates:
            return _NOTHING
        best = max(min(c[0] for c in candidates), self.time)  # overdue deferred clears fire now
        return best, sorted((event, i) for at, event, i in candidates if max(at, self.time) == best)

    def advance(self, until: int, timings: Sequence[LevelTiming], stale_us: int | None) -> list[Transition]:
        """Fire every timer with a deadline <= `until`, in time order; returns the changes of the top level."""
        out: list[Transition] = []
        at, events = self._next_events(timings, stale_us)
        while events and at <= until:
            before = self.top
            cause: Cause = "condition"
            moment = at
            while events and at == moment:  # every event of one instant, then one transition at most
                if self._apply_events(events):
                    cause = "stale"
                self.time = max(self.time, at)
                at, events = self._next_events(timings, stale_us)
            after = self.top
            if after != before:
                out.append(Transition(moment, after, cause))
        self.time = max(self.time, until)
        return out

    def _apply_events(self, events: list[tuple[int, int]]) -> bool:
        """Apply the events of one instant; True when one of them was staleness."""
        stale = False
        for event, i in events:
            if event == _RAISE and not self.active[i] and self.onset[i] is not None:
                for j in range(i, len(self.active)):
                    self.active[j] = True
                    self.onset[j] = None
                    self.clear_since[j] = None
            elif event == _CLEAR and self.active[i] and self.clear_since[i] is not None:
                self.active[i] = False
                self.clear_since[i] = None
            elif event == _LAPSE:
                for j in range(len(self.active)):
                    if not self.active[j]:
                        self.onset[j] = None
                    self.clear_since[j] = None
            elif event == _STALE:
                stale = True
                for j in range(len(self.active)):
                    self.active[j] = False
                    self.onset[j] = None
                    self.clear_since[j] = None
        return stale

    def apply(self, at: int, beyond: Sequence[bool], clear_ok: Sequence[bool], hold_us: int | None) -> None:
        """Record evidence at `at` (call advance(at) before and after). `hold_us` None: holds until replaced."""
        for i, is_beyond in enumerate(beyond):
            if is_beyond:
                if self.active[i]:
                    self.clear_since[i] = None
                elif self.onset[i] is None:
                    self.onset[i] = at
            elif not self.active[i]:
                self.onset[i] = None
            elif clear_ok[i]:
                if self.clear_since[i] is None:
                    self.clear_since[i] = at
            else:
                self.clear_since[i] = None
        self.vouch = INF_US if hold_us is None else at + hold_us
        self.last_evidence = at
        self.time = max(self.time, at)

    def close(self, at: int) -> Transition | None:
        """Deactivate everything now (rule removed, patient discharged)."""
        before = self.top
        n = len(self.active)
        self.active, self.onset, self.clear_since = [False] * n, [None] * n, [None] * n
        self.time = max(self.time, at)
        return Transition(self.time, None, "condition") if before is not None else None

    # --- persistence ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"onset": list(self.onset), "active": list(self.active), "clear_since": list(self.clear_since),
                "time": self.time, "vouch": self.vouch, "last_evidence": self.last_evidence}

    @classmethod
    def from_dict(cls, data: dict[str, Any], levels: int) -> LevelTracker:
        tracker = cls(levels)
        onset, active, clear = list(data["onset"]), list(data["active"]), list(data["clear_since"])
        if not len(onset) == len(active) == len(clear) == levels:
            raise ValueError(f"tracker has {len(active)} levels, the rule has {levels}")
        tracker.onset = [None if v is None else int(v) for v in onset]
        tracker.active = [bool(v) for v in active]
        tracker.clear_since = [None if v is None else int(v) for v in clear]
        tracker.time = int(data["time"])
        tracker.vouch = int(data["vouch"])
        last = data["last_evidence"]
        tracker.last_evidence = None if last is None else int(last)
        return tracker
