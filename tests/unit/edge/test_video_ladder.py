"""The quality ladder (pure): down fast under loss, up slowly with hysteresis, failed climbs back off."""

from __future__ import annotations

import dataclasses

import pytest

from edge.video.ladder import (
    DEFAULT_LADDER,
    LadderPolicy,
    LadderState,
    LinkReport,
    Rung,
    Verdict,
    classify,
    fit,
    initial_state,
    step,
)

POLICY = LadderPolicy()
TOP, MIDDLE, BOTTOM = 0, 1, 2


def report(at: float, loss: float = 0.0, jitter_ms: float = 5.0, rtt_ms: float | None = 40.0) -> LinkReport:
    return LinkReport(at=at, fraction_lost=loss, jitter_s=jitter_ms / 1000,
                      rtt_s=None if rtt_ms is None else rtt_ms / 1000)


def run(state: LadderState, reports: list[LinkReport]) -> list[int]:
    """The rung after each report."""
    rungs = []
    for r in reports:
        state = step(state, r)
        rungs.append(state.rung)
    return rungs


def names(rungs: list[int]) -> list[str]:
    return [DEFAULT_LADDER[i].name for i in rungs]


def test_the_default_ladder_is_720p_480p_360p_with_falling_bitrate_and_frame_rate() -> None:
    assert [r.name for r in DEFAULT_LADDER] == ["720p", "480p", "360p"]
    assert [r.height for r in DEFAULT_LADDER] == [720, 480, 360]
    bitrates = [r.bitrate_bps for r in DEFAULT_LADDER]
    rates = [r.fps for r in DEFAULT_LADDER]
    assert bitrates == sorted(bitrates, reverse=True) and rates == sorted(rates, reverse=True)


@pytest.mark.parametrize(("loss", "jitter_ms", "rtt_ms", "verdict"), [
    (0.0, 5, 40, Verdict.GOOD),
    (0.02, 30, 250, Verdict.GOOD),  # exactly at the "good" thresholds
    (0.05, 5, 40, Verdict.HOLD),  # between 2 % and 10 % loss: the hysteresis band
    (0.0, 45, 40, Verdict.HOLD),
    (0.0, 5, 300, Verdict.HOLD),
    (0.10, 5, 40, Verdict.CONGESTED),
    (0.0, 60, 40, Verdict.CONGESTED),
    (0.0, 5, 400, Verdict.CONGESTED),
    (0.30, 5, 40, Verdict.SEVERE),
    (0.0, 5, None, Verdict.GOOD),  # no RTT yet: judged on loss and jitter
])
def test_reports_are_classified_with_a_band_between_good_and_congested(
    loss: float, jitter_ms: float, rtt_ms: float | None, verdict: Verdict,
) -> None:
    assert classify(report(0, loss, jitter_ms, rtt_ms), POLICY) is verdict


def test_one_lossy_report_steps_down_at_once_then_one_step_per_interval() -> None:
    state = initial_state(POLICY)
    # Reports every 0.5 s with 15 % loss: 480p at once, held while the step takes effect, 360p after 1.5 s.
    assert names(run(state, [report(t / 2, loss=0.15) for t in range(5)])) == [
        "480p", "480p", "480p", "360p", "360p"]


def test_severe_loss_drops_straight_to_the_bottom() -> None:
    assert names(run(initial_state(POLICY), [report(0, loss=0.5)])) == ["360p"]


def test_congestion_at_the_bottom_stays_there() -> None:
    state = LadderState(rung=BOTTOM, up_hold_s=POLICY.up_hold_s)
    assert run(state, [report(t, loss=0.2) for t in range(5)]) == [BOTTOM] * 5


def test_the_climb_needs_ten_good_seconds_per_rung() -> None:
    state = step(initial_state(POLICY), report(0, loss=0.5))
    assert state.rung == BOTTOM
    rungs = run(state, [report(t) for t in range(1, 23)])  # good reports every second from t=1
    # good since t=1: 480p at t=11; the clock restarts, 720p at t=21.
    assert rungs.index(MIDDLE) == 10 and rungs.index(TOP) == 20
    assert set(rungs[:10]) == {BOTTOM}


