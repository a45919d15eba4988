"""The vectorised half of observe_batch: find the patients whose samples need the per-sample walk.

A patient is walked (every one of its samples in the batch, in order) if it is busy (an open incident or
a pending timer) or if any of its samples could change anything beyond the patient's latest values and
open history bucket: an untrusted sample, a value outside the quiet band of its thresholds, a NEWS2
input changing cell or returning after its recency window, a history bucket boundary, a per-sample rate
rule, or a sample out of time order. For every other patient the walk would only record the latest
values and add to the open bucket; `apply_quiet` does exactly that, in numpy, in the same order (so even
the floating-point bucket sums are bit-identical to the walk's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from proto.alerting.news2_bands import NEWS2_WIRE_IDS, SCALES, cells_of
from proto.alerting.rules import KIND_COLUMNS, CompiledConfig
from proto.alerting.streams import NONE, StreamTable
from proto.alerting.trust import untrusted_mask

_NEWS2_KIND = np.zeros(KIND_COLUMNS, dtype=np.bool_)
_NEWS2_KIND[list(NEWS2_WIRE_IDS)] = True

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ConfigArrays:
    """The compiled configurations' per-kind parameters stacked as [config, kind] arrays."""

    quiet_lo: F64
    quiet_hi: F64
    recency_us: I64
    bucket_us: I64
    per_sample_rate: B
    news2_on: B
    spo2_scale: I64

    @classmethod
    def stack(cls, configs: Sequence[CompiledConfig]) -> ConfigArrays:
        bucket = np.zeros((len(configs), KIND_COLUMNS), dtype=np.int64)
        for i, c in enumerate(configs):
            for kind_id, width in c.bucket_us.items():
                bucket[i, kind_id] = width
        return cls(
            quiet_lo=np.stack([c.quiet_lo for c in configs]), quiet_hi=np.stack([c.quiet_hi for c in configs]),
            recency_us=np.array([c.recency_us for c in configs], dtype=np.int64), bucket_us=bucket,
            per_sample_rate=np.stack([c.per_sample_rate for c in configs]),
            news2_on=np.array([c.news2 is not None for c in configs], dtype=np.bool_),
            spo2_scale=np.array([c.config.news2.spo2_scale for c in configs], dtype=np.int64),
        )


@dataclass(frozen=True, slots=True)
class Route:
    walk: B  # per sample, in batch order: walk it
    order: npt.NDArray[np.intp]  # batch positions sorted by stream (patient slot, kind), stable
    slot: I64  # the sorted samples' slots, kinds, times, values
    kind: npt.NDArray[np.intp]
    time: I64
    value: F64
    stream_end: B  # the sorted sample is the last of its stream in the batch
    has_bucket: B


def route(table: StreamTable, arrays: ConfigArrays, slot: I64, kind: npt.NDArray[np.intp], time: I64, value: F64,
          quality: npt.NDArray[np.uint16]) -> Route:
    """Decide which samples are walked; everything the quiet path needs comes back in stream order."""
    n = slot.shape[0]
    cfg = table.config[slot]
    interesting = untrusted_mask(kind, value, quality)
    interesting |= table.busy[slot]
    interesting |= arrays.per_sample_rate[cfg, kind]
    interesting |= (value < arrays.quiet_lo[cfg, kind]) | (value > arrays.quiet_hi[cfg, kind])

    key = slot * KIND_COLUMNS + kind
    order = np.argsort(key, kind="stable")
    ks, so, ko, ts, vs, co = key[order], slot[order], kind[order], time[order], value[order], cfg[order]
    first = np.ones(n, dtype=np.bool_)
    first[1:] = ks[1:] != ks[:-1]
    stream_end = np.ones(n, dtype=np.bool_)
    stream_end[:-1] = first[1:]

    # The previous sample of each stream: in the batch, or the table's latest before the batch.
    prev_t = np.empty(n, dtype=np.int64)
    prev_v = np.empty(n, dtype=np.float64)
    prev_t[1:], prev_v[1:] = ts[:-1], vs[:-1]
    prev_t[first] = table.latest_t[so[first], ko[first]]
    prev_v[first] = table.latest_v[so[first], ko[first]]
    missing = prev_t == NONE
    since = ts - np.where(missing, ts, prev_t)
    flagged = since < 0  # out of time order: the walk drops it as late

    news2 = _NEWS2_KIND[ko] & arrays.news2_on[co]
    if news2.any():
        returning = missing | (since > arrays.recency_us[co, ko])
        moved = np.zeros(n, dtype=np.bool_)
        scale = arrays.spo2_scale[co]
        for wire_id in NEWS2_WIRE_IDS:
            of_kind = news2 & (ko == wire_id)
            if not of_kind.any():
                continue
            for s in SCALES:
                mask = of_kind & (scale == s)
                if mask.any():
                    moved[mask] = cells_of(s, wire_id, vs[mask]) != cells_of(s, wire_id, prev_v[mask])
        flagged |= news2 & (returning | moved)

    width = arrays.bucket_us[co, ko]
    has_bucket = width > 0
    if has_bucket.any():
        bucket = np.where(has_bucket, ts // np.where(has_bucket, width, 1), 0)
        prev_bucket = np.empty(n, dtype=np.int64)
        prev_bucket[1:] = bucket[:-1]
        prev_bucket[first] = table.acc_bucket[so[first], ko[first]]
        flagged |= has_bucket & (bucket != prev_bucket)

    interesting[order] |= flagged
    marked = np.zeros(table.capacity, dtype=np.bool_)
    marked[slot[interesting]] = True
    return Route(walk=marked[slot], order=order, slot=so, kind=ko, time=ts, value=vs, stream_end=stream_end,
                 has_bucket=has_bucket)


def apply_quiet(table: StreamTable, r: Route) -> int:
    """Record the quiet samples: the latest value of each stream and the open-bucket sums. Returns their count."""
    quiet = ~r.walk[r.order]
    last = quiet & r.stream_end
    table.latest_t[r.slot[last], r.kind[last]] = r.time[last]
    table.latest_v[r.slot[last], r.kind[last]] = r.value[last]
    summed = quiet & r.has_bucket
    if summed.any():
        rows, cols = r.slot[summed], r.kind[summed]
        # np.add.at adds element by element in index order: the same sums, bit for bit, as the walk's.
        np.add.at(table.acc_sum, (rows, cols), r.value[summed])
        np.add.at(table.acc_n, (rows, cols), 1)
    return int(quiet.sum())
