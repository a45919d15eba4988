"""Receiver reports for the ladder, read from a peer connection's statistics (pure, duck-typed).

aiortc records each RTCP receiver report block about one of our senders as a `remote-inbound-rtp` entry
(aiortc/rtcrtpsender.py): `fractionLost` is the report's raw 8-bit fixed-point fraction (RFC 3550
section 6.4.1: lost/expected x 256), `jitter` is in RTP timestamp units (90 kHz for video, RFC 3551
section 5), `roundTripTime` is in seconds, and `timestamp` is when the report arrived. Only `kind ==
"video"` entries are returned: audio is never adapted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from edge.video.ladder import LinkReport

VIDEO_CLOCK_HZ: Final = 90_000  # RFC 3551 section 5: video RTP timestamps tick at 90 kHz
_FRACTION_SCALE: Final = 256.0  # RFC 3550 section 6.4.1: fraction lost is an 8-bit fixed-point number


@dataclass(frozen=True, slots=True)
class ReportReading:
    """One remote-inbound-rtp entry, normalised."""

    ssrc_key: str
    arrived: dt.datetime
    report: LinkReport


def video_reports(entries: Iterable[Any], *, arrived_to_monotonic: float, now_wall: dt.datetime
                  ) -> list[ReportReading]:
    """The video receiver reports among stats entries, with arrival times on the monotonic clock.

    `arrived_to_monotonic` is the monotonic time matching `now_wall`, to convert report timestamps.
    """
    readings = []
    for entry in entries:
        if getattr(entry, "type", None) != "remote-inbound-rtp" or getattr(entry, "kind", None) != "video":
            continue
        arrived = entry.timestamp
        lost = max(0.0, min(1.0, float(entry.fractionLost) / _FRACTION_SCALE))
        rtt = entry.roundTripTime
        at = arrived_to_monotonic - (now_wall - arrived).total_seconds()
        readings.append(ReportReading(
            ssrc_key=str(entry.id), arrived=arrived,
            report=LinkReport(at=at, fraction_lost=lost, jitter_s=float(entry.jitter) / VIDEO_CLOCK_HZ,
                              rtt_s=float(rtt) if rtt is not None else None),
        ))
    return readings


@dataclass
class ReportTracker:
    """Hands each receiver report to the ladder once, and turns a long silence into a loss report.

    A viewer whose reports stop while we send (the path is down, or everything is lost) sends no
    report to react to: after `silence_s` without a new one, a 100 % loss report is produced instead.
    """

    silence_s: float = 5.0
    _seen: dict[str, dt.datetime] = field(default_factory=dict)
    _last_new: float | None = None

    def fresh(self, readings: Iterable[ReportReading], *, now: float) -> list[LinkReport]:
        """The reports not seen before (oldest first), or a synthetic loss report after a silence."""
        new = []
        for reading in readings:
            if self._seen.get(reading.ssrc_key) != reading.arrived:
                self._seen[reading.ssrc_key] = reading.arrived
                new.append(reading.report)
        new.sort(key=lambda r: r.at)
        if new:
            self._last_new = now
            return new
        if self._last_new is None:
            self._last_new = now  # the silence clock starts with the first look
        elif now - self._last_new >= self.silence_s:
            self._last_new = now
            return [LinkReport(at=now, fraction_lost=1.0, jitter_s=0.0, rtt_s=None)]
        return []


def as_entries(report: Mapping[str, Any]) -> list[Any]:
    """The entries of an RTCStatsReport (a dict of id -> stats object)."""
    return list(report.values())
