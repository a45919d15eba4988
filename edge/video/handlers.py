"""The edge's `signal` command handler: cloud signalling in over down/cmd, replies out through the outbox.

The uplink runs command handlers on its worker thread (edge/uplink/commands.py); calls live on the edge
service's event loop, so the handler only parses the command and schedules it there. Replies become
`Event(event_type="signal")` messages enqueued in the durable outbox (events lane), which the cloud
ingests and announces with pg_notify for the signalling WebSocket (docs/video.md, "Signalling path").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from edge.uplink.commands import CommandRegistry
from edge.video.calls import ReplySink, VideoCalls
from edge.video.errors import SignalError
from edge.video.signals import error, is_record, parse_record, parse_route, parse_signal
from proto.messages import Command, Event

log = logging.getLogger(__name__)

Enqueue = Callable[[Event], "Future[Any]"]


def event_sender(enqueue: Enqueue, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
                 ) -> ReplySink:
    """A reply sink that wraps each signal body in an Event and enqueues it (without waiting for durability)."""

    def send(body: dict[str, Any]) -> None:
        event = Event(event_id=uuid.uuid4(), event_type="signal", at=clock(), signal=body)
        future = enqueue(event)
        future.add_done_callback(_log_failure)

    return send


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("video.reply_not_queued", extra={"error": str(exc)})


def register_video(commands: CommandRegistry, *, calls: VideoCalls, loop: asyncio.AbstractEventLoop,
                   send: ReplySink) -> None:
    """Register the `signal` handler (record requests too); messages run on `loop`, replies go to `send`."""

    def handle(command: Command) -> None:
        if is_record(command.args):
            request = parse_record(command.args)  # SignalError: the registry logs the failed command
            recording = asyncio.run_coroutine_threadsafe(calls.set_recording(request), loop)
            recording.add_done_callback(_log_failure)
            return
        try:
            message = parse_signal(command.args)
        except SignalError as exc:
            try:
                route = parse_route(command.args)
            except SignalError:
                raise exc from None  # nobody to answer: the registry logs the failed command
            send(error(route, exc.reason, str(exc)))
            return
        asyncio.run_coroutine_threadsafe(calls.handle(message), loop)

    commands.register("signal", handle)
