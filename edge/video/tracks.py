"""Per-viewer outgoing tracks: a switchable upstream, the ladder's size and frame rate, steady timestamps.

Each participant's peer connection sends tracks built here rather than relay proxies directly, so that:
- the upstream can change without renegotiation (camera -> ultrasound, or the other participant joining,
  leaving and rejoining): aiortc has no ICE restart and renegotiation would cost seconds;
- the quality ladder's rung is applied with public aiortc/PyAV API (frames scaled with
  `VideoFrame.reformat`, frames dropped to the rung's rate) before the per-viewer encoder sees them;
- timestamps are re-stamped on one clock per viewer, so a source switch never moves RTP time backwards;
- with no upstream a viewer still gets media (black frames / silence), so its track never ends.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, AudioResampler, VideoFrame
from av.frame import Frame

from edge.video.ladder import DEFAULT_LADDER, Rung, fit

VIDEO_TIME_BASE: Final = fractions.Fraction(1, 90_000)
AUDIO_RATE: Final = 48_000  # Opus runs at 48 kHz (RFC 7587 section 4.1)
AUDIO_PTIME_S: Final = 0.020
_PLACEHOLDER_SIZE: Final = (320, 240)
_PLACEHOLDER_FPS: Final = 5.0
# Frame-rate limiting is a token bucket: one token per kept frame, refilled at the rung's rate, holding
# at most two so a jittery 30 fps source still yields exactly 25 fps on average when the rung says 25.
_BUCKET: Final = 2.0
_EPSILON: Final = 0.05


class _Switchable(MediaStreamTrack):
    """Common part: an upstream that can be swapped while `recv` is waiting on it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._upstream: MediaStreamTrack | None = None
        self._changed = asyncio.Event()
        self._clock = clock
        self.upstream_frames = 0

    @property
    def upstream(self) -> MediaStreamTrack | None:
        return self._upstream

    def attach(self, upstream: MediaStreamTrack | None) -> None:
        """Take frames from `upstream` from now on (None: the placeholder)."""
        self._upstream = upstream
        self._changed.set()

    async def _next_upstream(self, timeout: float | None) -> Frame | None:
        """The next upstream frame; None when there is none within `timeout` or the upstream changed/ended."""
        self._changed.clear()
        upstream = self._upstream
        changed = asyncio.ensure_future(self._changed.wait())
        waiting: set[asyncio.Future[Any]] = {changed}
        pending: asyncio.Future[Any] | None = None
        if upstream is not None:
            pending = asyncio.ensure_future(upstream.recv())
            waiting.add(pending)
        try:
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives as
            # its inner future completes, and aiortc stops a sender by cancelling the task inside recv().
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waiting)
        if pending is None or pending not in done:
            return None
        try:
            frame = pending.result()
        except MediaStreamError:
            if self._upstream is upstream:
                self._upstream = None  # it ended (a participant left): fall back to the placeholder
            return None
        if not isinstance(frame, Frame):
            return None
        self.upstream_frames += 1
        return frame


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel helper tasks and wait until they are done, without swallowing our own cancellation."""
    waiting = []
    for task in tasks:
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: no "exception was never retrieved" noise
        else:
            task.cancel()
            waiting.append(task)
    if waiting:
        await asyncio.wait(waiting)
        for task in waiting:
            if not task.cancelled():
                task.exception()


class ViewerVideoTrack(_Switchable):
    """Video for one viewer: upstream frames scaled and rate-limited to the current rung."""

    kind = "video"

    def __init__(self, rung: Rung = DEFAULT_LADDER[0], clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self._rung = rung
        self._t0: float | None = None
        self._last_pts = -1
        self._tokens = _BUCKET
        self._last_arrival: float | None = None
        self._last_placeholder: float | None = None
        width, height = _PLACEHOLDER_SIZE
        self._black = np.vstack((np.full((height, width), 16, np.uint8), np.full((height // 2, width), 128, np.uint8)))
        self.size: tuple[int, int] | None = None  # the size of the last frame handed to the encoder
        self.frames = 0  # frames handed to the encoder (its achieved frame rate, since it pulls when ready)

    @property
    def rung(self) -> Rung:
        return self._rung

    def set_rung(self, rung: Rung) -> None:
        self._rung = rung

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            if self._upstream is None:
                frame = await self._placeholder()
                if frame is None:
                    continue
                return frame
            upstream_frame = await self._next_upstream(timeout=None)
            if self.readyState != "live":
                raise MediaStreamError
            if not isinstance(upstream_frame, VideoFrame) or not self._admit(self._clock()):
                continue
            return self._shape(upstream_frame)

    def _admit(self, now: float) -> bool:
        """Whether the rung's frame rate leaves room for a frame arriving now."""
        if self._last_arrival is not None:
            self._tokens = min(_BUCKET, self._tokens + (now - self._last_arrival) * self._rung.fps)
        self._last_arrival = now
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens -= 1.0
            return True
        return False

    def _shape(self, frame: VideoFrame) -> VideoFrame:
        """This viewer's own frame: relayed frames are shared by every viewer, and the encoder reads (and
        aiortc writes: pts, pict_type) the frame it is given, so a shared frame is never handed on."""
        width, height = fit(self._rung, frame.width, frame.height)
        if (width, height) != (frame.width, frame.height):
            frame = frame.reformat(width=width, height=height, format="yuv420p")  # a new frame
        else:
            frame = VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
        self._stamp(frame)
        self.size = (frame.width, frame.height)
        self.frames += 1
        return frame

    def _stamp(self, frame: Frame) -> None:
        now = self._clock()
        if self._t0 is None:
            self._t0 = now
        pts = max(self._last_pts + 1, int((now - self._t0) * 90_000))
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = VIDEO_TIME_BASE

    async def _placeholder(self) -> VideoFrame | None:
        now = self._clock()
        if self._last_placeholder is not None:
            wait = self._last_placeholder + 1 / _PLACEHOLDER_FPS - now
            if wait > 0:
                await self._next_upstream(timeout=wait)  # returns early when an upstream is attached
                if self._upstream is not None:
                    return None
        self._last_placeholder = self._clock()
        frame = VideoFrame.from_ndarray(self._black, format="yuv420p")
        self._stamp(frame)
        self.size = (frame.width, frame.height)
        self.frames += 1
        return frame


