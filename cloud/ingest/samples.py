"""The samples one ingest transaction writes, as one columnar table, and the aggregates taken from it.

Rollups (min/max/sum/count per patient, kind and UTC-aligned bucket) are computed here with numpy and
merged into vitals_1m / vitals_15m / vitals_1h by the store; rows come out ordered by (patient id, kind,
bucket), the same order in every worker, so concurrent upserts of the same rows lock them in one order and
cannot deadlock.
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
    """Samples of several batches. `patient`, `device` and `edge` index the sorted dictionaries `patients`,
    `devices` (where "" stands for none) and `edges`."""

    patients: tuple[str, ...]
    time_us: Int64s
    patient: npt.NDArray[np.intp]
    kind_id: npt.NDArray[np.int16]
    value: Floats
    quality: npt.NDArray[np.int32]
    devices: tuple[str, ...] = ("",)
    device: npt.NDArray[np.intp] | None = None  # None: no device for any sample
    edges: tuple[str, ...] = ("",)
    edge: npt.NDArray[np.intp] | None = None  # None: edges[0] for every sample

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    @classmethod
    def from_batches(cls, parts: Sequence[tuple[VitalsBatch, npt.NDArray[np.int32], str]]) -> SampleTable:
        """Concatenate batches, each with its final quality column and the edge that sent it, mapping ids to
        one dictionary per column."""
        patients = tuple(sorted({p for batch, _, _ in parts for p in batch.patients}))
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return cls(patients, empty, empty.astype(np.intp), empty.astype(np.int16),
                       empty.astype(np.float64), empty.astype(np.int32))
        devices = tuple(sorted({d or "" for batch, _, _ in parts for d in batch.devices} | {""}))
        edges = tuple(sorted({e for _, _, e in parts}))
        patient_of, device_of, edge_of = (
            {v: i for i, v in enumerate(values)} for values in (patients, devices, edges))
        return cls(
            patients=patients,
            time_us=np.concatenate([b.time_us for b, _, _ in parts]).astype(np.int64, copy=False),
            patient=np.concatenate([
                np.array([patient_of[p] for p in b.patients], dtype=np.intp)[b.patient_idx] for b, _, _ in parts
            ]),
            kind_id=np.concatenate([b.kind_id for b, _, _ in parts]).astype(np.int16),
            value=np.concatenate([b.value for b, _, _ in parts]).astype(np.float64, copy=False),
            quality=np.concatenate([q for _, q, _ in parts]).astype(np.int32, copy=False),
            devices=devices,
            device=np.concatenate([
                np.array([device_of[d or ""] for d in b.devices], dtype=np.intp)[b.device_idx] for b, _, _ in parts
            ]),
            edges=edges,
            edge=np.concatenate([np.full(len(b), edge_of[e], dtype=np.intp) for b, _, e in parts]),
        )

    def in_series_order(self) -> SampleTable:
        """The same samples ordered by (patient, kind, time), arrival order among equal times.

        The writer COPYs them in this order: consecutive rows then land next to each other in the
        (patient_id, kind_id, time) index, which the database inserts markedly faster than interleaved
        patients (docs/cloud-ingest.md, "Throughput")."""
        order = np.lexsort((self.time_us, self.kind_id, self.patient))
        return SampleTable(
            patients=self.patients, time_us=self.time_us[order], patient=self.patient[order],
            kind_id=self.kind_id[order], value=self.value[order], quality=self.quality[order],
            devices=self.devices, device=self.device[order] if self.device is not None else None,
            edges=self.edges, edge=self.edge[order] if self.edge is not None else None,
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
    device_id: str | None = None


def latest(table: SampleTable) -> list[Latest]:
    """The newest sample per (patient, kind), ordered by patient id then kind (of equal times, the last given)."""
    if len(table) == 0:
        return []
    order = np.lexsort((table.time_us, table.kind_id, table.patient))
    p, k = table.patient[order], table.kind_id[order]
    ends = np.flatnonzero(np.concatenate(((p[1:] != p[:-1]) | (k[1:] != k[:-1]), [True])))
    rows = order[ends]
    if table.device is None:
        device_ids: list[str | None] = [None] * rows.shape[0]
    else:
        device_ids = [table.devices[d] or None for d in table.device[rows].tolist()]
    return [
        Latest(table.patients[pi], ki, ti, vi, qi, di)
        for pi, ki, ti, vi, qi, di in zip(
            table.patient[rows].tolist(), table.kind_id[rows].tolist(), table.time_us[rows].tolist(),
            table.value[rows].tolist(), table.quality[rows].tolist(), device_ids, strict=True,
        )
    ]
