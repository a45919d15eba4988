"""Errors at the boundaries of cloud.alerting (the API maps them to HTTP statuses)."""

from __future__ import annotations


class AlertingError(Exception):
    """Base of the alerting errors."""


class IncidentTransitionError(AlertingError):
    """An event the incident state machine does not allow in the incident's state (e.g. resolving twice)."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"an incident that is {state} cannot take {event!r}")
        self.state = state
        self.event = event


class ScheduleError(AlertingError):
    """An on-call schedule, override or department that is not well formed."""


class PolicyError(AlertingError):
    """An escalation policy that is not well formed."""


class ChannelConfigError(AlertingError):
    """A notification channel whose configuration cannot work (missing URL, bad secret...)."""


class DeliveryError(AlertingError):
    """A notification could not be delivered; `transient` says whether trying again may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class AnomalyError(AlertingError):
    """A baseline cannot be fitted or scored (too little data, wrong shape)."""


class FeedError(AlertingError):
    """The MQTT subscription could not be set up (broker refused or unreachable)."""
