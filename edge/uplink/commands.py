"""Cloud commands (down/cmd) dispatched to handlers registered by name; unknown and expired ones are logged."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, get_args

from proto.messages import Command, CommandName

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], object]  # the return value is ignored
KNOWN_COMMANDS: Final = frozenset(get_args(CommandName))
# QoS 1 may deliver a command twice; remember this many recent ids to run each once.
_REMEMBERED: Final = 1024


class CommandRegistry:
    """name -> handler. Handlers run one at a time; a failing handler is logged and never stops the others."""

    def __init__(self) -> None:
        self._handlers: dict[str, CommandHandler] = {}
        self._seen: OrderedDict[uuid.UUID, None] = OrderedDict()
        self._lock = threading.Lock()

    def register(self, name: str, handler: CommandHandler) -> None:
        if name not in KNOWN_COMMANDS:
            raise ValueError(f"unknown command name {name!r} (the protocol knows {sorted(KNOWN_COMMANDS)})")
        with self._lock:
            if name in self._handlers:
                raise ValueError(f"a handler for {name!r} is already registered")
            self._handlers[name] = handler

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._handlers

    def dispatch(self, command: Command, *, now: dt.datetime | None = None) -> bool:
        """Run the command's handler; False when it was unknown, expired, a repeat, or its handler failed."""
        now = now or dt.datetime.now(dt.UTC)
        fields = {"command_id": str(command.command_id), "command": command.name}
        with self._lock:
            if command.command_id in self._seen:
                log.info("uplink.command_repeated", extra=fields)
                return False
            self._seen[command.command_id] = None
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
            handler = self._handlers.get(command.name)
        if command.expires_at is not None and command.expires_at <= now:
            log.warning("uplink.command_expired", extra=fields | {"expires_at": command.expires_at.isoformat()})
            return False
        if handler is None:
            log.warning("uplink.command_unknown", extra=fields)
            return False
        try:
            handler(command)
        except Exception:
            log.exception("uplink.command_failed", extra=fields)
            return False
        log.info("uplink.command_done", extra=fields)
        return True
