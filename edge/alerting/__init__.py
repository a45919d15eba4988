"""Local alerting at the edge: the shared alarm engine on live samples, persisted, with a local webhook."""

from edge.alerting.local import EdgeNotice, LocalAlerting, LocalAlertingConfig
from edge.alerting.state import AlertingStateError, AlertingStore, OpenAlert, SavedState
from edge.alerting.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookError,
    WebhookNotifier,
    signature,
    verify_signature,
)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertingStateError",
    "AlertingStore",
    "EdgeNotice",
    "LocalAlerting",
    "LocalAlertingConfig",
    "OpenAlert",
    "SavedState",
    "WebhookConfig",
    "WebhookError",
    "WebhookNotifier",
    "signature",
    "verify_signature",
]
