"""Writing a call to a WebM file (VP8 video, one Opus track per voice), encoding off the event loop.

Modelled on aiortc's `MediaRecorder`, which this replaces for two reasons found in use: it sizes the video
stream from the first video frame but the container's header is written by whichever track's first packet
comes first (with an audio track that is the audio, and the video stream then has no size and records
nothing); and it encodes on the event loop, where VP8 at 640x480 takes several milliseconds a frame that
the relay's viewers would wait for. Here the first video frame is awaited before the container opens, and
every encode and mux runs in order on one worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

from edge.video.tracks import cancel_and_wait

log = logging.getLogger(__name__)

MEDIA_TYPE: Final = "video/webm"
_VIDEO_RATE: Final = 30
_AUDIO_RATE: Final = 48_000
# libvpx's default "good" deadline took ~100 ms a 640x480 frame on a shared 2-vCPU box; "realtime" with
# cpu-used 8 took ~15 ms, which one worker thread sustains at the recording's frame rate.
_VP8_OPTIONS: Final = {"deadline": "realtime", "cpu-used": "8"}


class MediaFileRecorder:
    """Records `video` and the `audio` tracks into `path` from `start()` to `stop()`."""

    def __init__(self, path: Path, *, video: MediaStreamTrack, audio: Sequence[MediaStreamTrack],
                 video_bitrate_bps: int = 1_000_000) -> None:
        self.path = path
        self._bitrate = video_bitrate_bps
        self._video = video
        self._audio = tuple(audio)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-recorder")
        self._container: Any = None
        self._streams: dict[MediaStreamTrack, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._readers: list[asyncio.Task[None]] = []
        self.frames = 0

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = await self._video.recv()
        except MediaStreamError:
            return
        if not isinstance(first, VideoFrame):
            return
        await loop.run_in_executor(self._executor, self._open, first.width, first.height)
        await loop.run_in_executor(self._executor, self._encode, self._video, first)
        self._readers = [asyncio.ensure_future(self._pump(track)) for track in self._audio]
        await self._pump(self._video)

    def _open(self, width: int, height: int) -> None:
        container = av.open(str(self.path), mode="w", format="webm")
        video = container.add_stream("libvpx", rate=_VIDEO_RATE)
        video.pix_fmt = "yuv420p"
        video.width, video.height = width, height  # later frames of another size are scaled to it by PyAV
        video.bit_rate = self._bitrate
        video.codec_context.options = dict(_VP8_OPTIONS)
        self._streams[self._video] = video
        for track in self._audio:
            audio = container.add_stream("libopus", rate=_AUDIO_RATE)
            audio.layout = "stereo"
            self._streams[track] = audio
        self._container = container

    def _encode(self, track: MediaStreamTrack, frame: AudioFrame | VideoFrame | None) -> None:
        stream = self._streams[track]
        for packet in stream.encode(frame):
            self._container.mux(packet)
        if isinstance(frame, VideoFrame):
            self.frames += 1

    async def _pump(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, AudioFrame | VideoFrame):
                    await loop.run_in_executor(self._executor, self._encode, track, frame)

    async def stop(self) -> None:
        """Stop reading, flush the encoders and close the file (an empty recording leaves no file)."""
        tasks = [task for task in (self._task, *self._readers) if task is not None]
        await cancel_and_wait(tasks)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("video.recorder_failed", extra={"error": repr(task.exception())})
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._container is None:
            return
        try:
            for track in self._streams:
                with contextlib.suppress(av.FFmpegError):
                    self._encode(track, None)
        finally:
            self._container.close()
            self._container = None
