"""Default alarm rules, as data. docs/alerting-rules.md lists each value with its clinical source.

Priorities follow IEC 60601-1-8 (Table 1: how soon harm may follow if nobody responds): high = immediate
response, medium = prompt response, low = delayed response / awareness. Where a limit coincides with a
NEWS2 band edge (RCP 2017 chart 1) it is cited as such; values with no single international source are
product defaults that a site overrides (see `RuleConfig.overridden`).
"""

from __future__ import annotations

from typing import Any

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
from proto.quality import Quality

# Continuous wearables stream about 1 Hz: one sample vouches for 10 s, a persistence timer survives a few
# lost packets but not a real gap. Intermittent measurements (cuff, thermometer, glucose meter, chart
# entries) stand until the next one is due.
_CONTINUOUS = KindTiming(hold_s=10.0, recency_s=300.0)  # NEWS2 recency 5 min for HR, SpO2, RR
_HOURLY = KindTiming(hold_s=3600.0, recency_s=3600.0)  # NEWS2 recency 60 min for BP and temperature
_CHARTED = KindTiming(hold_s=43_200.0, recency_s=43_200.0)  # 12 h for consciousness and air/oxygen

TIMING: dict[str, KindTiming] = {
    "heart_rate": _CONTINUOUS,
    "spo2": _CONTINUOUS,
    "respiratory_rate": _CONTINUOUS,  # chest patch
    "systolic_bp": _HOURLY,
    "diastolic_bp": _HOURLY,
    "mean_bp": _HOURLY,
    "body_temperature": _HOURLY,
    "glucose": _HOURLY,
    "consciousness": _CHARTED,
    "on_oxygen": _CHARTED,
}

THRESHOLDS: tuple[ThresholdRule, ...] = (
    # SpO2, NEWS2 scale 1 (BTS 2017 target 94-98 %): < 90 % is a desaturation needing immediate response
    # (NEWS2 <= 91 scores 3); < 94 % is below target. 15 s / 60 s delays ride out probe noise.
    ThresholdRule("spo2_low", "spo2", "<", (
        ThresholdLevel("high", 90.0, delay_s=15.0, clear_at=92.0, clear_delay_s=30.0),
        ThresholdLevel("medium", 94.0, delay_s=60.0, clear_at=95.0, clear_delay_s=30.0),
    ), label="SpO2 low"),
    # Heart rate: NEWS2 >= 131 and <= 40 score 3, 111-130 scores 2, 41-50 scores 1.
    ThresholdRule("hr_high", "heart_rate", ">", (
        ThresholdLevel("high", 130.0, delay_s=10.0, clear_at=125.0, clear_delay_s=30.0),
        ThresholdLevel("medium", 110.0, delay_s=10.0, clear_at=105.0, clear_delay_s=30.0),
    ), label="Tachycardia"),
    ThresholdRule("hr_low", "heart_rate", "<", (
        ThresholdLevel("high", 40.0, delay_s=10.0, clear_at=45.0, clear_delay_s=30.0),
        ThresholdLevel("medium", 50.0, delay_s=10.0, clear_at=55.0, clear_delay_s=30.0),
    ), label="Bradycardia"),
    # Respiratory rate (counted over a minute, hence the 60 s delay): NEWS2 >= 25 and <= 8 score 3.
    ThresholdRule("rr_high", "respiratory_rate", ">", (
        ThresholdLevel("medium", 24.0, delay_s=60.0, clear_at=22.0, clear_delay_s=60.0),
    ), label="Tachypnoea"),
    ThresholdRule("rr_low", "respiratory_rate", "<", (
        ThresholdLevel("high", 8.0, delay_s=30.0, clear_at=10.0, clear_delay_s=60.0),
    ), label="Bradypnoea"),
    # Systolic BP (cuff readings: each reading counts, no delay). NEWS2 <= 90 scores 3; > 180 is severe
    # hypertension (ACC/AHA 2017 "hypertensive crisis" threshold), > 200 treated as a crisis here.
    ThresholdRule("sbp_low", "systolic_bp", "<", (
        ThresholdLevel("high", 90.0, clear_at=95.0),
    ), label="Hypotension"),
    ThresholdRule("sbp_high", "systolic_bp", ">", (
        ThresholdLevel("high", 200.0, clear_at=190.0),
        ThresholdLevel("medium", 180.0, clear_at=170.0),
    ), label="Hypertension"),
    # Temperature: NEWS2 >= 39.1 scores 2, <= 35.0 scores 3 (hypothermia).
    ThresholdRule("temp_high", "body_temperature", ">=", (
        ThresholdLevel("medium", 39.1, clear_at=38.8),
    ), label="Fever"),
    ThresholdRule("temp_low", "body_temperature", "<=", (
        ThresholdLevel("high", 35.0, clear_at=35.5),
    ), label="Hypothermia"),
    # Glucose: IHSG 2017 / ADA Standards of Care level 2 hypoglycaemia < 3.0 mmol/L, level 1 < 3.9 mmol/L;
    # treated hypoglycaemia is back at >= 4.0. > 20 mmol/L: product default for severe hyperglycaemia.
    ThresholdRule("glucose_low", "glucose", "<", (
        ThresholdLevel("high", 3.0, clear_at=3.9),
        ThresholdLevel("medium", 3.9, clear_at=4.0),
    ), label="Hypoglycaemia"),
    ThresholdRule("glucose_high", "glucose", ">", (
        ThresholdLevel("medium", 20.0, clear_at=18.0),
    ), label="Hyperglycaemia"),
)

