"""Rollups and latest samples computed with numpy, checked against plain Python aggregation."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.samples import SampleTable, latest, rollup
from proto.vitals import VitalsBatch, VitalsBatchBuilder

T0 = 1_767_225_600_000_000  # 2026-01-01 00:00 UTC


def batch(samples: list[tuple[int, str, str, float]]) -> VitalsBatch:
    builder = VitalsBatchBuilder()
    for t, patient, kind, value in samples:
        builder.add(T0 + t, patient, kind, value, device_id="d1")
    return builder.build()


def table(*batches: VitalsBatch) -> SampleTable:
    return SampleTable.from_batches([(b, b.quality.astype(np.int32), "edge-1") for b in batches])


def naive(samples: list[tuple[int, str, str, float]], width_s: int) -> dict[tuple[str, int, int], tuple[float, ...]]:
    from proto.vocabulary import kind

    groups: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for t, patient, name, value in samples:
        seconds = (T0 + t) // 1_000_000
        groups[(patient, kind(name).wire_id, seconds - seconds % width_s)].append(value)
    return {key: (min(v), max(v), math.fsum(v), len(v)) for key, v in groups.items()}


def as_dict(r: object) -> dict[tuple[str, int, int], tuple[float, ...]]:
    from cloud.ingest.samples import Rollup

    assert isinstance(r, Rollup)
    return {
        (r.patients[p], k, b): (lo, hi, s, c)
        for p, k, b, lo, hi, s, c in zip(r.patient.tolist(), r.kind_id.tolist(), r.bucket_s.tolist(), r.min.tolist(),
                                         r.max.tolist(), r.sum.tolist(), r.count.tolist(), strict=True)
    }


sample_lists = st.lists(
    st.tuples(st.integers(0, 3 * 3600 * 10**6), st.sampled_from(["pa", "pb", "pc"]),
              st.sampled_from(["heart_rate", "spo2"]), st.floats(30, 200, allow_nan=False)),
    min_size=1, max_size=200,
)


@settings(max_examples=60, deadline=None)
@given(first=sample_lists, second=sample_lists)
def test_rollups_equal_plain_aggregation(first: list[tuple[int, str, str, float]],
                                         second: list[tuple[int, str, str, float]]) -> None:
    samples = first + second
    data = table(batch(first), batch(second))
    for width in (60, 3600):
        got = as_dict(rollup(data, width))
        want = naive(samples, width)
        assert got.keys() == want.keys()
        for key, (lo, hi, total, count) in want.items():
            assert got[key][0] == lo and got[key][1] == hi and got[key][3] == count
            assert math.isclose(got[key][2], total, rel_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(samples=sample_lists)
def test_hour_rollup_from_minutes_equals_direct_hour_rollup(samples: list[tuple[int, str, str, float]]) -> None:
    data = table(batch(samples))
    coarse = as_dict(rollup(data, 60).coarsen(3600))
    direct = as_dict(rollup(data, 3600))

    assert coarse.keys() == direct.keys()
    for key, row in direct.items():
        assert coarse[key][0] == row[0] and coarse[key][1] == row[1] and coarse[key][3] == row[3]
        assert math.isclose(coarse[key][2], row[2], rel_tol=1e-12)


def test_rollup_rows_come_sorted_by_patient_kind_bucket() -> None:
    data = table(batch([(120_000_000, "zz", "spo2", 97), (0, "aa", "heart_rate", 70), (61_000_000, "aa", "spo2", 96),
                        (1_000_000, "zz", "heart_rate", 80)]))
    r = rollup(data, 60)
    keys = [(r.patients[p], k, b) for p, k, b in zip(r.patient.tolist(), r.kind_id.tolist(), r.bucket_s.tolist(),
                                                      strict=True)]

    assert keys == sorted(keys)


def test_latest_is_the_newest_sample_per_patient_and_kind() -> None:
    data = table(
        batch([(5, "pa", "heart_rate", 70), (9, "pa", "heart_rate", 75), (7, "pb", "heart_rate", 60)]),
        batch([(8, "pa", "heart_rate", 71), (3, "pa", "spo2", 97)]),
    )

    rows = [(r.patient_id, r.kind_id, r.time_us - T0, r.value) for r in latest(data)]

    assert rows == [("pa", 1, 9, 75.0), ("pa", 2, 3, 97.0), ("pb", 1, 7, 60.0)]


def test_latest_keeps_the_device_of_the_newest_sample() -> None:
    first, second = VitalsBatchBuilder(), VitalsBatchBuilder()
    first.add(T0 + 5, "pa", "heart_rate", 70, device_id="hrm-1")
    first.add(T0 + 6, "pb", "heart_rate", 61, device_id="")
    second.add(T0 + 9, "pa", "heart_rate", 72, device_id="plx-2")
    second.add(T0 + 4, "pb", "heart_rate", 60, device_id="hrm-3")

    rows = [(r.patient_id, r.value, r.device_id) for r in latest(table(first.build(), second.build()))]

    assert rows == [("pa", 72.0, "plx-2"), ("pb", 61.0, None)]


def test_series_order_groups_samples_by_patient_and_kind_in_time_order() -> None:
    data = table(
        batch([(5, "pb", "heart_rate", 60), (9, "pa", "spo2", 97), (3, "pa", "heart_rate", 70)]),
        batch([(4, "pa", "heart_rate", 71), (1, "pb", "heart_rate", 59), (2, "pa", "spo2", 96)]),
    ).in_series_order()

    rows = [(data.patients[p], k, t - T0, v) for p, k, t, v in zip(
        data.patient.tolist(), data.kind_id.tolist(), data.time_us.tolist(), data.value.tolist(), strict=True)]
    assert rows == [("pa", 1, 3, 70.0), ("pa", 1, 4, 71.0), ("pa", 2, 2, 96.0), ("pa", 2, 9, 97.0),
                    ("pb", 1, 1, 59.0), ("pb", 1, 5, 60.0)]
    assert data.device is not None and data.edge is not None
    assert {data.devices[d] for d in data.device.tolist()} == {"d1"} and set(data.edge.tolist()) == {0}
