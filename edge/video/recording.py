"""One consultation's recording at the edge: what it subscribes to and writes, from start to sealing.

The recording is one more viewer of the relays (relay.py), under the viewer id `<consultation>/recorder`:
the clinical source the expert chose (the county side's while no expert is in the call; switches are
followed), and each participant's microphone as a voice of its own (county side, expert), so who said
what stays separable. It starts only when the cloud says the patient's consent stands (`record` in an
offer, or a `record` command) and stops when the cloud says it was revoked or the call ends; then
spool.py seals the file and the uploader takes it to the cloud.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiortc.mediastreams import MediaStreamTrack

from edge.video.errors import VideoError
from edge.video.ladder import Rung
from edge.video.recorder import MediaFileRecorder
from edge.video.relay import Relay
from edge.video.spool import RecordingInfo
from edge.video.tracks import ViewerAudioTrack, ViewerVideoTrack

log = logging.getLogger(__name__)

VOICES: Final = ("requester", "expert")
# What the recording keeps of the clinical source: up to 720 lines at 15 fps, VP8 at 1 Mbit/s. Half the
# call's frame rate halves the edge's encoding cost and keeps ultrasound sweeps legible.
RECORDING_RUNG: Final = Rung("recording", 720, 1_000_000, 15.0)


@dataclass(eq=False)
class RoomRecording:
    """A recording in progress: its tracks, the relays it watches and the file writer."""

    info: RecordingInfo
    path: Path
    video: ViewerVideoTrack = field(default_factory=lambda: ViewerVideoTrack(RECORDING_RUNG))
    voices: dict[str, ViewerAudioTrack] = field(default_factory=lambda: {role: ViewerAudioTrack() for role in VOICES})
    views: dict[str, Relay] = field(default_factory=dict)  # relay name -> relay the recorder is subscribed to
    source: Relay | None = None
    writer: MediaFileRecorder | None = None

    @property
    def viewer_id(self) -> str:
        return f"{self.info.consultation_id}/recorder"

    def _subscribe(self, relay: Relay) -> MediaStreamTrack | None:
        try:
            proxy = relay.subscribe(self.viewer_id)
        except VideoError as exc:
            log.warning("video.recording_feed_refused", extra={"feed": relay.name, "reason": exc.reason})
            return None
        self.views[relay.name] = relay
        return proxy

    def watch_source(self, relay: Relay) -> None:
        """Record `relay` as the clinical source from now on (a source switch in the call)."""
        if self.source is relay:
            return
        proxy = self._subscribe(relay)
        if proxy is None:
            return
        self.video.attach(proxy)
        previous, self.source = self.source, relay
        if previous is not None and self.views.pop(previous.name, None) is not None:
            previous.unsubscribe(self.viewer_id)

    def hear(self, role: str, feed: Relay) -> None:
        """Record a participant's microphone as the voice of its role."""
        voice = self.voices.get(role)
        if voice is None:
            return  # observers are not recorded
        proxy = self._subscribe(feed)
        if proxy is not None:
            voice.attach(proxy)

    def start(self) -> None:
        self.writer = MediaFileRecorder(self.path, video=self.video, audio=[self.voices[r] for r in VOICES],
                                        video_bitrate_bps=RECORDING_RUNG.bitrate_bps)
        self.writer.start()

    async def stop(self) -> None:
        """Close the file and release every subscription."""
        if self.writer is not None:
            await self.writer.stop()
        for track in (self.video, *self.voices.values()):
            track.stop()
        for relay in self.views.values():
            relay.unsubscribe(self.viewer_id)
        self.views.clear()
        self.source = None
