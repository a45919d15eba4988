"""The alarm engine's own errors: what callers at the edge and in the cloud may catch."""

from __future__ import annotations


class AlertingError(Exception):
    """Base of every error raised by proto.alerting."""


class RuleConfigError(AlertingError, ValueError):
    """A rule configuration (defaults, site or patient overrides) is malformed or inconsistent."""


class InvalidSampleError(AlertingError, ValueError):
    """A sample handed to the engine cannot be evaluated (unknown kind, naive time, bad id, non-finite value)."""


class StateFormatError(AlertingError, ValueError):
    """Persisted engine state cannot be restored (unknown format version or malformed content)."""
