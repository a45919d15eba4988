"""Calls at the edge: one room per consultation, its participants' peer connections, and the relays between.

Each participant receives (session.py): the clinical source it chose (camera, ultrasound or synthetic;
shared across every call of this edge, bounded viewers per source), the other participant's camera and
microphone (relayed from that participant's own peer connection), and, for the expert while no county
participant sends audio, the bedside microphone if one is configured. Signals for one participant are
handled strictly in arrival order (one lock each), so a candidate never overtakes its offer.

Recording (recording.py) runs only while the cloud says the patient's consent stands: an offer's `record`
or a `record` command starts it, a `record` command saying false (consent revoked), an offer without
`record`, or the end of the call stops it; the file is then sealed (spool.py) in the background and
`on_sealed` called (the uploader's wake-up). Participants are told with a `recording` signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from edge.settings import VideoSettings
from edge.video import signals
from edge.video.errors import SignalError, SourceError, VideoError
from edge.video.ladder import Rung
from edge.video.recording import RoomRecording
from edge.video.relay import Relay
from edge.video.session import ParticipantSession, SessionOptions
from edge.video.signals import Bye, Candidate, Offer, RecordRequest, Route, SelectSource, SignalMessage
from edge.video.sources import MICROPHONE, SourceCatalog
from edge.video.spool import RecordingSpool
from edge.video.tracks import ViewerAudioTrack, ViewerVideoTrack

log = logging.getLogger(__name__)

ReplySink = Callable[[dict[str, Any]], None]
_DRAIN = "drain"


@dataclass(eq=False)
class Participant:
    """One participant's connection and what it views and publishes."""

    route: Route
    source: str
    source_video: ViewerVideoTrack
    peer_video: ViewerVideoTrack
    audio: ViewerAudioTrack
    session: ParticipantSession | None = None
    views: dict[str, Relay] = field(default_factory=dict)  # relay name -> relay this participant watches
    feeds: dict[str, Relay] = field(default_factory=dict)  # kind -> relay of what this participant sends us
    drains: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def viewer_id(self) -> str:
        return f"{self.route.consultation_id}/{self.route.user_id}"


