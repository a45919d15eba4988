"""The edge and the cloud must raise the same alerts from the same samples, however they are batched.

Property: observe() sample by sample, observe_batch() over any split, ticking at watermarks between
batches, and saving/restoring the state mid-stream all produce identical AlarmChanges and end state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proto.alerting import AlarmChange, AlarmEngine, default_config, scale2_overrides
from proto.quality import Quality
from proto.vitals import VitalsBatchBuilder, from_micros, to_micros
from tests.unit.proto.test_alerting_helpers import T0, WardPlan, ward_batches

# Mostly ordinary values (the batched path's quiet shortcut), some around the default limits so runs
# cross thresholds, NEWS2 bands and rate limits, and some untrusted samples.
NORMAL: dict[str, list[float]] = {
    "heart_rate": [62, 72, 75.5, 80, 88],
    "spo2": [96, 97, 98, 99],
    "respiratory_rate": [14, 16, 18],
    "systolic_bp": [115, 120, 135, 150],
    "body_temperature": [36.5, 36.8, 37.2],
    "consciousness": [0],
    "on_oxygen": [0],
    "glucose": [5.5, 7.0],
}
ABNORMAL: dict[str, list[float]] = {
    "heart_rate": [35, 45, 55, 92, 104, 115, 128, 135, 350],
    "spo2": [80, 86, 88, 91, 92, 93, 94.5],
    "respiratory_rate": [6, 9, 21, 23, 26],
    "systolic_bp": [80, 92, 105, 185, 205],
    "body_temperature": [34.8, 35.5, 38.3, 39.2],
    "consciousness": [1, 2, 1.5],
    "on_oxygen": [1],
    "glucose": [2.5, 3.5, 21],
}
UNTRUSTED = [Quality.MOTION, Quality.SENSOR_CONTACT_LOST, Quality.IMPLAUSIBLE]
PATIENTS = ["pt-a", "pt-b", "pt-c", "pt-d", "pt-e", "pt-f"]
DEVICES = ["", "dev-1", "dev-2"]


@dataclass(frozen=True)
class Sample:
    time_us: int
    patient: str
    kind: str
    value: float
    quality: int
    device: str


@st.composite
def segment(draw: st.DrawFn) -> list[Sample]:
    """A run of one value: long enough to mature persistence timers, cross buckets, go stale."""
    kind = draw(st.sampled_from(sorted(NORMAL)))
    abnormal = draw(st.integers(0, 5)) == 0
    value = draw(st.sampled_from((ABNORMAL if abnormal else NORMAL)[kind]))
    start = draw(st.integers(0, 4000))
    step = draw(st.sampled_from([1, 1, 1, 3, 7, 30, 400]))
    count = draw(st.integers(1, 80))
    quality = int(draw(st.sampled_from(UNTRUSTED))) if draw(st.integers(0, 7)) == 0 else 0
    patient, device = draw(st.sampled_from(PATIENTS)), draw(st.sampled_from(DEVICES))
    jitter = draw(st.integers(0, 3))  # a few microseconds of clock jitter, so streams interleave unevenly
    base = to_micros(T0)
    return [Sample(base + (start + i * step) * 1_000_000 + (i * jitter) % 4, patient, kind, value, quality, device)
            for i in range(count)]


@st.composite
def stream(draw: st.DrawFn) -> list[Sample]:
    samples = [s for seg in draw(st.lists(segment(), min_size=1, max_size=12)) for s in seg]
    samples.sort(key=lambda s: s.time_us)  # one watermark-ordered stream, as an edge sends it
    if draw(st.booleans()) and len(samples) > 2:  # a little disorder: one late sample
        i = draw(st.integers(1, len(samples) - 1))
        samples.insert(i - 1, samples.pop(i))
    return samples


def new_engine() -> AlarmEngine:
    engine = AlarmEngine()
    engine.configure_patient("pt-b", default_config().overridden(scale2_overrides()), at=T0)
    return engine


def observe_each(engine: AlarmEngine, samples: Sequence[Sample]) -> list[AlarmChange]:
    changes: list[AlarmChange] = []
    for s in samples:
        changes += engine.observe(s.patient, s.kind, s.value, from_micros(s.time_us), s.quality, s.device or None)
    return changes


def observe_batched(engine: AlarmEngine, samples: Sequence[Sample]) -> list[AlarmChange]:
    builder = VitalsBatchBuilder()
    for s in samples:
        builder.add(s.time_us, s.patient, s.kind, s.value, device_id=s.device, quality=s.quality)
    return engine.observe_batch(builder.build())


def pieces(samples: list[Sample], cuts: list[int]) -> list[list[Sample]]:
    bounds = sorted({c % len(samples) for c in cuts} - {0})
    return [samples[a:b] for a, b in zip([0, *bounds], [*bounds, len(samples)], strict=True)]


def watermark(piece: Sequence[Sample]) -> int:
    return max(s.time_us for s in piece)


def state_of(engine: AlarmEngine) -> dict[str, Any]:
    state = engine.to_dict()
    state.pop("stats")
    return state


COMMON = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


@COMMON
@given(stream(), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_batch_split_gives_the_same_changes_as_sample_by_sample(samples: list[Sample], cuts: list[int]) -> None:
    one_by_one = new_engine()
    expected = observe_each(one_by_one, samples)
    batched = new_engine()
    got: list[AlarmChange] = []
    for piece in pieces(samples, cuts):
        got += observe_batched(batched, piece)
    assert got == expected
    assert state_of(batched) == state_of(one_by_one)


@COMMON
@given(stream(), st.lists(st.integers(0, 10_000), max_size=8))
def test_ticking_at_watermarks_between_batches_changes_nothing(samples: list[Sample], cuts: list[int]) -> None:
    samples.sort(key=lambda s: s.time_us)  # a watermark is a promise: only in-order streams keep it
    one_by_one, batched = new_engine(), new_engine()
    expected: list[AlarmChange] = []
    got: list[AlarmChange] = []
    for piece in pieces(samples, cuts):
        expected += observe_each(one_by_one, piece)
        expected += one_by_one.tick(from_micros(watermark(piece)))
        got += observe_batched(batched, piece)
        got += batched.tick(from_micros(watermark(piece)))
    end = from_micros(watermark(samples) + 3 * 3_600_000_000)
    expected += one_by_one.tick(end)
    got += batched.tick(end)
    assert got == expected
    # And ticking changes when a change is reported, never what: the same multiset as without ticks,
    # up to the moment of the last tick.
    untimed = new_engine()
    plain = observe_each(untimed, samples) + untimed.tick(end)
    key = lambda c: (c.alert.raised_at, c.alert.patient_id, c.alert.rule, c.alert.device_id or "", c.change)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, plain))


@COMMON
@given(stream(), st.integers(0, 10_000))
def test_state_saved_and_restored_mid_stream_changes_nothing(samples: list[Sample], cut: int) -> None:
    reference = new_engine()
    expected = observe_each(reference, samples)
    first, second = samples[: cut % len(samples)], samples[cut % len(samples):]
    engine = new_engine()
    got = observe_batched(engine, first) if first else []
    restored = AlarmEngine.from_dict(json.loads(json.dumps(engine.to_dict())))
    assert restored.to_dict() == engine.to_dict()
    got += observe_batched(restored, second) if second else []
    assert got == expected


def test_a_ward_batched_by_the_cloud_equals_the_edge_sample_by_sample() -> None:
    """Half an hour of a ten-bed ward, two patients deteriorating, motion artefacts: most samples are quiet."""
    plan = WardPlan(patients=10, seconds=1800, seed=11, deteriorating=(3, 7), artefact_rate=0.004)
    cloud, edge = AlarmEngine(), AlarmEngine()
    from_cloud: list[AlarmChange] = []
    from_edge: list[AlarmChange] = []
    for batch in ward_batches(plan, batch_seconds=5):
        from_cloud += cloud.observe_batch(batch)
        for s in batch.iter_samples():
            from_edge += edge.observe(s.patient_id, s.kind, s.value, s.time, s.quality, s.device_id or None)
    assert from_cloud == from_edge
    assert state_of(cloud) == state_of(edge)
    assert cloud.stats.walked < cloud.stats.samples / 2  # the vectorised path carried most of the ward
    raised = {(c.alert.patient_id, c.alert.rule) for c in from_cloud if c.change == "raised"}
    assert {p for p, _ in raised if _ != "signal_artefact"} == {"pt-003", "pt-007"}
    assert {"spo2_low", "hr_high", "news2", "hr_rise"} <= {r for p, r in raised if p == "pt-003"}


# --- the quiet shortcut, one reason at a time -------------------------------------------------------------
# Each scenario makes a change that only one of the batched path's "needs a walk" tests can see, and checks
# that batching in 5-second pieces still gives exactly the per-sample result.


def _s(second: float, kind: str, value: float, quality: int = 0, patient: str = "pt-a") -> Sample:
    return Sample(to_micros(T0) + round(second * 1_000_000), patient, kind, value, quality, "dev-1")


def _both(samples: list[Sample], config: Any = None) -> list[AlarmChange]:
    one_by_one, batched = AlarmEngine(config), AlarmEngine(config)
    expected = observe_each(one_by_one, samples)
    got: list[AlarmChange] = []
    start = samples[0].time_us
    for i in range(0, 1 + (samples[-1].time_us - start) // 5_000_000):
        piece = [s for s in samples if start + i * 5_000_000 <= s.time_us < start + (i + 1) * 5_000_000]
        if piece:
            got += observe_batched(batched, piece)
    assert got == expected
    assert state_of(batched) == state_of(one_by_one)
    assert batched.stats.late == one_by_one.stats.late
    return got


def _steady(kind: str, value: float, start: int, end: int) -> list[Sample]:
    return [_s(t, kind, value) for t in range(start, end)]


def _merge(*runs: list[Sample]) -> list[Sample]:
    return sorted((s for run in runs for s in run), key=lambda s: s.time_us)


def test_news2_reached_only_by_quiet_band_changes_is_caught() -> None:
    # RR 22 (2 points) and HR 95 (1) cross no threshold rule; with oxygen (2) the score is 5.
    samples = _merge([_s(0, "on_oxygen", 1)], _steady("respiratory_rate", 16, 0, 100),
                     _steady("respiratory_rate", 22, 100, 200), _steady("heart_rate", 72, 0, 100),
                     _steady("heart_rate", 95, 100, 200))
    assert brief_rules(_both(samples)) == [("raised", "news2", "medium")]


def test_news2_input_returning_after_its_recency_window_is_caught() -> None:
    config = default_config().overridden({"timing": {"on_oxygen": {"recency_s": 60}}})
    samples = _merge([_s(0, "on_oxygen", 1), _s(200, "on_oxygen", 1)], _steady("respiratory_rate", 16, 0, 100),
                     _steady("respiratory_rate", 22, 100, 300), _steady("heart_rate", 72, 0, 100),
                     _steady("heart_rate", 95, 100, 300))
    assert brief_rules(_both(samples, config)) == [("raised", "news2", "medium")]


def test_a_per_sample_rate_rule_within_one_bucket_is_caught() -> None:
    samples = [_s(0, "systolic_bp", 160), _s(30, "systolic_bp", 115)]  # both within the quiet band
    assert brief_rules(_both(samples)) == [("raised", "sbp_drop", "medium")]


def test_a_late_sample_in_a_quiet_stream_is_dropped_alike() -> None:
    samples = [*_steady("heart_rate", 72, 0, 13), _s(11.5, "heart_rate", 74), *_steady("heart_rate", 72, 13, 20)]
    assert _both(samples) == []


def brief_rules(changes: list[AlarmChange]) -> list[tuple[str, str, str]]:
    return [(c.change, c.alert.rule, c.alert.priority) for c in changes]
