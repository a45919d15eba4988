"""Helpers (no tests) for the video tests and benchmark: an aiortc participant laid out like call.js.

`CallClient` offers what the browser module offers (m=audio sendrecv, m=video sendrecv for its camera and
the clinical source, m=video recvonly for the other participant) and records, per received m-line,
frame counts, sizes and the capture-time stamps it can read (edge/video/overlay.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from av import VideoFrame

from edge.video import overlay
from edge.video.sources import SyntheticVideoTrack

AUDIO_MID = "0"
SOURCE_MID = "1"  # the clinical source the participant watches (and its own camera, sent)
PEER_MID = "2"  # the other participant's camera


@dataclass
class Received:
    """What arrived on one m-line."""

    frames: int = 0
    sizes: collections.Counter[tuple[int, int]] = field(default_factory=collections.Counter)
    latencies_ms: list[float] = field(default_factory=list)  # receive time - stamped capture time
    stamps: list[int] = field(default_factory=list)
    last_size: tuple[int, int] | None = None


class Replies:
    """The edge's signal replies, awaitable by type and user."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._event = asyncio.Event()

    def __call__(self, body: dict[str, Any]) -> None:
        self.bodies.append(body)
        self._event.set()

    async def next(self, kind: str, user_id: str, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for body in self.bodies:
                if body["type"] == kind and body["user_id"] == user_id:
                    self.bodies.remove(body)
                    return body
            left = deadline - time.monotonic()
            assert left > 0, f"no {kind!r} reply for {user_id}; got {self.bodies}"
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)


def route(consultation_id: str, user_id: str, role: str, *, session: str = "s1", n: int = 0) -> dict[str, Any]:
    return {"consultation_id": consultation_id, "user_id": user_id, "role": role, "session": session, "n": n}


class CallClient:
    """A participant's browser stand-in. Use `async with`; `camera` defaults to a stamped 320x240 pattern."""

    def __init__(self, camera: MediaStreamTrack | None = None, *, decode_stamps: bool = True,
                 audio: bool = True, send_camera: bool = True) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.camera = camera if camera is not None else SyntheticVideoTrack(320, 240, 15)
        self.received: dict[str, Received] = collections.defaultdict(Received)
        self._decode = decode_stamps
        self._readers: list[asyncio.Task[None]] = []
        self.pc.addTransceiver(AudioStreamTrack() if audio else "audio", "sendrecv")
        self.pc.addTransceiver(self.camera if send_camera else "video", "sendrecv")
        self.pc.addTransceiver("video", "recvonly")
        self.pc.on("track", self._track)

    async def __aenter__(self) -> CallClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _track(self, track: MediaStreamTrack) -> None:
        mid = next(t.mid for t in self.pc.getTransceivers() if t.receiver.track is track)
        assert mid is not None
        self._readers.append(asyncio.ensure_future(self._read(track, mid)))

    async def _read(self, track: MediaStreamTrack, mid: str) -> None:
        received = self.received[mid]
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                received.frames += 1
                if isinstance(frame, VideoFrame):
                    size = (frame.width, frame.height)
                    received.sizes[size] += 1
                    received.last_size = size
                    if self._decode:
                        stamp = overlay.read_stamp(frame.to_ndarray(format="yuv420p")[:frame.height])
                        if stamp is not None:
                            received.stamps.append(stamp)
                            received.latencies_ms.append(time.time() * 1000 - stamp)

    async def offer(self) -> str:
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        return str(self.pc.localDescription.sdp)

    async def accept(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; received {dict(self.received)}")
            await asyncio.sleep(0.05)

    def stamped(self, mid: str, count: int = 1) -> Callable[[], bool]:
        return lambda: len(self.received[mid].stamps) >= count

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.pc.close()
        self.camera.stop()
