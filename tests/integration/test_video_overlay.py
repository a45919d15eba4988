"""The capture-time stamp: read back exactly, through scaling and a real VP8 round trip, never misread."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time

import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame
from av import VideoFrame

from edge.video import overlay
from edge.video.sources import SyntheticVideoTrack

pytestmark = pytest.mark.integration

MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z


def test_a_stamp_reads_back_exactly() -> None:
    luma = np.full((480, 640), 90, np.uint8)
    overlay.draw_stamp(luma, MS)
    assert overlay.read_stamp(luma) == MS
    overlay.draw_stamp(luma, 0)
    assert overlay.read_stamp(luma) == 0
    overlay.draw_stamp(luma, (1 << 64) - 1)
    assert overlay.read_stamp(luma) == (1 << 64) - 1


def test_a_frame_without_a_stamp_or_with_a_damaged_one_reads_as_none() -> None:
    assert overlay.read_stamp(np.full((480, 640), 90, np.uint8)) is None
    luma = np.full((480, 640), 90, np.uint8)
    overlay.draw_stamp(luma, MS)
    row, column = divmod(37, overlay.COLUMNS)  # flip one block: the CRC catches it
    height, width = 480 // 24, 640 // overlay.COLUMNS
    block = luma[row * height:(row + 1) * height, column * width:(column + 1) * width]
    block[...] = 251 - block
    assert overlay.read_stamp(luma) is None
    assert overlay.read_stamp(np.zeros((20, 20), np.uint8)) is None


def test_stamps_outside_64_bits_and_tiny_frames_are_refused() -> None:
    with pytest.raises(ValueError):
        overlay.draw_stamp(np.zeros((480, 640), np.uint8), -1)
    with pytest.raises(ValueError):
        overlay.draw_stamp(np.zeros((40, 40), np.uint8), MS)


def vp8_round_trip(frames: list[VideoFrame], bitrate: int) -> list[VideoFrame]:
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = bitrate
    out: list[VideoFrame] = []
    for frame in frames:
        payloads, timestamp = encoder.encode(frame)
        data = b"".join(vp8_depayload(p) for p in payloads)
        out.extend(f for f in decoder.decode(JitterFrame(data=data, timestamp=timestamp))
                   if isinstance(f, VideoFrame))
    return out


def test_stamps_survive_the_bottom_rung_scaling_and_a_vp8_round_trip() -> None:
    track = SyntheticVideoTrack(1280, 720)
    frames = []
    for index in range(30):
        frame = track.render(MS + index * 33, index).reformat(width=640, height=360, format="yuv420p")
        frame.pts = index * 3000
        frame.time_base = fractions.Fraction(1, 90_000)
        frames.append(frame)
    decoded = vp8_round_trip(frames, bitrate=250_000)  # aiortc's VP8 floor, below the 360p rung
    read = [overlay.read_stamp(f.to_ndarray(format="yuv420p")[:f.height]) for f in decoded]
    assert read == [MS + i * 33 for i in range(30)]


def test_the_synthetic_source_is_paced_and_stamped_with_its_capture_time() -> None:
    async def capture() -> list[tuple[float, int | None, float, int]]:
        track = SyntheticVideoTrack(320, 240, fps=20)
        got = []
        for _ in range(10):
            asked = time.time() * 1000
            frame = await track.recv()
            returned = time.time() * 1000
            assert isinstance(frame, VideoFrame)
            got.append((asked, overlay.read_stamp(frame.to_ndarray()[:240]), returned, int(frame.pts or 0)))
        track.stop()
        return got

    started = time.monotonic()
    got = asyncio.run(capture())
    assert time.monotonic() - started >= 9 / 20 * 0.9  # paced, not bursting
    # Each stamp is the wall-clock time at which that frame was made: after it was asked for, before it came.
    assert all(stamp is not None and asked - 1 <= stamp <= returned + 1 for asked, stamp, returned, _ in got)
    pts = [p for *_, p in got]
    assert pts[0] == 0 and all(b > a and b % 4500 == 0 for a, b in itertools.pairwise(pts))  # 90 kHz, 20 fps
