"""From aiortc statistics to the ladder and back to the encoders: video only, audio never touched."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiortc import RTCPeerConnection
from aiortc.stats import RTCRemoteInboundRtpStreamStats

from edge.video.ladder import DEFAULT_LADDER
from edge.video.session import apply_rung
from edge.video.stats import ReportTracker, video_reports
from edge.video.tracks import ViewerAudioTrack, ViewerVideoTrack

NOW = dt.datetime(2026, 3, 1, 8, 0, 0, tzinfo=dt.UTC)


def remote_inbound(kind: str, *, fraction_lost: int, jitter: int, rtt: float | None, ago_s: float = 0.0,
                   ident: str | None = None) -> RTCRemoteInboundRtpStreamStats:
    return RTCRemoteInboundRtpStreamStats(
        timestamp=NOW - dt.timedelta(seconds=ago_s), type="remote-inbound-rtp", id=ident or f"remote-{kind}",
        ssrc=1234, kind=kind, transportId="t", packetsReceived=100, packetsLost=3, jitter=jitter,
        roundTripTime=rtt, fractionLost=fraction_lost,  # type: ignore[arg-type]  # aiortc declares float
    )


def test_receiver_reports_are_read_in_protocol_units_and_audio_is_ignored() -> None:
    entries = [
        remote_inbound("video", fraction_lost=64, jitter=2700, rtt=0.12, ago_s=0.5),  # 64/256 lost, 30 ms jitter
        remote_inbound("audio", fraction_lost=255, jitter=48_000, rtt=2.0),  # terrible audio: not our business
        object(),  # other stats entries are skipped
    ]
    readings = video_reports(entries, arrived_to_monotonic=1000.0, now_wall=NOW)
    assert len(readings) == 1
    report = readings[0].report
    assert report.fraction_lost == 0.25 and abs(report.jitter_s - 0.030) < 1e-9 and report.rtt_s == 0.12
    assert report.at == 999.5  # arrival converted to the monotonic clock


def test_each_report_is_used_once_and_silence_counts_as_loss() -> None:
    tracker = ReportTracker(silence_s=5.0)
    first = video_reports([remote_inbound("video", fraction_lost=0, jitter=90, rtt=0.05)],
                          arrived_to_monotonic=100.0, now_wall=NOW)
    assert len(tracker.fresh(first, now=100.0)) == 1
    assert tracker.fresh(first, now=101.0) == []  # getStats() returns the last report until a new one arrives
    assert tracker.fresh(first, now=104.9) == []
    silence = tracker.fresh(first, now=105.0)
    assert [(r.fraction_lost, r.at) for r in silence] == [(1.0, 105.0)]
    assert tracker.fresh([], now=106.0) == []  # one loss report per silence period


class FakeEncoder:
    def __init__(self, bitrate: int) -> None:
        self.target_bitrate = bitrate


class FakeSender:
    def __init__(self, kind: str, track: Any, bitrate: int) -> None:
        self.kind = kind
        self.track = track
        self._RTCRtpSender__encoder = FakeEncoder(bitrate)  # where aiortc keeps it (name-mangled private)


def test_a_rung_scales_and_caps_video_senders_and_never_touches_audio() -> None:
    video, audio = ViewerVideoTrack(), ViewerAudioTrack()
    senders = [FakeSender("video", video, 1_200_000), FakeSender("audio", audio, 64_000)]
    bottom = DEFAULT_LADDER[2]
    assert apply_rung(senders, bottom) == 1
    assert video.rung is bottom
    assert senders[0]._RTCRtpSender__encoder.target_bitrate == bottom.bitrate_bps
    assert senders[1]._RTCRtpSender__encoder.target_bitrate == 64_000  # audio untouched
    # Climbing raises only the cap: the receiver's REMB estimate decides below it.
    apply_rung(senders, DEFAULT_LADDER[0])
    assert senders[0]._RTCRtpSender__encoder.target_bitrate == bottom.bitrate_bps
    assert video.rung is DEFAULT_LADDER[0]


def test_the_installed_aiortc_keeps_its_encoder_where_the_session_looks() -> None:
    async def senders() -> list[Any]:
        pc = RTCPeerConnection()
        pc.addTransceiver("video")
        found = list(pc.getSenders())
        await pc.close()
        return found

    (sender,) = asyncio.run(senders())
    assert hasattr(sender, "_RTCRtpSender__encoder")  # if aiortc renames it, bitrate capping must be revisited
