"""The video quality ladder (pure): step a viewer's encoder between 720p, 480p and 360p from RTCP reports.

Input is what each RTCP receiver report block says about our video stream (RFC 3550 section 6.4.1:
fraction lost and interarrival jitter) plus the round-trip time derived from it (LSR/DLSR). Output is a
rung: a maximum frame height, a target bitrate and a frame rate. Audio is never an input and never an
output: speech must keep flowing when the picture degrades, so only video senders are ever adapted.

Policy (docs/video.md, "Quality ladder"):
- down fast: one congested report steps down one rung (severe loss drops straight to the bottom), then
  at most one further step per `down_interval_s`, so the effect of the last step can show in the reports;
- up slowly, with hysteresis: only after `up_hold_s` of continuously good reports, where "good" is well
  inside the congestion thresholds (loss 2 % vs 10 %, RTT 250 ms vs 400 ms, jitter 30 ms vs 60 ms), so
  readings between the two thresholds hold the current rung;
- a step up followed by congestion within `probe_window_s` was a failed probe: the hold before the next
  step up doubles (up to `up_hold_max_s`); a step up that survives resets it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Rung:
    """One quality level: frames scaled to at most `height` lines, encoded at `bitrate_bps`, `fps` frames/s."""

    name: str
    height: int
    bitrate_bps: int
    fps: float


# Bitrates follow common WebRTC practice for VP8 at these sizes (and stay inside aiortc's VP8 encoder
# range of 250 kbit/s to 1.5 Mbit/s, aiortc/codecs/vpx.py); 15 fps at the bottom keeps motion legible.
DEFAULT_LADDER: Final[tuple[Rung, ...]] = (
    Rung("720p", 720, 1_500_000, 30.0),
    Rung("480p", 480, 800_000, 25.0),
    Rung("360p", 360, 350_000, 15.0),
)


@dataclass(frozen=True, slots=True)
class LinkReport:
    """The path to one viewer as one receiver report describes it."""

    at: float  # when the report arrived, seconds on a monotonic clock
    fraction_lost: float  # 0..1, since the previous report
    jitter_s: float  # interarrival jitter, seconds
    rtt_s: float | None = None  # round-trip time, when known


@dataclass(frozen=True, slots=True)
class LadderPolicy:
    """Thresholds and timings; `*_down` marks congestion, `*_up` marks a path good enough to climb."""

    loss_down: float = 0.10
    loss_severe: float = 0.30
    loss_up: float = 0.02
    rtt_down_s: float = 0.40
    rtt_up_s: float = 0.25
    jitter_down_s: float = 0.060
    jitter_up_s: float = 0.030
    down_interval_s: float = 1.5
    up_hold_s: float = 10.0
    up_hold_max_s: float = 60.0
    probe_window_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 <= self.loss_up < self.loss_down <= self.loss_severe <= 1:
            raise ValueError("need 0 <= loss_up < loss_down <= loss_severe <= 1")
        if not 0 < self.rtt_up_s < self.rtt_down_s or not 0 < self.jitter_up_s < self.jitter_down_s:
            raise ValueError("the up thresholds must lie below the down thresholds (hysteresis)")
        if self.down_interval_s < 0 or not 0 < self.up_hold_s <= self.up_hold_max_s:
            raise ValueError("need down_interval_s >= 0 and 0 < up_hold_s <= up_hold_max_s")


class Verdict(enum.Enum):
    CONGESTED = "congested"
    SEVERE = "severe"
    HOLD = "hold"
    GOOD = "good"


def classify(report: LinkReport, policy: LadderPolicy) -> Verdict:
    """How one report reads: severe, congested, good, or in the hysteresis band between (hold)."""
    if report.fraction_lost >= policy.loss_severe:
        return Verdict.SEVERE
    rtt = report.rtt_s
    if (report.fraction_lost >= policy.loss_down or report.jitter_s >= policy.jitter_down_s
            or (rtt is not None and rtt >= policy.rtt_down_s)):
        return Verdict.CONGESTED
    if (report.fraction_lost <= policy.loss_up and report.jitter_s <= policy.jitter_up_s
            and (rtt is None or rtt <= policy.rtt_up_s)):
        return Verdict.GOOD
    return Verdict.HOLD


@dataclass(frozen=True, slots=True)
class LadderState:
    """Where one viewer stands. `rung` indexes the ladder, 0 being the best."""

    rung: int
    up_hold_s: float
    last_down_at: float | None = None
    last_up_at: float | None = None
    good_since: float | None = None


def initial_state(policy: LadderPolicy, rung: int = 0) -> LadderState:
    """A new viewer starts at `rung` (the top by default: the first reports correct it within seconds)."""
    return LadderState(rung=rung, up_hold_s=policy.up_hold_s)


def step(state: LadderState, report: LinkReport, *, ladder: Sequence[Rung] = DEFAULT_LADDER,
         policy: LadderPolicy = LadderPolicy()) -> LadderState:
    """The state after one more report."""
    if not 0 <= state.rung < len(ladder):
        raise ValueError(f"rung {state.rung} is outside a ladder of {len(ladder)}")
    verdict = classify(report, policy)
    now = report.at
    bottom = len(ladder) - 1
    if verdict in (Verdict.CONGESTED, Verdict.SEVERE):
        hold = state.up_hold_s
        if state.last_up_at is not None and now - state.last_up_at <= policy.probe_window_s:
            hold = min(hold * 2, policy.up_hold_max_s)  # the last climb did not survive: wait longer next time
        recently_down = state.last_down_at is not None and now - state.last_down_at < policy.down_interval_s
        if state.rung == bottom or (recently_down and verdict is Verdict.CONGESTED):
            return dataclasses.replace(state, up_hold_s=hold, good_since=None, last_up_at=None)
        target = bottom if verdict is Verdict.SEVERE else state.rung + 1
        return LadderState(rung=target, up_hold_s=hold, last_down_at=now, last_up_at=None, good_since=None)
    if verdict is Verdict.HOLD:
        return dataclasses.replace(state, good_since=None)
    good_since = state.good_since if state.good_since is not None else now
    hold = state.up_hold_s
    if state.last_up_at is not None and now - state.last_up_at > policy.probe_window_s:
        hold = policy.up_hold_s  # the last climb held: back to the normal patience
    if state.rung > 0 and now - good_since >= hold:
        # The clock for the next climb starts now: each rung up takes another `hold` of good reports.
        return LadderState(rung=state.rung - 1, up_hold_s=hold, last_down_at=state.last_down_at, last_up_at=now,
                           good_since=now)
    return dataclasses.replace(state, good_since=good_since, up_hold_s=hold)


def fit(rung: Rung, source_width: int, source_height: int) -> tuple[int, int]:
    """The frame size a rung allows for a source: never upscaled, aspect kept, even dimensions (4:2:0)."""
    if source_height <= rung.height:
        return source_width, source_height
    width = round(source_width * rung.height / source_height / 2) * 2
    return max(2, width), rung.height
