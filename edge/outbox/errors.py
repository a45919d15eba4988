"""Typed errors of the outbox; sqlite3 errors never cross its boundary."""

from __future__ import annotations


class OutboxError(Exception):
    """The outbox cannot do what was asked (storage failure, closed, incompatible file)."""


class OutboxClosedError(OutboxError):
    """The outbox was closed; nothing more can be queued."""


class OutboxLockedError(OutboxError):
    """Another process holds this outbox file (two edge services must never share one queue)."""


class OutboxSchemaError(OutboxError):
    """The file was written by a newer, incompatible outbox schema."""
