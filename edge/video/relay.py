"""Fan-out of one track to a bounded set of viewers through aiortc's MediaRelay (latest frame, unbuffered).

Each source (the bedside camera, the ultrasound feed, the synthetic pattern, and every participant's own
camera and microphone received over WebRTC) gets one `MediaRelay`. Viewers subscribe with
`buffered=False`: a viewer whose encoder falls behind gets the newest frame, never a growing queue, so
latency stays bounded when the CPU is short.

Cost model: aiortc decodes what it receives and encodes separately for every viewer's RTCRtpSender (one
VP8/H.264 encoder per viewer, no simulcast, no forwarding of encoded RTP), so CPU grows linearly with
viewers. That is why viewers per source are bounded (`video.max_viewers_per_source`, default 4) and a
viewer beyond the bound is refused with `ViewersFullError` rather than degrading everyone. A deployment
that needs larger fan-out (teaching rounds, many observers) should publish the edge's tracks once into
an SFU (LiveKit or mediasoup), which forwards encoded packets with simulcast/SVC layers and no
re-encoding per viewer (docs/video.md, "Scaling beyond a handful of viewers").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from edge.video.errors import ViewersFullError

log = logging.getLogger(__name__)


class Relay:
    """One source track shared by at most `max_viewers` viewers, opened on demand.

    `opener` produces the source track when the first viewer subscribes; the source is stopped after the
    last viewer leaves (a device is released), unless `keep_open` (a participant's received track, which
    lives as long as that participant's connection).
    """

    def __init__(self, name: str, opener: Callable[[], MediaStreamTrack], *, max_viewers: int,
                 keep_open: bool = False) -> None:
        if max_viewers < 1:
            raise ValueError("a relay needs room for at least one viewer")
        self.name = name
        self.max_viewers = max_viewers
        self._opener = opener
        self._keep_open = keep_open
        self._source: MediaStreamTrack | None = None
        self._relay: MediaRelay | None = None
        self._viewers: dict[str, MediaStreamTrack] = {}

    @property
    def viewers(self) -> tuple[str, ...]:
        return tuple(self._viewers)

    @property
    def source(self) -> MediaStreamTrack | None:
        return self._source

    def subscribe(self, viewer: str) -> MediaStreamTrack:
        """A latest-frame proxy of the source for `viewer` (the same one if already subscribed).

        Raises ViewersFullError when the relay is full, SourceError when the source cannot open.
        """
        existing = self._viewers.get(viewer)
        if existing is not None and existing.readyState == "live":
            return existing
        if len(self._viewers) >= self.max_viewers and viewer not in self._viewers:
            log.warning("video.viewers_full", extra={"source": self.name, "limit": self.max_viewers})
            raise ViewersFullError(self.name, self.max_viewers)
        if self._source is None or self._source.readyState != "live" or self._relay is None:
            self._source = self._opener()
            self._relay = MediaRelay()
        proxy = self._relay.subscribe(self._source, buffered=False)
        self._viewers[viewer] = proxy
        log.info("video.viewer_joined", extra={"source": self.name, "viewers": len(self._viewers)})
        return proxy

    def unsubscribe(self, viewer: str) -> None:
        """Stop `viewer`'s proxy; the last viewer out closes an on-demand source."""
        proxy = self._viewers.pop(viewer, None)
        if proxy is None:
            return
        proxy.stop()
        log.info("video.viewer_left", extra={"source": self.name, "viewers": len(self._viewers)})
        if not self._viewers and not self._keep_open:
            self.close()

    def close(self) -> None:
        """Stop every proxy and the source."""
        for proxy in self._viewers.values():
            proxy.stop()
        self._viewers.clear()
        if self._source is not None:
            self._source.stop()
        self._source = None
        self._relay = None