class VideoCalls:
    """Every call on this edge. `handle(message)` runs on the event loop; replies go to `send`."""

    def __init__(self, settings: VideoSettings, *, send: ReplySink, catalog: SourceCatalog | None = None,
                 options: SessionOptions | None = None, spool: RecordingSpool | None = None,
                 on_sealed: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.catalog = catalog if catalog is not None else SourceCatalog(settings)
        self._send = send
        self._options = options or SessionOptions(stats_interval_s=settings.stats_interval_s)
        self._sources: dict[str, Relay] = {}
        self._rooms: dict[str, dict[str, Participant]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._spool = spool
        self._on_sealed = on_sealed
        self._recordings: dict[str, RoomRecording] = {}
        self._recording_locks: dict[str, asyncio.Lock] = {}

    # --- introspection --------------------------------------------------------------------------------------

    def participants(self, consultation_id: str) -> dict[str, Participant]:
        return dict(self._rooms.get(consultation_id, {}))

    def recording(self, consultation_id: str) -> RoomRecording | None:
        return self._recordings.get(consultation_id)

    def source_relay(self, name: str) -> Relay:
        """The relay of a local source (created on first use; the source opens with its first viewer)."""
        relay = self._sources.get(name)
        if relay is None:
            relay = Relay(name, lambda: self.catalog.open(name), max_viewers=self.settings.max_viewers_per_source)
            self._sources[name] = relay
        return relay

    # --- signals --------------------------------------------------------------------------------------------

    async def handle(self, message: SignalMessage) -> None:
        """Act on one signal; failures are answered with an error signal, never raised."""
        route = message.route
        lock = self._locks.setdefault((route.consultation_id, route.user_id), asyncio.Lock())
        async with lock:
            try:
                if isinstance(message, Offer):
                    await self._join(message)
                elif isinstance(message, Candidate):
                    await self._candidate(message)
                elif isinstance(message, SelectSource):
                    self._select_source(message)
                else:
                    await self._bye(message)
            except VideoError as exc:
                log.warning("video.signal_refused", extra={"reason": exc.reason, "consultation_id":
                                                           route.consultation_id, "detail": str(exc)})
                self._send(signals.error(route, exc.reason, str(exc)))
            except Exception as exc:  # an aiortc failure must not kill the edge's command worker
                log.exception("video.signal_failed", extra={"consultation_id": route.consultation_id})
                self._send(signals.error(route, "internal_error", type(exc).__name__))

    def _current(self, route: Route) -> Participant | None:
        """The participant this route addresses, if it is the current negotiation."""
        participant = self._rooms.get(route.consultation_id, {}).get(route.user_id)
        if participant is None or (participant.route.session, participant.route.n) != (route.session, route.n):
            return None
        return participant

    async def _join(self, offer: Offer) -> None:
        route = offer.route
        source = offer.source or self.catalog.default_source
        if source is None:
            raise SourceError("this edge has no video source configured")
        if source not in self.catalog.video_sources:
            raise SourceError(f"no {source} source on this edge (it has {', '.join(self.catalog.video_sources)})")
        room = self._rooms.setdefault(route.consultation_id, {})
        previous = room.get(route.user_id)
        if previous is not None:
            # A new negotiation from the same person replaces the old one: a reconnect after a network drop
            # (same signalling session, or a new one after the socket dropped too), or the same person in
            # another tab or device, whose old connection is told so it does not fight back.
            elsewhere = previous.route.session != route.session
            await self._leave(previous, reason="replaced", notify=elsewhere)
            room = self._rooms.setdefault(route.consultation_id, {})
        participant = Participant(route=route, source=source, source_video=ViewerVideoTrack(),
                                  peer_video=ViewerVideoTrack(), audio=ViewerAudioTrack())
        relay = self.source_relay(source)
        try:
            participant.source_video.attach(relay.subscribe(participant.viewer_id))  # may refuse: viewers full
        except VideoError:
            if not room:
                self._rooms.pop(route.consultation_id, None)
            raise
        participant.views[relay.name] = relay
        ice = offer.ice_servers or tuple(signals.IceServer((url,)) for url in self.settings.stun_urls)
        participant.session = ParticipantSession(
            source_video=participant.source_video, peer_video=participant.peer_video, audio=participant.audio,
            ice_servers=ice, options=self._options,
            on_remote_track=lambda track: self._published(participant, track),
            on_rung=lambda rung, size: self._rung_changed(participant, rung, size),
            on_state=lambda state: self._state_changed(participant, state),
        )
        room[route.user_id] = participant
        for other in list(room.values()):
            if other is not participant:
                for kind, feed in other.feeds.items():
                    self._view_feed(participant, kind, feed)
        self._fallback_audio(participant)
        try:
            sdp = await participant.session.answer(offer.sdp)
        except VideoError:
            await self._leave(participant, reason="negotiation_failed", notify=False)
            raise
        log.info("video.joined", extra={"consultation_id": route.consultation_id, "role": route.role,
                                        "source": source})
        self._send(signals.answer(route, sdp=sdp, sources=self.catalog.video_sources, source=source))
        was_recording = route.consultation_id in self._recordings
        await self.set_recording(RecordRequest(route.consultation_id, offer.record, offer.consent_id))
        if was_recording and route.consultation_id in self._recordings:
            self._follow_source(participant, relay)
            self._send(signals.recording(route, active=True))

    async def _candidate(self, message: Candidate) -> None:
        participant = self._current(message.route)
        if participant is None or participant.session is None:
            log.info("video.stale_candidate", extra={"consultation_id": message.route.consultation_id})
            return
        await participant.session.add_candidate(message.candidate, message.sdp_mid, message.sdp_mline_index)

    def _select_source(self, message: SelectSource) -> None:
        participant = self._current(message.route)
        if participant is None:
            raise SignalError("no call to switch the source of")
        if message.source not in self.catalog.video_sources:
            raise SourceError(f"no {message.source} source on this edge")
        if message.source != participant.source:
            new = self.source_relay(message.source)
            participant.source_video.attach(new.subscribe(participant.viewer_id))  # full: keep the old one
            old = participant.views.pop(participant.source, None)
            participant.views[new.name] = new
            if old is not None:
                old.unsubscribe(participant.viewer_id)
            participant.source = message.source
            self._follow_source(participant, new)
            log.info("video.source_switched", extra={"consultation_id": message.route.consultation_id,
                                                     "source": message.source})
        self._send(signals.source_changed(message.route, participant.source))

    async def _bye(self, message: Bye) -> None:
        participant = self._current(message.route)
        if participant is not None:
            await self._leave(participant, reason="bye", notify=True)

    # --- media wiring ---------------------------------------------------------------------------------------

    def _published(self, participant: Participant, track: MediaStreamTrack) -> None:
        """A participant's camera or microphone arrived: relay it to the others (and drain it meanwhile)."""
        kind = track.kind
        if kind not in ("audio", "video") or kind in participant.feeds:
            return
        name = f"{participant.viewer_id}/{kind}"
        # One extra slot for the drain: aiortc queues received frames without bound until someone reads them.
        feed = Relay(name, lambda: track, max_viewers=self.settings.max_viewers_per_source + 1, keep_open=True)
        participant.feeds[kind] = feed
        drain = asyncio.ensure_future(self._drain(feed.subscribe(_DRAIN)))
        participant.drains.append(drain)
        for other in self._rooms.get(participant.route.consultation_id, {}).values():
            if other is not participant:
                self._view_feed(other, kind, feed)
        recording = self._recordings.get(participant.route.consultation_id)
        if recording is not None and kind == "audio":
            recording.hear(participant.route.role, feed)

    def _view_feed(self, viewer: Participant, kind: str, feed: Relay) -> None:
        try:
            proxy = feed.subscribe(viewer.viewer_id)
        except VideoError as exc:
            log.warning("video.feed_refused", extra={"feed": feed.name, "reason": exc.reason})
            return
        viewer.views[feed.name] = feed
        if kind == "video":
            viewer.peer_video.attach(proxy)
        else:
            microphone = self._sources.get(MICROPHONE)
            if microphone is not None and MICROPHONE in viewer.views:
                viewer.views.pop(MICROPHONE)
                microphone.unsubscribe(viewer.viewer_id)
            viewer.audio.attach(proxy)

    def _fallback_audio(self, participant: Participant) -> None:
        """The expert hears the bedside microphone while no county participant sends audio."""
        if participant.audio.upstream is not None or participant.route.role != "expert":
            return
        if not self.catalog.has_microphone:
            return
        microphone = self.source_relay(MICROPHONE)
        try:
            participant.audio.attach(microphone.subscribe(participant.viewer_id))
        except VideoError as exc:
            log.warning("video.microphone_unavailable", extra={"reason": exc.reason, "detail": str(exc)})
            return
        participant.views[MICROPHONE] = microphone

    @staticmethod
    async def _drain(proxy: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await proxy.recv()

    # --- lifecycle ------------------------------------------------------------------------------------------

    def _rung_changed(self, participant: Participant, rung: Rung, size: tuple[int, int] | None) -> None:
        width, height = size if size is not None else (None, None)
        self._send(signals.quality(participant.route, rung=rung.name, width=width, height=height,
                                   bitrate_bps=rung.bitrate_bps, fps=rung.fps))

    def _state_changed(self, participant: Participant, state: str) -> None:
        if state == "failed":
            task = asyncio.ensure_future(self._fail(participant))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _fail(self, participant: Participant) -> None:
        route = participant.route
        lock = self._locks.setdefault((route.consultation_id, route.user_id), asyncio.Lock())
        async with lock:
            if self._current(route) is participant:
                await self._leave(participant, reason="connection_failed", notify=True)

    async def _leave(self, participant: Participant, *, reason: str, notify: bool) -> None:
        route = participant.route
        room = self._rooms.get(route.consultation_id, {})
        if room.get(route.user_id) is participant:
            del room[route.user_id]
        for other in room.values():
            for kind, feed in participant.feeds.items():
                if other.views.pop(feed.name, None) is not None:
                    feed.unsubscribe(other.viewer_id)
                if kind == "video":
                    other.peer_video.attach(None)
                else:
                    other.audio.attach(None)
                    self._fallback_audio(other)
        for feed in participant.feeds.values():
            feed.close()
        for drain in participant.drains:
            drain.cancel()
        for relay in participant.views.values():
            relay.unsubscribe(participant.viewer_id)
        participant.views.clear()
        if participant.session is not None:
            await participant.session.close()
        if not room:
            self._rooms.pop(route.consultation_id, None)
            if reason != "replaced":  # a reconnect replaces the last participant: the call goes on
                await self._stop_recording(route.consultation_id, reason="call_ended")
        log.info("video.left", extra={"consultation_id": route.consultation_id, "reason": reason})
        if notify:
            self._send(signals.closed(route, reason))

    async def close(self) -> None:
        """End every call and release every source; recordings are sealed before this returns."""
        for room in list(self._rooms.values()):
            for participant in list(room.values()):
                await self._leave(participant, reason="edge_stopping", notify=True)
        for consultation_id in list(self._recordings):
            await self._stop_recording(consultation_id, reason="edge_stopping")
        sealing = [task for task in self._background if task.get_name().startswith("video-seal")]
        if sealing:
            await asyncio.wait(sealing)
        for task in list(self._background):
            task.cancel()
        for relay in self._sources.values():
            relay.close()
        self._sources.clear()

    # --- recording ------------------------------------------------------------------------------------------

    async def set_recording(self, request: RecordRequest) -> None:
        """Start or stop recording a consultation's call as the cloud says (consent stands or not)."""
        lock = self._recording_locks.setdefault(request.consultation_id, asyncio.Lock())
        async with lock:
            active = request.consultation_id in self._recordings
            if request.record and not active:
                self._start_recording(request.consultation_id, request.consent_id)
            elif not request.record and active:
                await self._stop_recording(request.consultation_id, reason="no_consent")

    def _follow_source(self, participant: Participant, relay: Relay) -> None:
        """The recording shows the source the expert chose (the county side's while no expert is in the call)."""
        recording = self._recordings.get(participant.route.consultation_id)
        if recording is None:
            return
        room = self._rooms.get(participant.route.consultation_id, {})
        if participant.route.role == "expert" or not any(p.route.role == "expert" for p in room.values()):
            recording.watch_source(relay)

    def _start_recording(self, consultation_id: str, consent_id: str | None) -> None:
        room = self._rooms.get(consultation_id)
        if not room:
            return  # no call: the next offer carries `record` again
        if self._spool is None:
            log.warning("video.recording_unavailable", extra={"consultation_id": consultation_id})
            for participant in room.values():
                self._send(signals.error(participant.route, "recording_unavailable",
                                         "this edge has no recording directory configured"))
            return
        info, path = self._spool.begin(consultation_id, consent_id)
        recording = RoomRecording(info=info, path=path)
        chooser = max(room.values(), key=lambda p: p.route.role == "expert")
        recording.watch_source(self.source_relay(chooser.source))
        for participant in room.values():
            feed = participant.feeds.get("audio")
            if feed is not None:
                recording.hear(participant.route.role, feed)
        recording.start()
        self._recordings[consultation_id] = recording
        log.info("video.recording_started", extra={"consultation_id": consultation_id,
                                                   "recording_id": info.recording_id})
        for participant in room.values():
            self._send(signals.recording(participant.route, active=True))

    async def _stop_recording(self, consultation_id: str, *, reason: str) -> None:
        recording = self._recordings.pop(consultation_id, None)
        if recording is None:
            return
        await recording.stop()
        log.info("video.recording_stopped", extra={"consultation_id": consultation_id, "reason": reason,
                                                   "recording_id": recording.info.recording_id})
        for participant in self._rooms.get(consultation_id, {}).values():
            self._send(signals.recording(participant.route, active=False))
        task = asyncio.ensure_future(self._seal(recording))
        task.set_name(f"video-seal-{recording.info.recording_id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _seal(self, recording: RoomRecording) -> None:
        assert self._spool is not None
        try:
            sealed = await asyncio.to_thread(self._spool.finish, recording.info)
        except Exception:  # the description stays on disk: recover() seals it at the next start
            log.exception("video.recording_seal_failed", extra={"recording_id": recording.info.recording_id})
            return
        if sealed is not None and self._on_sealed is not None:
            self._on_sealed()
