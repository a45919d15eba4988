"""The numpy-built binary COPY stream, read back by a straightforward per-row parser of the format."""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.copy_binary import HEADER, PG_EPOCH_US, TRAILER, VITALS_COLUMNS, copy_stream, vitals_rows

Row = tuple[int, int, float, int, str, str | None, str]


def parse_copy(stream: bytes) -> list[Row]:
    """Rows of a binary COPY stream in VITALS_COLUMNS order (PostgreSQL docs, COPY, "Binary Format")."""
    assert stream.startswith(b"PGCOPY\n\xff\r\n\x00")
    flags, extension = struct.unpack_from(">ii", stream, 11)
    assert (flags, extension) == (0, 0)
    offset = 19
    rows: list[Row] = []
    while True:
        (fields,) = struct.unpack_from(">h", stream, offset)
        offset += 2
        if fields == -1:
            assert offset == len(stream)
            return rows
        assert fields == len(VITALS_COLUMNS)
        values: list[bytes | None] = []
        for _ in range(fields):
            (length,) = struct.unpack_from(">i", stream, offset)
            offset += 4
            if length == -1:
                values.append(None)
            else:
                values.append(stream[offset : offset + length])
                offset += length
        t, k, v, q, p, d, e = values
        assert t is not None and k is not None and v is not None and q is not None and p is not None and e is not None
        rows.append((
            struct.unpack(">q", t)[0] + PG_EPOCH_US, struct.unpack(">h", k)[0], struct.unpack(">d", v)[0],
            struct.unpack(">i", q)[0], p.decode(), d.decode() if d is not None else None, e.decode(),
        ))


def build(n: int, patients: tuple[str, ...], devices: tuple[str, ...], seed: int) -> tuple[bytes, list[Row]]:
    rng = np.random.default_rng(seed)
    time_us = (1_767_225_600_000_000 + rng.integers(0, 10**9, n)).astype(np.int64)
    kind = rng.integers(1, 16, n).astype(np.uint8)
    value = rng.normal(80, 20, n)
    quality = rng.integers(0, 1 << 13, n).astype(np.int32)
    p_idx = rng.integers(0, len(patients), n).astype(np.uint16)
    d_idx = rng.integers(0, len(devices), n).astype(np.uint16)
    rows = vitals_rows(time_us=time_us, kind_id=kind, value=value, quality=quality, patient_idx=p_idx,
                       device_idx=d_idx, patients=patients, devices=devices, edges=["edge-1"])
    expected = [
        (int(time_us[i]), int(kind[i]), float(value[i]), int(quality[i]), patients[p_idx[i]],
         devices[d_idx[i]] or None, "edge-1")
        for i in range(n)
    ]
    return copy_stream([rows]), expected


def test_rows_carry_every_field_in_the_binary_send_format() -> None:
    stream, expected = build(500, ("pt-1", "patient-long-id-2", "病人3"), ("dev-a", "", "device-bb"), seed=1)

    assert sorted(parse_copy(stream)) == sorted(expected)


def test_time_is_microseconds_since_the_postgres_epoch() -> None:
    when = dt.datetime(2026, 11, 1, 8, 30, 0, 123456, tzinfo=dt.UTC)
    micros = int((when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1))
    rows = vitals_rows(time_us=np.array([micros]), kind_id=np.array([1]), value=np.array([72.0]),
                       quality=np.array([0]), patient_idx=np.array([0]), device_idx=np.array([0]),
                       patients=("p",), devices=("d",), edges=["e"])
    pg_micros = int((when - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1))

    assert rows[2 + 4 : 2 + 4 + 8] == struct.pack(">q", pg_micros)


def test_an_empty_batch_is_header_and_trailer_only() -> None:
    empty = np.empty(0, dtype=np.int64)
    rows = vitals_rows(time_us=empty, kind_id=empty, value=empty.astype(float), quality=empty, patient_idx=empty,
                       device_idx=empty, patients=(), devices=(), edges=["e"])

    assert copy_stream([rows]) == HEADER + TRAILER
    assert parse_copy(HEADER + TRAILER) == []


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    patients=st.lists(st.text(min_size=1, max_size=12).filter(lambda s: "\x00" not in s), min_size=1, max_size=6,
                      unique=True),
    devices=st.lists(st.text(max_size=12).filter(lambda s: "\x00" not in s), min_size=1, max_size=6, unique=True),
    seed=st.integers(0, 2**16),
)
def test_any_mix_of_id_lengths_round_trips(n: int, patients: list[str], devices: list[str], seed: int) -> None:
    stream, expected = build(n, tuple(patients), tuple(devices), seed)

    assert sorted(parse_copy(stream), key=repr) == sorted(expected, key=repr)
