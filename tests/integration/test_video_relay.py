"""The edge's video relay with real aiortc peers in-process: media both ways, bounds, switching, the ladder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from edge.video import VideoCalls, VideoSettings
from edge.video.ladder import LinkReport
from edge.video.signals import parse_signal
from edge.video.sources import DeviceSpec, SourceCatalog, SyntheticVideoTrack
from tests.integration.test_video_support import PEER_MID, SOURCE_MID, CallClient, Replies, route

pytestmark = pytest.mark.integration


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 90))


async def join(calls: VideoCalls, replies: Replies, client: CallClient, where: dict[str, Any],
               **extra: Any) -> dict[str, Any]:
    await calls.handle(parse_signal(where | {"type": "offer", "sdp": await client.offer()} | extra))
    answer = await replies.next("answer", where["user_id"])
    await client.accept(answer["sdp"])
    return answer


def test_frames_flow_both_ways_through_the_relay_with_readable_stamps() -> None:
    async def scenario() -> None:
        replies = Replies()
        calls = VideoCalls(VideoSettings(synthetic=True), send=replies)
        expert_at = route("c-1", "u-expert", "expert")
        county_at = route("c-1", "u-county", "requester")
        async with CallClient(SyntheticVideoTrack(320, 240, 15)) as expert, \
                CallClient(SyntheticVideoTrack(352, 288, 15)) as county:
            answer = await join(calls, replies, expert, expert_at)
            assert answer["sources"] == ["synthetic"] and answer["source"] == "synthetic"
            await join(calls, replies, county, county_at)
            # The clinical source reaches both; each one's camera reaches the other (stamps decoded there).
            for client in (expert, county):
                await client.wait_for(client.stamped(SOURCE_MID, 20), what="the clinical source")
                await client.wait_for(client.stamped(PEER_MID, 10), what="the other participant's camera")
            assert expert.received[SOURCE_MID].last_size == (640, 480)
            assert expert.received[PEER_MID].sizes[(352, 288)] >= 10  # the county camera
            assert county.received[PEER_MID].sizes[(320, 240)] >= 10  # the expert camera
            latencies = sorted(expert.received[SOURCE_MID].latencies_ms)
            assert 0 < latencies[len(latencies) // 2] < 1000
            # The expert leaves: the county side falls back to the placeholder instead of ending.
            await calls.handle(parse_signal(expert_at | {"type": "bye"}))
            assert (await replies.next("closed", "u-expert"))["reason"] == "bye"
            before = county.received[PEER_MID].frames
            await county.wait_for(lambda: county.received[PEER_MID].frames > before + 2, what="placeholder frames")
            assert county.received[PEER_MID].last_size == (320, 240) and len(calls.participants("c-1")) == 1
        await calls.close()
        assert calls.participants("c-1") == {}

    run(scenario())


def test_a_source_refuses_viewers_beyond_its_bound() -> None:
    async def scenario() -> None:
        replies = Replies()
        calls = VideoCalls(VideoSettings(synthetic=True, max_viewers_per_source=1), send=replies)
        async with CallClient() as first, CallClient() as second:
            await join(calls, replies, first, route("c-2", "u-1", "expert"))
            where = route("c-3", "u-2", "expert")
            await calls.handle(parse_signal(where | {"type": "offer", "sdp": await second.offer()}))
            refusal = await replies.next("error", "u-2")
            assert refusal["reason"] == "viewers_full" and "maximum of 1" in refusal["detail"]
            assert calls.participants("c-3") == {}
            await first.wait_for(first.stamped(SOURCE_MID, 5), what="the first viewer's frames")
        await calls.close()

    run(scenario())


def test_switching_to_the_ultrasound_feed_needs_no_renegotiation() -> None:
    def fake_capture(spec: DeviceSpec) -> SyntheticVideoTrack:
        assert spec.name == "ultrasound" and spec.format == "v4l2"
        return SyntheticVideoTrack(800, 600, 15)

    async def scenario() -> None:
        replies = Replies()
        settings = VideoSettings(synthetic=True, ultrasound_device="/dev/video9", default_source="synthetic")
        calls = VideoCalls(settings, send=replies, catalog=SourceCatalog(settings, open_device=fake_capture))
        where = route("c-4", "u-1", "expert")
        async with CallClient() as client:
            answer = await join(calls, replies, client, where)
            assert answer["sources"] == ["ultrasound", "synthetic"] and answer["source"] == "synthetic"
            await client.wait_for(client.stamped(SOURCE_MID, 5), what="synthetic frames")
            await calls.handle(parse_signal(where | {"type": "source", "source": "ultrasound"}))
            assert (await replies.next("source", "u-1"))["source"] == "ultrasound"
            await client.wait_for(lambda: client.received[SOURCE_MID].sizes[(800, 600)] >= 5, what="ultrasound")
            assert calls.source_relay("synthetic").viewers == ()  # released: the device would be closed
            await calls.handle(parse_signal(where | {"type": "source", "source": "xray"}))
            assert (await replies.next("error", "u-1"))["reason"] == "source_unavailable"
        await calls.close()

    run(scenario())


def test_a_new_negotiation_replaces_the_old_connection() -> None:
    async def scenario() -> None:
        replies = Replies()
        calls = VideoCalls(VideoSettings(synthetic=True), send=replies)
        async with CallClient() as dropped, CallClient() as rejoined:
            await join(calls, replies, dropped, route("c-5", "u-1", "expert", n=0))
            old = calls.participants("c-5")["u-1"]
            await join(calls, replies, rejoined, route("c-5", "u-1", "expert", n=1))
            await rejoined.wait_for(rejoined.stamped(SOURCE_MID, 5), what="frames after the new negotiation")
            assert old.session is not None and old.session.connection_state == "closed"
            assert calls.source_relay("synthetic").viewers == ("c-5/u-1",)
            # A late candidate of the replaced negotiation is ignored, not applied to the new one.
            await calls.handle(parse_signal(route("c-5", "u-1", "expert", n=0) | {
                "type": "candidate", "candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdp_mid": "0"}))
            assert not [b for b in replies.bodies if b["type"] == "error"]
            # The same person joining from another tab (another signalling session) takes the call over;
            # the old tab is told, so that it does not renegotiate and take it back.
            async with CallClient() as other_tab:
                await join(calls, replies, other_tab, route("c-5", "u-1", "expert", session="s2"))
                told = await replies.next("closed", "u-1")
                assert (told["reason"], told["session"], told["n"]) == ("replaced", "s1", 1)
        await calls.close()

    run(scenario())


def test_reported_loss_steps_the_viewer_down_the_ladder_and_back_up_slowly() -> None:
    async def scenario() -> None:
        replies = Replies()
        calls = VideoCalls(VideoSettings(synthetic=True), send=replies)
        async with CallClient() as client:
            await join(calls, replies, client, route("c-6", "u-1", "expert"))
            await client.wait_for(client.stamped(SOURCE_MID, 5), what="first frames")
            assert client.received[SOURCE_MID].last_size == (640, 480)  # 720p rung: a 480-line source unscaled
            session = calls.participants("c-6")["u-1"].session
            assert session is not None
            now = time.monotonic()
            session.observe([LinkReport(at=now, fraction_lost=0.4, jitter_s=0.01, rtt_s=0.05)])
            quality = await replies.next("quality", "u-1")
            assert quality["rung"] == "360p" and quality["fps"] == 15.0
            await client.wait_for(lambda: client.received[SOURCE_MID].sizes[(480, 360)] >= 5, what="360p frames")
            # Stamps stay readable at the bottom rung.
            assert len(client.received[SOURCE_MID].stamps) > 5
            session.observe([LinkReport(at=now + 1 + i, fraction_lost=0.0, jitter_s=0.005, rtt_s=0.05)
                             for i in range(5)])
            assert session.rung.name == "360p"  # five good seconds are not enough to climb
            session.observe([LinkReport(at=now + 12, fraction_lost=0.0, jitter_s=0.005, rtt_s=0.05)])
            assert (await replies.next("quality", "u-1"))["rung"] == "480p"
        await calls.close()

    run(scenario())
