"""Alarm fatigue: stable patients watched for a simulated day at 1 Hz must not page anyone."""

from __future__ import annotations

import datetime as dt

from proto.alerting import AlarmChange, AlarmEngine
from tests.unit.proto.test_alerting_helpers import T0, WardPlan, ward_batches

DAY = 24 * 3600


def test_stable_patients_over_24_hours_raise_zero_clinical_alerts() -> None:
    # HR 75 (slow drift SD 4 plus beat noise), SpO2 97 +- 1, RR 16 +- 2 at 1 Hz; cuff BP every 15 min,
    # temperature hourly, ACVPU and air/oxygen charted every 4 h; oximeter motion episodes now and then.
    plan = WardPlan(patients=1, seconds=DAY, seed=2026, artefact_rate=0.0005)
    engine = AlarmEngine()
    changes: list[AlarmChange] = []
    samples = 0
    for batch in ward_batches(plan, batch_seconds=600):
        samples += len(batch)
        changes += engine.observe_batch(batch)
        changes += engine.tick(dt.datetime.fromtimestamp(int(batch.time_us[-1]) / 1e6, dt.UTC))
    changes += engine.tick(T0 + dt.timedelta(seconds=DAY + 3600))
    assert samples > 3 * DAY  # three 1 Hz streams, and the intermittent ones
    assert [c for c in changes if c.alert.category == "clinical"] == []
    # The motion episodes were seen, and handled as technical conditions that cleared again.
    technical = [c for c in changes if c.alert.category == "technical"]
    assert {c.alert.rule for c in technical} == {"signal_artefact"}
    assert sum(c.change == "raised" for c in technical) == sum(c.change == "cleared" for c in technical) > 0
    assert engine.stats.untrusted > 0 and engine.stats.late == 0
