"""One participant's WebRTC peer connection at the edge: answer the offer, take candidates, adapt video.

The browser offers (call.js): m=audio sendrecv (its microphone / what it hears), m=video sendrecv (its
camera / the clinical source it watches) and m=video recvonly (the other participant's camera). The edge
answers with its tracks on those transceivers in that order; aiortc gathers every ICE candidate before
the answer is produced, so the answer carries them all, while the browser's candidates trickle in.

Adaptation: every `stats_interval_s` the receiver reports about our video (pc.getStats(),
remote-inbound-rtp) go through the ladder (ladder.py). A new rung is applied to this viewer's video
tracks (scaled frames, lower frame rate: public API) and caps the encoder's target bitrate. aiortc has no
public bitrate control (RTCRtpSender has no setParameters); its encoder's `target_bitrate` is the knob
aiortc itself drives from REMB (aiortc/rtcrtpsender.py), reached through the name-mangled private
attribute `_RTCRtpSender__encoder`. That access is guarded: if a future aiortc renames it, the ladder
still scales resolution and frame rate and `video.encoder_bitrate_unavailable` is logged once.
REMB can raise the bitrate again between our ticks; each tick caps it back to the rung.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp

from edge.video.errors import NegotiationError
from edge.video.ladder import DEFAULT_LADDER, LadderPolicy, LadderState, Rung, initial_state, step
from edge.video.signals import IceServer
from edge.video.stats import ReportTracker, as_entries, video_reports
from edge.video.tracks import ViewerAudioTrack, ViewerVideoTrack, cancel_and_wait

log = logging.getLogger(__name__)

_ENCODER_ATTRIBUTE: Final = "_RTCRtpSender__encoder"


class _Sender(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def track(self) -> MediaStreamTrack | None: ...


_warned_private = False


def apply_rung(senders: Iterable[_Sender], rung: Rung) -> int:
    """Apply a rung to the video senders among `senders` (audio senders are left alone); how many.

    The rung's bitrate is a cap on the encoder's target: below it, the receiver's REMB estimate (which
    aiortc applies itself) decides, so a step up never jumps past what the path was measured to carry.
    """
    global _warned_private
    applied = 0
    for sender in senders:
        if sender.kind != "video":
            continue  # never touch audio: speech must survive congestion
        track = sender.track
        if isinstance(track, ViewerVideoTrack):
            track.set_rung(rung)
        encoder = getattr(sender, _ENCODER_ATTRIBUTE, None)
        if encoder is not None and hasattr(encoder, "target_bitrate"):
            if encoder.target_bitrate > rung.bitrate_bps:
                encoder.target_bitrate = rung.bitrate_bps
        elif encoder is None and not hasattr(sender, _ENCODER_ATTRIBUTE) and not _warned_private:
            _warned_private = True
            log.warning("video.encoder_bitrate_unavailable", extra={"attribute": _ENCODER_ATTRIBUTE})
        applied += 1
    return applied


@dataclass(frozen=True)
class SessionOptions:
    ladder: Sequence[Rung] = DEFAULT_LADDER
    policy: LadderPolicy = field(default_factory=LadderPolicy)
    stats_interval_s: float = 1.0
    report_silence_s: float = 5.0


RemoteTrackListener = Callable[[MediaStreamTrack], None]
RungListener = Callable[[Rung, tuple[int, int] | None], None]
StateListener = Callable[[str], None]


class ParticipantSession:
    """An RTCPeerConnection serving one participant: a clinical source, the other party, and its own media."""

    def __init__(self, *, source_video: ViewerVideoTrack, peer_video: ViewerVideoTrack, audio: ViewerAudioTrack,
                 ice_servers: Sequence[IceServer] = (), options: SessionOptions | None = None,
                 on_remote_track: RemoteTrackListener | None = None, on_rung: RungListener | None = None,
                 on_state: StateListener | None = None) -> None:
        self.options = options or SessionOptions()
        self.source_video = source_video
        self.peer_video = peer_video
        self.audio = audio
        # max-bundle: one transport for every m-line. aiortc's default ("balanced") mis-bundles a second
        # video m-line (it keeps a transport that bundling then discards), and browsers bundle anyway.
        config = RTCConfiguration(iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential) for s in ice_servers
        ], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self.pc = RTCPeerConnection(configuration=config)
        self.ladder_state: LadderState = initial_state(self.options.policy)
        self._on_remote_track = on_remote_track
        self._on_rung = on_rung
        self._on_state = on_state
        self._watch: asyncio.Task[None] | None = None
        self._closed = False
        self.pc.on("track", self._track)
        self.pc.on("connectionstatechange", self._state_changed)

    @property
    def rung(self) -> Rung:
        return self.options.ladder[self.ladder_state.rung]

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    def _track(self, track: MediaStreamTrack) -> None:
        if self._on_remote_track is not None:
            self._on_remote_track(track)

    async def _state_changed(self) -> None:
        state = self.pc.connectionState
        log.info("video.peer_state", extra={"state": state})
        if state == "connected" and self._watch is None:
            self._watch = asyncio.ensure_future(self._adapt())
        if self._on_state is not None:
            self._on_state(state)

    async def answer(self, offer_sdp: str) -> str:
        """Answer the browser's offer with our tracks; NegotiationError if the offer cannot be used."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except (ValueError, AssertionError) as exc:  # aiortc reports bad SDP this way
            raise NegotiationError(f"unusable offer: {exc}") from exc
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        video = [t for t in self.pc.getTransceivers() if t.kind == "video"]
        if not video:
            raise NegotiationError("the offer has no video")
        for transceiver, track in zip(video, (self.source_video, self.peer_video), strict=False):
            transceiver.sender.replaceTrack(track)
            transceiver.direction = "sendrecv"
        if audio:
            audio[0].sender.replaceTrack(self.audio)
            audio[0].direction = "sendrecv"
        try:
            answer = await self.pc.createAnswer()
            await self.pc.setLocalDescription(answer)
        except (ValueError, AssertionError) as exc:
            raise NegotiationError(f"cannot answer: {exc}") from exc
        description = self.pc.localDescription
        return str(description.sdp)

    async def add_candidate(self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        """Add one trickled browser candidate (None: end of candidates). Malformed ones are logged, not fatal."""
        if candidate is None:
            await self.pc.addIceCandidate(None)
            return
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        except (ValueError, IndexError) as exc:
            log.warning("video.bad_candidate", extra={"error": str(exc)})
            return
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await self.pc.addIceCandidate(parsed)

    def senders(self) -> list[Any]:
        return list(self.pc.getSenders())

    async def _adapt(self) -> None:
        """Read receiver reports periodically and move along the ladder."""
        tracker = ReportTracker(silence_s=self.options.report_silence_s)
        try:
            while not self._closed:
                await asyncio.sleep(self.options.stats_interval_s)
                report = await self.pc.getStats()
                now = time.monotonic()
                readings = video_reports(as_entries(report), arrived_to_monotonic=now,
                                         now_wall=dt.datetime.now(dt.UTC))
                self.observe(tracker.fresh(readings, now=now))
        except asyncio.CancelledError:
            raise
        except Exception:  # a stats failure must never take the call down
            log.exception("video.adapt_failed")

    def observe(self, reports: Iterable[Any]) -> None:
        """Feed receiver reports to the ladder; apply and announce a new rung."""
        before = self.ladder_state.rung
        for report in reports:
            self.ladder_state = step(self.ladder_state, report, ladder=self.options.ladder,
                                     policy=self.options.policy)
        rung = self.rung
        changed = self.ladder_state.rung != before
        apply_rung(self.senders(), rung)
        if changed:
            log.info("video.rung_changed", extra={"rung": rung.name, "from": self.options.ladder[before].name})
            if self._on_rung is not None:
                self._on_rung(rung, self.source_video.size)

    async def close(self) -> None:
        """Close the connection and stop our tracks (the relays' proxies are released by the caller)."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            await cancel_and_wait([self._watch])
        for track in (self.source_video, self.peer_video, self.audio):
            track.stop()
        await self.pc.close()
