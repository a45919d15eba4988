"""proto.alerting: the clinical alarm rule engine shared by the edge (offline) and the cloud (on ingest).

    engine = AlarmEngine(default_config().overridden(site_overrides))
    changes = engine.observe_batch(batch) + engine.tick(now)
    for change in changes: publish(change.alert)          # raised / escalated / improved / cleared

Rules, defaults and sources: docs/alerting-rules.md.
"""

from proto.alerting.config import (
    KindTiming,
    News2Config,
    RateRule,
    RuleConfig,
    TechnicalConfig,
    TechnicalRule,
    ThresholdLevel,
    ThresholdRule,
)
from proto.alerting.defaults import default_config, scale2_overrides
from proto.alerting.engine import STATE_FORMAT, AlarmEngine, EngineStats
from proto.alerting.errors import AlertingError, InvalidSampleError, RuleConfigError, StateFormatError
from proto.alerting.incident import ALERT_ID_NAMESPACE, AlarmChange, ChangeType, alert_id_for

__all__ = [
    "ALERT_ID_NAMESPACE",
    "STATE_FORMAT",
    "AlarmChange",
    "AlarmEngine",
    "AlertingError",
    "ChangeType",
    "EngineStats",
    "InvalidSampleError",
    "KindTiming",
    "News2Config",
    "RateRule",
    "RuleConfig",
    "RuleConfigError",
    "StateFormatError",
    "TechnicalConfig",
    "TechnicalRule",
    "ThresholdLevel",
    "ThresholdRule",
    "alert_id_for",
    "default_config",
    "scale2_overrides",
]
