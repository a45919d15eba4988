"""PostgreSQL binary COPY streams built from numpy columns, without a per-row Python loop.

Format: PostgreSQL docs, COPY, "Binary Format": an 11-byte signature, a 32-bit flags field and a 32-bit
header-extension length; then per row a 16-bit field count and per field a 32-bit length (-1 for NULL)
followed by the value in the type's binary send format (network byte order); then a 16-bit -1 trailer.
timestamptz is int64 microseconds since 2000-01-01 00:00 UTC, smallint int16, integer int32, bigint int64,
double precision IEEE float64, text the UTF-8 bytes.

Fixed-width columns come first in every row, text columns (given as a dictionary plus an index per row)
last. Rows are emitted grouped by the byte lengths of their texts (COPY does not care about row order):
all rows of a group share one layout, so a group is a 2-D byte array filled with a few column slices.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00"
HEADER: Final = SIGNATURE + struct.pack(">ii", 0, 0)
TRAILER: Final = struct.pack(">h", -1)
# 2000-01-01 00:00:00 UTC, PostgreSQL's timestamp epoch, in Unix microseconds.
PG_EPOCH_US: Final = 946_684_800_000_000

VITALS_COLUMNS: Final = ("time", "kind_id", "value", "quality", "patient_id", "device_id", "edge_id")
COPY_VITALS_SQL: Final = f"COPY vitals ({', '.join(VITALS_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
# The ingest writer's per-connection staging table for rollup increments (see cloud.ingest.store).
ROLLUP_STAGE_COLUMNS: Final = ("width_s", "bucket", "kind_id", "min", "max", "sum", "count", "patient_id")

_I32 = struct.Struct(">i")


@dataclass(frozen=True)
class Fixed:
    """A fixed-width column: `dtype` is its big-endian wire type (">i8" for bigint and timestamptz...)."""

    values: npt.NDArray[np.generic]
    dtype: str


@dataclass(frozen=True)
class Text:
    """A text column: row i holds `values[index[i]]` (None is NULL); index None means values[0] everywhere."""

    values: Sequence[str | None]
    index: npt.NDArray[np.integer] | None = None


def _field(value: str | None) -> bytes:
    if value is None:
        return _I32.pack(-1)
    raw = value.encode("utf-8")
    return _I32.pack(len(raw)) + raw


class _TextTable:
    """A text column's encoded fields (length + bytes), grouped by encoded length for 2-D lookups."""

    def __init__(self, column: Text, n: int) -> None:
        fields = [_field(v) for v in column.values]
        self.lengths = np.fromiter((len(f) for f in fields), dtype=np.int64, count=len(fields))
        self.index = (column.index.astype(np.intp, copy=False) if column.index is not None
                      else np.zeros(n, dtype=np.intp))
        self.position = np.empty(len(fields), dtype=np.intp)
        self.tables: dict[int, npt.NDArray[np.uint8]] = {}
        self.distinct = np.unique(self.lengths)
        for length in self.distinct.tolist():
            members = np.flatnonzero(self.lengths == length)
            self.position[members] = np.arange(members.shape[0])
            joined = b"".join(fields[i] for i in members.tolist())
            self.tables[length] = np.frombuffer(joined, dtype=np.uint8).reshape(-1, length)

    def row_lengths(self) -> npt.NDArray[np.int64]:
        result: npt.NDArray[np.int64] = self.lengths[self.index]
        return result


def binary_rows(fixed: Sequence[Fixed], texts: Sequence[Text]) -> bytes:
    """COPY rows (no header or trailer): the fixed columns (at least one) first, then the texts, in order."""
    if not fixed:
        raise ValueError("binary_rows needs at least one fixed-width column")
    n = int(fixed[0].values.shape[0])
    if n == 0:
        return b""
    layout = np.dtype([("fields", ">i2")] + [
        item for i, column in enumerate(fixed)
        for item in ((f"len{i}", ">i4"), (f"val{i}", column.dtype))
    ])
    prefix = np.empty(n, dtype=layout)
    prefix["fields"] = len(fixed) + len(texts)
    for i, column in enumerate(fixed):
        prefix[f"len{i}"] = np.dtype(column.dtype).itemsize
        prefix[f"val{i}"] = column.values
    prefix_bytes = prefix.view(np.uint8).reshape(n, layout.itemsize)
    tables = [_TextTable(column, n) for column in texts]
    if not tables:
        return prefix_bytes.tobytes()

    # Rows are grouped by the combination of their texts' encoded lengths (usually a single one).
    classes = [np.searchsorted(t.distinct, t.row_lengths()) for t in tables]
    combo_of_row = np.ravel_multi_index(classes, [t.distinct.shape[0] for t in tables])
    present = np.unique(combo_of_row)
    blocks = []
    for combo_key in present.tolist():
        combo = [int(t.distinct[i]) for t, i in zip(
            tables, np.unravel_index(combo_key, [t.distinct.shape[0] for t in tables]), strict=True)]
        rows = np.flatnonzero(combo_of_row == combo_key) if present.shape[0] > 1 else np.arange(n)
        block = np.empty((rows.shape[0], layout.itemsize + sum(combo)), dtype=np.uint8)
        block[:, : layout.itemsize] = prefix_bytes[rows]
        offset = layout.itemsize
        for table, length in zip(tables, combo, strict=True):
            block[:, offset : offset + length] = table.tables[length][table.position[table.index[rows]]]
            offset += length
        blocks.append(block.tobytes())
    return b"".join(blocks)


def vitals_rows(
    *,
    time_us: npt.NDArray[np.int64],
    kind_id: npt.NDArray[np.integer],
    value: npt.NDArray[np.float64],
    quality: npt.NDArray[np.integer],
    patient_idx: npt.NDArray[np.integer],
    device_idx: npt.NDArray[np.integer],
    patients: Sequence[str],
    devices: Sequence[str | None],
    edges: Sequence[str],
    edge_idx: npt.NDArray[np.integer] | None = None,
) -> bytes:
    """The `vitals` rows (COPY_VITALS_SQL column order) of samples, in the given order; a device id "" or None
    is NULL; without `edge_idx` every row is of edges[0]."""
    return binary_rows(
        [Fixed(time_us - PG_EPOCH_US, ">i8"), Fixed(kind_id, ">i2"), Fixed(value, ">f8"), Fixed(quality, ">i4")],
        [Text(patients, patient_idx), Text([d or None for d in devices], device_idx), Text(edges, edge_idx)],
    )


def rollup_rows(
    *,
    width_s: int,
    bucket_s: npt.NDArray[np.int64],
    kind_id: npt.NDArray[np.integer],
    low: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    total: npt.NDArray[np.float64],
    count: npt.NDArray[np.int64],
    patient_idx: npt.NDArray[np.integer],
    patients: Sequence[str],
) -> bytes:
    """Rows for the ingest writer's rollup staging table (ROLLUP_STAGE_COLUMNS order)."""
    bucket_us = bucket_s.astype(np.int64) * 1_000_000 - PG_EPOCH_US
    return binary_rows(
        [Fixed(np.full(bucket_s.shape[0], width_s, dtype=np.int32), ">i4"), Fixed(bucket_us, ">i8"),
         Fixed(kind_id, ">i2"), Fixed(low, ">f8"), Fixed(high, ">f8"), Fixed(total, ">f8"), Fixed(count, ">i8")],
        [Text(patients, patient_idx)],
    )


def copy_stream(row_blocks: Iterable[bytes]) -> bytes:
    """A complete binary COPY stream (header, rows, trailer)."""
    return b"".join((HEADER, *row_blocks, TRAILER))
