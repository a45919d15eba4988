"""The persistence/hysteresis state machine on its own, in microsecond event time."""

from __future__ import annotations

from proto.alerting.tracker import LevelTiming, LevelTracker, Transition

S = 1_000_000
# Two levels: severe (delay 15 s, clear 30 s) and mild (delay 60 s, clear 10 s).
TIMINGS = (LevelTiming(15 * S, 30 * S), LevelTiming(60 * S, 10 * S))


def feed(tracker: LevelTracker, at_s: float, beyond: tuple[bool, bool], clear: tuple[bool, bool],
         hold_s: float | None = 10, stale_s: float | None = None) -> list[Transition]:
    at = round(at_s * S)
    stale = None if stale_s is None else round(stale_s * S)
    out = tracker.advance(at, TIMINGS, stale)
    tracker.apply(at, list(beyond), list(clear), None if hold_s is None else round(hold_s * S))
    return out + tracker.advance(at, TIMINGS, stale)


BOTH = (True, True)
MILD_ONLY = (False, True)
NEITHER = (False, False)
CLEAR_BOTH = (True, True)


def test_raising_the_severe_level_latches_the_mild_one() -> None:
    tracker = LevelTracker(2)
    for s in range(16):
        out = feed(tracker, s, BOTH, NEITHER)
    assert out == [Transition(15 * S, 0, "condition")]
    assert tracker.active == [True, True]


def test_the_mild_level_takes_over_when_the_severe_one_clears() -> None:
    tracker = LevelTracker(2)
    for s in range(16):
        feed(tracker, s, BOTH, NEITHER)
    transitions = []
    for s in range(16, 60):
        transitions += feed(tracker, s, MILD_ONLY, (True, False))
    assert transitions == [Transition(46 * S, 1, "condition")]


def test_a_mild_clear_waits_for_the_severe_level_and_both_go_in_one_transition() -> None:
    tracker = LevelTracker(2)
    for s in range(16):
        feed(tracker, s, BOTH, NEITHER)
    transitions = []
    for s in range(16, 60):
        transitions += feed(tracker, s, NEITHER, CLEAR_BOTH)
    # The mild clear (10 s) is due at 26 s but waits for the severe clear (30 s) at 46 s: one change.
    assert transitions == [Transition(46 * S, None, "condition")]
    assert tracker.idle


def test_evidence_older_than_the_hold_lets_pending_timers_lapse_but_keeps_active_levels() -> None:
    tracker = LevelTracker(2)
    feed(tracker, 0, BOTH, NEITHER, hold_s=5)
    assert tracker.advance(20 * S, TIMINGS, None) == []  # lapsed at 5 s, before the 15 s deadline
    assert tracker.idle
    for s in range(16):
        feed(tracker, 100 + s, BOTH, NEITHER, hold_s=5)
    assert tracker.advance(10_000 * S, TIMINGS, None) == []  # latched: no evidence, no clear
    assert tracker.active == [True, True]


def test_staleness_clears_everything_after_the_stale_window() -> None:
    tracker = LevelTracker(2)
    for s in range(16):
        feed(tracker, s, BOTH, NEITHER, stale_s=300)
    assert tracker.advance(315 * S - 1, TIMINGS, 300 * S) == []
    assert tracker.advance(400 * S, TIMINGS, 300 * S) == [Transition(315 * S, None, "stale")]


def test_evidence_without_hold_never_lapses() -> None:
    tracker = LevelTracker(2)
    feed(tracker, 0, MILD_ONLY, NEITHER, hold_s=None)
    assert tracker.advance(3600 * S, TIMINGS, None) == [Transition(60 * S, 1, "condition")]


def test_state_round_trips() -> None:
    tracker = LevelTracker(2)
    for s in range(20):
        feed(tracker, s, BOTH, NEITHER)
    feed(tracker, 20, MILD_ONLY, (True, False))
    copy = LevelTracker.from_dict(tracker.to_dict(), 2)
    assert copy.to_dict() == tracker.to_dict()
    assert copy.advance(100 * S, TIMINGS, None) == tracker.advance(100 * S, TIMINGS, None)