def test_readings_in_the_hysteresis_band_hold_the_rung_and_restart_the_climb() -> None:
    state = LadderState(rung=BOTTOM, up_hold_s=POLICY.up_hold_s)
    # Good for 8 s, one 5 % reading at t=8 (neither good nor congested), then good again from t=9.
    reports = [report(t) for t in range(0, 8)] + [report(8, loss=0.05)] + [report(t) for t in range(9, 20)]
    rungs = run(state, reports)
    assert rungs[:19] == [BOTTOM] * 19  # without the 5 % reading it would have climbed at t=10
    assert rungs[19] == MIDDLE  # ten good seconds counted from t=9


def test_a_climb_that_fails_doubles_the_wait_for_the_next_one() -> None:
    state = LadderState(rung=MIDDLE, up_hold_s=POLICY.up_hold_s)
    state = step(state, report(0))
    state = step(state, report(10))
    assert state.rung == TOP and state.last_up_at == 10
    state = step(state, report(13, loss=0.15))  # congested 3 s after climbing: the probe failed
    assert state.rung == MIDDLE and state.up_hold_s == 2 * POLICY.up_hold_s
    rungs = run(state, [report(t) for t in range(14, 36)])
    assert rungs.index(TOP) == 34 - 14  # good from t=14, 20 s of patience: climbs at t=34


def test_the_wait_after_failed_climbs_is_capped_and_resets_once_a_climb_holds() -> None:
    state = LadderState(rung=MIDDLE, up_hold_s=POLICY.up_hold_max_s, last_up_at=0.0)
    state = step(state, report(1, loss=0.15))
    assert state.up_hold_s == POLICY.up_hold_max_s  # never beyond the cap
    climbed = LadderState(rung=TOP, up_hold_s=40.0, last_up_at=100.0)
    later = step(climbed, report(100 + POLICY.probe_window_s + 1))  # still good after the probe window
    assert later.up_hold_s == POLICY.up_hold_s


def test_good_reports_at_the_top_change_nothing() -> None:
    assert run(initial_state(POLICY), [report(t) for t in range(30)]) == [TOP] * 30


def test_a_custom_ladder_and_policy_are_honoured() -> None:
    ladder = (Rung("hd", 720, 2_000_000, 30), Rung("sd", 240, 200_000, 10))
    fast = dataclasses.replace(POLICY, up_hold_s=2.0, up_hold_max_s=4.0)
    state = step(initial_state(fast), report(0, loss=0.12), ladder=ladder, policy=fast)
    assert state.rung == 1
    state = step(state, report(1), ladder=ladder, policy=fast)
    state = step(state, report(3), ladder=ladder, policy=fast)
    assert state.rung == 0


def test_invalid_policies_and_states_are_refused() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        LadderPolicy(rtt_up_s=0.5, rtt_down_s=0.4)
    with pytest.raises(ValueError):
        LadderPolicy(loss_up=0.2, loss_down=0.1)
    with pytest.raises(ValueError, match="outside"):
        step(LadderState(rung=3, up_hold_s=10.0), report(0))


@pytest.mark.parametrize(("source", "rung", "expected"), [
    ((1280, 720), DEFAULT_LADDER[0], (1280, 720)),
    ((1280, 720), DEFAULT_LADDER[1], (854, 480)),
    ((1280, 720), DEFAULT_LADDER[2], (640, 360)),
    ((640, 480), DEFAULT_LADDER[0], (640, 480)),  # never upscaled
    ((640, 480), DEFAULT_LADDER[2], (480, 360)),  # 4:3 kept
    ((1920, 1080), DEFAULT_LADDER[1], (854, 480)),
])
def test_a_rung_caps_the_height_keeping_the_aspect_with_even_sizes(
    source: tuple[int, int], rung: Rung, expected: tuple[int, int],
) -> None:
    assert fit(rung, *source) == expected
