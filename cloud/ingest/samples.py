"""The samples one ingest transaction writes, as one columnar table, and the aggregates taken from it.

Rollups (min/max/sum/count per patient, kind and UTC-aligned bucket) are computed here with numpy and
merged into vitals_1m / vitals_1h by the store; rows come out ordered by (patient id, kind, bucket), the
same order in every worker, so concurrent upserts of the same rows lock them in one order and cannot deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from proto.vitals import VitalsBatch

Int64s = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SampleTable:
    """Samples of several batches; `patient` indexes `patients`, which is sorted."""

    patients: tuple[str, ...]
    time_us: Int64s
    patient: npt.NDArray[np.intp]
    kind_id: npt.NDArray[np.int16]
    value: Floats
    quality: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    @classmethod
    def from_batches(cls, parts: Sequence[tuple[VitalsBatch, npt.NDArray[np.int32]]]) -> SampleTable:
        """Concatenate batches (each with its final quality column), mapping patient ids to one dictionary."""
        patients = tuple(sorted({p for batch, _ in parts for p in batch.patients}))
        index = {p: i for i, p in enumerate(patients)}
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return cls(patients, empty, empty.astype(np.intp), empty.astype(np.int16),
                       empty.astype(np.float64), empty.astype(np.int32))
        return cls(
            patients=patients,
            time_us=np.concatenate([b.time_us for b, _ in parts]).astype(np.int64, copy=False),
            patient=np.concatenate([
                np.array([index[p] for p in b.patients], dtype=np.intp)[b.patient_idx] for b, _ in parts
            ]),
            kind_id=np.concatenate([b.kind_id for b, _ in parts]).astype(np.int16),
            value=np.concatenate([b.value for b, _ in parts]).astype(np.float64, copy=False),
            quality=np.concatenate([q for _, q in parts]).astype(np.int32, copy=False),
        )


@dataclass(frozen=True, slots=True)
class Rollup:
    """Aggregates per (patient, kind, bucket): bucket starts in Unix seconds, `width_s` wide."""

    width_s: int
    patients: tuple[str, ...]
    patient: npt.NDArray[np.intp]
    kind_id: npt.NDArray[np.int16]
    bucket_s: Int64s
    min: Floats
    max: Floats
    sum: Floats
    count: Int64s

    def __len__(self) -> int:
        return int(self.bucket_s.shape[0])

    def coarsen(self, width_s: int) -> Rollup:
        """The same data in wider buckets (a multiple of this width): min of mins, sum of sums..."""
        if width_s % self.width_s:
            raise ValueError(f"{width_s} s buckets are not a multiple of {self.width_s} s")
        bucket = self.bucket_s - self.bucket_s % width_s
        return _aggregate(width_s, self.patients, self.patient, self.kind_id, bucket,
                          self.min, self.max, self.sum, self.count)


def _aggregate(
    width_s: int, patients: tuple[str, ...], patient: npt.NDArray[np.intp], kind_id: npt.NDArray[np.int16],
    bucket: Int64s, low: Floats, high: Floats, total: Floats, count: Int64s,
) -> Rollup:
    if bucket.shape[0] == 0:
        return Rollup(width_s, patients, patient, kind_id, bucket, low, high, total, count)
    order = np.lexsort((bucket, kind_id, patient))
    p, k, b = patient[order], kind_id[order], bucket[order]
    starts = np.flatnonzero(np.concatenate(([True], (p[1:] != p[:-1]) | (k[1:] != k[:-1]) | (b[1:] != b[:-1]))))
    return Rollup(
        width_s=width_s,
        patients=patients,
        patient=p[starts],
        kind_id=k[starts],
        bucket_s=b[starts],
        min=np.minimum.reduceat(low[order], starts),
        max=np.maximum.reduceat(high[order], starts),
        sum=np.add.reduceat(total[order], starts),
        count=np.add.reduceat(count[order], starts),
    )


def rollup(table: SampleTable, width_s: int) -> Rollup:
    """Aggregate raw samples into `width_s`-second buckets aligned on the Unix epoch (UTC)."""
    seconds = table.time_us // 1_000_000
    bucket = seconds - seconds % width_s
    return _aggregate(width_s, table.patients, table.patient, table.kind_id, bucket,
                      table.value, table.value, table.value, np.ones(len(table), dtype=np.int64))


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest sample of one patient and kind."""

    patient_id: str
    kind_id: int
    time_us: int
    value: float
    quality: int


def latest(table: SampleTable) -> list[Latest]:
    """The newest sample per (patient, kind), ordered by patient id then kind."""
    if len(table) == 0:
        return []
    order = np.lexsort((table.time_us, table.kind_id, table.patient))
    p, k = table.patient[order], table.kind_id[order]
    ends = np.flatnonzero(np.concatenate(((p[1:] != p[:-1]) | (k[1:] != k[:-1]), [True])))
    rows = order[ends]
    return [
        Latest(table.patients[pi], ki, ti, vi, qi)
        for pi, ki, ti, vi, qi in zip(
            table.patient[rows].tolist(), table.kind_id[rows].tolist(), table.time_us[rows].tolist(),
            table.value[rows].tolist(), table.quality[rows].tolist(), strict=True,
        )
    ]
