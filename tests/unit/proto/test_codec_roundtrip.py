"""Codec round trips (hypothesis) and strict, field-naming validation."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proto import envelope, keys
from proto.envelope import SignerKey
from proto.messages import (
    Alert,
    DicomManifest,
    Event,
    InstanceEntry,
    SeriesEntry,
)
from proto.quality import Quality
from proto.schema import ValidationError, from_wire, to_wire
from proto.vitals import VitalSample, VitalsBatch, VitalsBatchBuilder, decode_batch, encode_batch
from proto.vocabulary import VOCABULARY

KEY = keys.generate()
REGISTRY = {"edge-a": SignerKey(KEY.public_key(), site="s1")}

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True)
times = st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 1, 1),
                     timezones=st.just(dt.UTC))
samples = st.builds(
    VitalSample,
    time=times,
    patient_id=ids,
    kind=st.sampled_from(sorted(VOCABULARY)),
    value=st.floats(allow_nan=False, allow_infinity=False, width=64),
    device_id=st.one_of(st.just(""), ids),
    quality=st.sampled_from(list(Quality)).map(Quality),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(samples, min_size=1, max_size=60))
def test_vitals_batch_round_trips_through_the_envelope(rows: list[VitalSample]) -> None:
    batch = VitalsBatch.from_samples(rows)
    raw = envelope.seal(batch, edge_id="edge-a", sequence=1, signer=KEY)
    opened = envelope.open_envelope(raw, topic="telemed/v1/s1/edge-a/up/vitals", keys=REGISTRY.get)
    assert opened.payload.samples() == rows  # type: ignore[union-attr]


@settings(max_examples=100, deadline=None)
@given(st.lists(samples, min_size=1, max_size=30))
def test_columnar_body_round_trips_exactly(rows: list[VitalSample]) -> None:
    batch = VitalsBatch.from_samples(rows)
    decoded = decode_batch(encode_batch(batch))
    assert np.array_equal(decoded.value, batch.value) and decoded.samples() == rows


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_columnar_bodies_give_a_batch_or_a_validation_error(body: bytes) -> None:
    with contextlib.suppress(ValidationError):
        decode_batch(body)


alerts = st.builds(
    Alert,
    alert_id=st.uuids(),
    patient_id=ids,
    rule=st.from_regex(r"[a-z0-9_]{1,20}", fullmatch=True),
    priority=st.sampled_from(["high", "medium", "low"]),
    category=st.sampled_from(["clinical", "technical", "advisory"]),
    state=st.sampled_from(["active", "cleared"]),
    raised_at=times,
    message=st.text(max_size=200),
    kind=st.one_of(st.none(), st.sampled_from(sorted(VOCABULARY))),
    value=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    news2_total=st.one_of(st.none(), st.integers(0, 20)),
    device_id=st.one_of(st.none(), ids),
)


@settings(max_examples=200, deadline=None)
@given(alerts)
def test_alert_round_trips_through_the_envelope(alert: Alert) -> None:
    raw = envelope.seal(alert, edge_id="edge-a", sequence=2**63, signer=KEY)
    opened = envelope.open_envelope(raw, topic="telemed/v1/s1/edge-a/up/alerts", keys=REGISTRY.get)
    assert opened.payload == alert


def test_chinese_text_survives_the_codec() -> None:
    alert = Alert(alert_id=uuid.uuid4(), patient_id="pt-1", rule="spo2_low", priority="high", category="clinical",
                  state="active", raised_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), message="血氧饱和度 87%，持续15秒")
    raw = envelope.seal(alert, edge_id="edge-a", sequence=1, signer=KEY)
    assert envelope.open_envelope(raw, topic="telemed/v1/s1/edge-a/up/alerts", keys=REGISTRY.get).payload == alert


def _manifest_wire() -> dict[str, object]:
    manifest = DicomManifest(
        study_instance_uid="1.2.3.4", patient_id="pt-1", completed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        series=(SeriesEntry(series_instance_uid="1.2.3.5", modality="CT", instances=(
            InstanceEntry(sop_instance_uid="1.2.3.6", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                          transfer_syntax_uid="1.2.840.10008.1.2.1", size_bytes=10, sha256="a" * 64),)),))
    wire = to_wire(manifest)
    assert from_wire(DicomManifest, wire) == manifest
    return wire  # type: ignore[no-any-return]


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda w: w.pop("patient_id"), "patient_id"),
    (lambda w: w.update(surprise=1), "surprise"),
    (lambda w: w.update(completed_at="yesterday"), "completed_at"),
    (lambda w: w.update(completed_at="2026-01-01T00:00:00"), "completed_at"),
    (lambda w: w["series"][0]["instances"][0].update(sha256="xyz"), "series[0].instances[0].sha256"),
    (lambda w: w["series"][0]["instances"][0].update(size_bytes="10"), "series[0].instances[0].size_bytes"),
    (lambda w: w["series"][0].update(series_instance_uid="1..2"), "series[0].series_instance_uid"),
    (lambda w: w["series"][0].update(instances=[]), "series[0].instances"),
    (lambda w: w.update(patient_id="张伟"), "patient_id"),
])
def test_validation_errors_name_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    wire = _manifest_wire()
    mutate(wire)
    with pytest.raises(ValidationError) as caught:
        from_wire(DicomManifest, wire)
    assert caught.value.field == field


def test_event_needs_the_body_its_type_names() -> None:
    wire = {"event_id": str(uuid.uuid4()), "event_type": "device_status", "at": "2026-01-01T00:00:00Z"}
    with pytest.raises(ValidationError) as caught:
        from_wire(Event, wire)
    assert caught.value.field == "device_status"


def test_batch_validation_names_the_column() -> None:
    builder = VitalsBatchBuilder()
    builder.add(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "pt-1", "heart_rate", 70.0)
    batch = builder.build()
    bad = VitalsBatch(patients=batch.patients, devices=batch.devices, time_us=batch.time_us,
                      patient_idx=batch.patient_idx, device_idx=batch.device_idx,
                      kind_id=np.array([250], dtype=np.uint8), value=batch.value, quality=batch.quality)
    with pytest.raises(ValidationError) as caught:
        bad.validate()
    assert caught.value.field == "kind_id[0]"
    with pytest.raises(ValueError, match="finite"):
        builder.add(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "pt-1", "spo2", float("nan"))
