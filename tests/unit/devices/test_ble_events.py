"""Link events fan out to callbacks and bounded async iterators."""

from __future__ import annotations

import asyncio

import pytest

from devices.ble.events import EventHub
from devices.ble.models import LinkEvent, LinkEventKind

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _event(n: int) -> LinkEvent:
    return LinkEvent(LinkEventKind.RSSI, "AA:00:00:00:00:01", float(n), rssi=-n)


async def test_a_failing_handler_does_not_starve_the_others() -> None:
    hub = EventHub()
    seen: list[LinkEvent] = []

    def broken(event: LinkEvent) -> None:
        raise RuntimeError("consumer bug")

    hub.add_handler(broken)
    remove = hub.add_handler(seen.append)
    hub.emit(_event(1))
    remove()
    hub.emit(_event(2))
    assert seen == [_event(1)]


async def test_stream_delivers_in_order_and_ends_on_close() -> None:
    hub = EventHub()
    stream = hub.stream()
    hub.emit(_event(1))

    async def later() -> None:
        await asyncio.sleep(0)
        hub.emit(_event(2))
        hub.close()

    closer = asyncio.ensure_future(later())
    assert [event async for event in stream] == [_event(1), _event(2)]
    await closer
    assert [event async for event in hub.stream()] == []  # created after close: already finished


async def test_slow_stream_keeps_the_newest_events_and_counts_drops() -> None:
    hub = EventHub()
    stream = hub.stream(maxlen=3)
    for n in range(5):
        hub.emit(_event(n))
    stream.close()
    assert [event.at async for event in stream] == [2.0, 3.0, 4.0]
    assert stream.dropped == 2
    hub.emit(_event(9))  # a closed stream no longer receives
    assert [event async for event in stream] == []
