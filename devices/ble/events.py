"""Fan-out of link events to callbacks and to async iterators."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from devices.ble.models import EventHandler, LinkEvent

_log = logging.getLogger(__name__)


class EventStream:
    """Async iterator over link events from the moment it was created until the transport closes.

    The buffer is bounded: a consumer that stops reading loses the oldest events (counted in `dropped`)
    instead of growing memory without limit.
    """

    def __init__(self, hub: EventHub, maxlen: int) -> None:
        self._hub = hub
        self._buffer: deque[LinkEvent] = deque(maxlen=maxlen)
        self._wakeup = asyncio.Event()
        self._finished = False
        self.dropped = 0

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> LinkEvent:
        while not self._buffer:
            if self._finished:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._buffer.popleft()

    def close(self) -> None:
        """Stop receiving; iteration ends once the buffered events are consumed."""
        self._hub.discard(self)
        self._finish()

    def _push(self, event: LinkEvent) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        self._wakeup.set()

    def _finish(self) -> None:
        self._finished = True
        self._wakeup.set()


class EventHub:
    """Delivers each event to every handler (a failing handler is logged and skipped) and every stream."""

    def __init__(self) -> None:
        self._handlers: list[EventHandler] = []
        self._streams: set[EventStream] = set()
        self._closed = False

    def add_handler(self, handler: EventHandler) -> Callable[[], None]:
        """Register a callback; returns the function that unregisters it."""
        self._handlers.append(handler)

        def remove() -> None:
            if handler in self._handlers:
                self._handlers.remove(handler)

        return remove

    def stream(self, maxlen: int = 4096) -> EventStream:
        stream = EventStream(self, maxlen)
        if self._closed:
            stream._finish()
        else:
            self._streams.add(stream)
        return stream

    def discard(self, stream: EventStream) -> None:
        self._streams.discard(stream)

    def emit(self, event: LinkEvent) -> None:
        for handler in tuple(self._handlers):
            try:
                handler(event)
            except Exception:
                _log.exception("ble.event_handler_failed", extra={"kind": event.kind, "address": event.address})
        for stream in self._streams:
            stream._push(event)

    def close(self) -> None:
        """End every stream; later events go to handlers only until they are removed."""
        self._closed = True
        for stream in self._streams:
            stream._finish()
        self._streams.clear()
