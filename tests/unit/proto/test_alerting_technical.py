"""Artefact suppression: untrusted samples never drive a clinical alarm; they raise technical alarms per device."""

from __future__ import annotations

from proto.alerting import AlarmEngine
from proto.alerting.incident import alert_id_for
from proto.quality import Quality
from proto.vitals import to_micros
from tests.unit.proto.test_alerting_helpers import at, brief, clinical, hold


def test_motion_flagged_spo2_80_raises_only_a_technical_alert() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "spo2", 80, 0, 120, quality=Quality.MOTION, device="ox-1")
    changes += engine.tick(at(200))
    assert clinical(changes) == []
    assert brief(changes) == [("raised", "signal_artefact", "low", 15.0)]
    alert = changes[0].alert
    assert (alert.category, alert.device_id, alert.kind, alert.value) == ("technical", "ox-1", "spo2", None)
    assert "motion" in alert.message
    assert alert.alert_id == alert_id_for("pt-1", "signal_artefact", to_micros(at(15)), "ox-1")
    alert.validate()


def test_the_technical_alert_clears_once_the_device_sends_trusted_samples_again() -> None:
    engine = AlarmEngine()
    hold(engine, "pt-1", "spo2", 80, 0, 30, quality=Quality.MOTION, device="ox-1")
    changes = hold(engine, "pt-1", "spo2", 97, 30, 20, device="ox-1")
    assert brief(changes) == [("cleared", "signal_artefact", "low", 40.0)]


def test_a_sensor_off_for_minutes_on_a_monitored_patient_escalates_to_medium() -> None:
    engine = AlarmEngine()
    hold(engine, "pt-1", "spo2", 97, 0, 60, device="ox-1")  # monitored: trusted data just before
    changes = hold(engine, "pt-1", "spo2", 0.0, 60, 300, quality=Quality.SENSOR_CONTACT_LOST, device="ox-1")
    sensor_off = [c for c in changes if c.alert.rule == "sensor_off"]
    assert brief(sensor_off) == [("raised", "sensor_off", "low", 70.0), ("escalated", "sensor_off", "medium", 240.0)]
    assert clinical(changes) == []


def test_a_sensor_off_on_an_unmonitored_patient_stays_low() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "spo2", 0.0, 0, 600, quality=Quality.SENSOR_CONTACT_LOST, device="ox-1")
    assert [c.alert.rule for c in changes if c.alert.rule == "sensor_off"] == ["sensor_off"]
    assert brief(changes)[0][2] == "low" and all(c.alert.priority == "low" for c in changes)


def test_technical_alerts_are_per_device() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "heart_rate", 70, 0, 30, quality=Quality.SENSOR_CONTACT_LOST, device="hr-1")
    changes += hold(engine, "pt-1", "spo2", 97, 0, 30, quality=Quality.SENSOR_DISPLACED, device="ox-1")
    assert sorted((c.alert.device_id, c.alert.rule) for c in changes) == [
        ("hr-1", "sensor_off"), ("ox-1", "sensor_off")]
    # The oximeter recovering does not clear the chest strap's alarm.
    recovered = hold(engine, "pt-1", "spo2", 97, 30, 20, device="ox-1")
    assert [(c.change, c.alert.device_id) for c in recovered] == [("cleared", "ox-1")]


def test_a_silent_device_closes_its_technical_alert_after_the_silence_window() -> None:
    engine = AlarmEngine()
    hold(engine, "pt-1", "spo2", 80, 0, 30, quality=Quality.MOTION, device="ox-1")
    assert engine.tick(at(628)) == []
    changes = engine.tick(at(700))
    assert brief(changes) == [("cleared", "signal_artefact", "low", 629.0)]
    assert "no samples from the device" in changes[0].alert.message


def test_implausible_values_never_page() -> None:
    engine = AlarmEngine()
    flagged = hold(engine, "pt-1", "heart_rate", 250, 0, 60, quality=Quality.IMPLAUSIBLE, device="hr-1")
    out_of_range = hold(engine, "pt-2", "heart_rate", 350, 0, 60, device="hr-2")  # beyond 20..300 /min
    bad_code = engine.observe("pt-3", "consciousness", 1.5, at(0)) + engine.tick(at(60))  # ACVPU codes are 0..4
    for changes in (flagged, out_of_range, bad_code):
        assert clinical(changes) == []
        assert [(c.alert.rule, c.alert.priority) for c in changes] == [("implausible_value", "low")]


def test_a_single_implausible_glitch_in_a_stream_raises_nothing() -> None:
    engine = AlarmEngine()
    changes = hold(engine, "pt-1", "heart_rate", 72, 0, 10, device="hr-1")
    changes += engine.observe("pt-1", "heart_rate", 400, at(10), device_id="hr-1")
    changes += hold(engine, "pt-1", "heart_rate", 72, 11, 60, device="hr-1")
    assert changes == []


def test_artefact_samples_do_not_break_an_alarm_already_raised() -> None:
    engine = AlarmEngine()
    raised = hold(engine, "pt-1", "spo2", 85, 0, 20, device="ox-1")
    during = hold(engine, "pt-1", "spo2", 99, 20, 30, quality=Quality.MOTION, device="ox-1")
    assert [c.change for c in raised if c.alert.rule == "spo2_low"] == ["raised"]
    assert [c.alert.rule for c in during] == ["signal_artefact"]  # the motion 99 % never clears spo2_low
