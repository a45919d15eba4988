"""Errors at the ingest module boundaries."""

from __future__ import annotations


class IngestError(Exception):
    """Base class of ingest errors."""


class TransientStoreError(IngestError):
    """The database failed in a way that says nothing about the data (connection lost, deadlock, shutdown,
    missing schema): roll back, retry the same messages later, never acknowledge them meanwhile."""


class DataStoreError(IngestError):
    """The database refused what one of the messages carries (a value it cannot store): retry the
    messages alone to find the culprit, and dead-letter it if it fails every time."""


class ProcessingError(IngestError):
    """Our own code failed on a message before the database saw it; handled like DataStoreError."""


class ConsumerError(IngestError):
    """The broker refused our connection or subscription, or could not be reached."""


class Stopped(IngestError):
    """A stop was requested while the pipeline waited to retry; the messages stay unacknowledged."""