class ViewerAudioTrack(_Switchable):
    """Audio for one viewer: the upstream's frames, or 20 ms of silence at a time while there is none.

    Every frame handed on is this viewer's own copy in one format (s16 stereo 48 kHz): aiortc's Opus
    encoder fixes its resampler on the first frame it sees and fails on any other layout later.
    """

    kind = "audio"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self._samples = 0
        self._t0: float | None = None
        self._from_upstream = False
        self._pending: collections.deque[AudioFrame] = collections.deque()
        self._resampler: AudioResampler | None = None
        self._resampling: tuple[str, str, int] | None = None

    async def recv(self) -> Frame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            if self._pending:
                return self._stamp(self._pending.popleft())
            if self._t0 is None:
                self._t0 = self._clock()
            if self._upstream is not None:
                frame = await self._next_upstream(timeout=None)
                if self.readyState != "live":
                    raise MediaStreamError
                if isinstance(frame, AudioFrame):
                    self._from_upstream = True
                    self._pending.extend(self._normalise(frame))
                continue
            if self._from_upstream:
                # Back to silence: pace from now on, not from when the call started (no burst to catch up).
                self._from_upstream = False
                self._t0 = self._clock() - self._samples / AUDIO_RATE
            # Pace silence on the sample clock so the encoder sees real time.
            due = self._t0 + self._samples / AUDIO_RATE
            wait = due - self._clock()
            if wait > 0:
                await self._next_upstream(timeout=wait)
                if self._upstream is not None:
                    continue
            if self.readyState != "live":
                raise MediaStreamError
            return self._stamp(self._silence())

    def _normalise(self, frame: AudioFrame) -> list[AudioFrame]:
        """Copies of an upstream frame in s16 stereo 48 kHz (resampled when it comes in another format)."""
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        if source == ("s16", "stereo", AUDIO_RATE):
            copy = AudioFrame.from_ndarray(frame.to_ndarray(), format="s16", layout="stereo")
            copy.sample_rate = AUDIO_RATE
            return [copy]
        if self._resampler is None or self._resampling != source:
            self._resampler = AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
            self._resampling = source
        return list(self._resampler.resample(frame))

    def _silence(self) -> AudioFrame:
        samples = int(AUDIO_RATE * AUDIO_PTIME_S)
        frame = AudioFrame(format="s16", layout="stereo", samples=samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = AUDIO_RATE
        return frame

    def _stamp(self, frame: AudioFrame) -> AudioFrame:
        # One running sample count at 48 kHz, expressed in each frame's own rate.
        rate = frame.sample_rate or AUDIO_RATE
        frame.pts = self._samples * rate // AUDIO_RATE
        frame.time_base = fractions.Fraction(1, rate)
        self._samples += frame.samples * AUDIO_RATE // rate
        return frame