HISTORY_BUCKET_S: dict[str, float] = {"heart_rate": 60.0, "systolic_bp": 60.0}

RATES: tuple[RateRule, ...] = (
    # A fall of > 40 mmHg within 30 min: occult bleeding or sepsis until proven otherwise (product default).
    RateRule("sbp_drop", "systolic_bp", "drop", delta=40.0, window_s=1800.0, priority="medium",
             clear_delta=30.0, per_sample=True, label="Systolic BP falling"),
    # A sustained rise of > 30 /min within 10 min, on 1-minute means (product default).
    RateRule("hr_rise", "heart_rate", "rise", delta=30.0, window_s=600.0, priority="medium",
             clear_delta=20.0, delay_s=120.0, clear_delay_s=300.0, label="Heart rate rising"),
)

TECHNICAL = TechnicalConfig(rules=(
    TechnicalRule("sensor_off", int(Quality.SENSOR_CONTACT_LOST | Quality.SENSOR_DISPLACED),
                  delay_s=10.0, clear_delay_s=10.0, escalate_after_s=180.0, label="Sensor off"),
    TechnicalRule("signal_artefact", int(Quality.MOTION | Quality.LOW_PERFUSION | Quality.SIGNAL_QUESTIONABLE),
                  delay_s=15.0, clear_delay_s=10.0, escalate_after_s=300.0, label="Signal artefact"),
    TechnicalRule("device_fault", int(Quality.DEVICE_FAULT), delay_s=0.0, clear_delay_s=10.0,
                  escalate_after_s=60.0, label="Device fault"),
    # Implausible values never page: low priority, no escalation; 5 s ignores single glitches in a stream.
    TechnicalRule("implausible_value", int(Quality.IMPLAUSIBLE), delay_s=5.0, clear_delay_s=10.0,
                  label="Implausible value"),
), monitored_within_s=600.0)


def default_config() -> RuleConfig:
    """The shipped rule set (validated)."""
    return RuleConfig(
        thresholds=THRESHOLDS, rates=RATES, news2=News2Config(), technical=TECHNICAL,
        timing=dict(TIMING), history_bucket_s=dict(HISTORY_BUCKET_S),
    ).validate()


def scale2_overrides() -> dict[str, Any]:
    """Overrides for a patient on NEWS2 SpO2 scale 2 (BTS 2017 target 88-92 %, e.g. hypercapnic failure)."""
    return {
        "news2": {"spo2_scale": 2},
        "thresholds": {"spo2_low": {"levels": [
            {"priority": "high", "threshold": 85.0, "delay_s": 15.0, "clear_at": 87.0, "clear_delay_s": 30.0},
            {"priority": "medium", "threshold": 88.0, "delay_s": 60.0, "clear_at": 89.0, "clear_delay_s": 30.0},
        ]}},
    }
