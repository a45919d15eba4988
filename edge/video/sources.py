"""Local media sources of the edge: the bedside camera, the ultrasound feed, a microphone, a test pattern.

Devices are opened through aiortc's MediaPlayer (FFmpeg's V4L2 and ALSA input devices) when a first
viewer asks for them and closed after the last one leaves (relay.py), so the camera is not held, and its
light not on, outside calls. The synthetic source generates 4:2:0 frames directly (no colour conversion)
with the capture time burned in (overlay.py) for latency measurements, tests and `make run`.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import av
import numpy as np
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame
from av.frame import Frame

from edge.settings import VideoSettings, parse_size
from edge.video import overlay
from edge.video.errors import SourceError
from edge.video.tracks import cancel_and_wait

log = logging.getLogger(__name__)

CAMERA: Final = "camera"
ULTRASOUND: Final = "ultrasound"
SYNTHETIC: Final = "synthetic"
MICROPHONE: Final = "microphone"
VIDEO_SOURCES: Final = (CAMERA, ULTRASOUND, SYNTHETIC)
_TIME_BASE: Final = fractions.Fraction(1, 90_000)


class SyntheticVideoTrack(MediaStreamTrack):
    """A paced test pattern: a moving bar, the capture time as a block stamp and as digits."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, *,
                 wall_clock: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if width % 2 or height % 2:
            raise ValueError("synthetic frames need even dimensions (4:2:0)")
        self.width, self.height, self.fps = width, height, fps
        self._wall = wall_clock
        self._clock = clock
        self._start: float | None = None
        self._count = 0
        gradient = np.linspace(40, 120, width, dtype=np.float32)
        self._background = np.broadcast_to(gradient, (height, width)).astype(np.uint8)
        self._chroma = np.full((height // 2, width), 128, np.uint8)
        self._digit_height = max(12, height // 12)
        self._digits_top = overlay.stamp_height(height) + height // 24
        self.frames = 0

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        now = self._clock()
        if self._start is None:
            self._start = now
        else:
            due = self._start + self._count / self.fps
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 2 / self.fps:
                # Fell behind (a busy CPU): skip ahead instead of bursting stale frames.
                self._count = int((now - self._start) * self.fps)
        if self.readyState != "live":
            raise MediaStreamError
        frame = self.render(int(self._wall() * 1000), self._count)
        frame.pts = round(self._count * 90_000 / self.fps)
        frame.time_base = _TIME_BASE
        self._count += 1
        self.frames += 1
        return frame

    def render(self, ms: int, index: int) -> VideoFrame:
        """One frame stamped with capture time `ms`; `index` moves the bar."""
        luma = self._background.copy()
        bar = max(4, self.width // 32)
        x = (index * 4) % (self.width - bar)
        luma[self._digits_top + self._digit_height * 2:, x:x + bar] = 235
        overlay.draw_stamp(luma, ms)
        overlay.draw_digits(luma, str(ms % 10**9).rjust(9, "0"), top=self._digits_top, left=self.width // 32,
                            digit_height=self._digit_height)
        return VideoFrame.from_ndarray(np.vstack((luma, self._chroma)), format="yuv420p")


class StoppableTrack(MediaStreamTrack):
    """Wraps a device track so that stopping it also ends a pending `recv` (MediaPlayer's would hang)."""

    def __init__(self, inner: MediaStreamTrack, on_stop: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.kind = inner.kind
        self._inner = inner
        self._stopped = asyncio.Event()
        self._on_stop = on_stop

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        pending = asyncio.ensure_future(self._inner.recv())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            done, _ = await asyncio.wait({pending, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait((pending, stopped))
        if pending not in done:
            raise MediaStreamError
        frame = pending.result()
        if not isinstance(frame, Frame):
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        if self.readyState == "live":
            self._stopped.set()
            self._inner.stop()
            if self._on_stop is not None:
                self._on_stop()
        super().stop()


@dataclass(frozen=True)
class DeviceSpec:
    """How FFmpeg opens one capture device."""

    name: str
    file: str
    format: str
    options: dict[str, str]


def device_specs(settings: VideoSettings) -> dict[str, DeviceSpec]:
    """The configured capture devices by source name (absent ones omitted)."""
    specs: dict[str, DeviceSpec] = {}
    if settings.camera_device:
        specs[CAMERA] = DeviceSpec(CAMERA, settings.camera_device, "v4l2", {
            "video_size": settings.camera_size, "framerate": str(settings.camera_fps)})
    if settings.ultrasound_device:
        options = {"video_size": settings.ultrasound_size, "framerate": str(settings.ultrasound_fps)}
        if settings.ultrasound_input_format:
            options["input_format"] = settings.ultrasound_input_format
        specs[ULTRASOUND] = DeviceSpec(ULTRASOUND, settings.ultrasound_device, "v4l2", options)
    if settings.microphone:
        # 48 kHz mono: what Opus encodes natively (RFC 7587), so nothing is resampled on the way.
        specs[MICROPHONE] = DeviceSpec(MICROPHONE, settings.microphone, "alsa",
                                       {"sample_rate": "48000", "channels": "1"})
    return specs


def open_device(spec: DeviceSpec) -> MediaStreamTrack:
    """Open a capture device; SourceError when FFmpeg cannot (absent, busy, unsupported format)."""
    try:
        player = MediaPlayer(spec.file, format=spec.format, options=dict(spec.options))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise SourceError(f"cannot open {spec.name} ({spec.format} {spec.file}): {exc}") from exc
    track = player.audio if spec.name == MICROPHONE else player.video
    if track is None:
        raise SourceError(f"{spec.name} ({spec.file}) has no {'audio' if spec.name == MICROPHONE else 'video'}")
    log.info("video.source_opened", extra={"source": spec.name, "device": spec.file})
    return StoppableTrack(track, on_stop=lambda: log.info("video.source_closed", extra={"source": spec.name}))


class SourceCatalog:
    """Which local sources exist and how to open each (a fresh track per open)."""

    def __init__(self, settings: VideoSettings,
                 open_device: Callable[[DeviceSpec], MediaStreamTrack] = open_device) -> None:
        self._settings = settings
        self._specs = device_specs(settings)
        self._open_device = open_device

    @property
    def video_sources(self) -> tuple[str, ...]:
        present: list[str] = [name for name in (CAMERA, ULTRASOUND) if name in self._specs]
        if self._settings.synthetic:
            present.append(SYNTHETIC)
        return tuple(present)

    @property
    def has_microphone(self) -> bool:
        return MICROPHONE in self._specs

    @property
    def default_source(self) -> str | None:
        wanted = self._settings.default_source
        if wanted and wanted in self.video_sources:
            return wanted
        return self.video_sources[0] if self.video_sources else None

    def open(self, name: str) -> MediaStreamTrack:
        """A new track of source `name`; SourceError if it is not configured or cannot open."""
        if name == SYNTHETIC and self._settings.synthetic:
            width, height = parse_size(self._settings.synthetic_size)
            return SyntheticVideoTrack(width, height, self._settings.synthetic_fps)
        spec = self._specs.get(name)
        if spec is None:
            raise SourceError(f"no {name} source is configured on this edge")
        return self._open_device(spec)
