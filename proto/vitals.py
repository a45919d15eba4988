"""Vitals batches: the bulk of the traffic, carried columnar and compressed.

A batch holds samples of many patients and devices. On the wire (body of a VITALS_BATCH envelope,
little-endian, then zlib-compressed):

    u16 P, then P x (u8 length, UTF-8 patient id)          dictionary of pseudonymous patient ids
    u16 D, then D x (u8 length, UTF-8 device id)           dictionary of device ids ("" = manual entry)
    u32 N                                                  number of samples
    i64 t0                                                 first sample time, microseconds since the Unix epoch (UTC)
    N x i64  time delta from the previous sample (us)      byte-shuffled
    N x u16  patient index                                 byte-shuffled
    N x u16  device index                                  byte-shuffled
    N x u8   vocabulary wire id
    N x f64  value in the kind's canonical UCUM unit       byte-shuffled
    N x u16  quality flags (proto.quality.Quality)         byte-shuffled

Byte shuffling (all first bytes, then all second bytes...) groups the slowly changing high bytes of
times and values so that zlib compresses them well; it is a numpy transpose, not per-sample work.
Values stay float64, so what a codec decoded is exactly what the cloud stores.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from proto.messages import OPAQUE_ID
from proto.quality import Quality
from proto.schema import ValidationError
from proto.vocabulary import BY_WIRE_ID, kind

MAX_SAMPLES = 1_000_000
MAX_IDS = 65_535
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Sample times must be plausible for a live system: 2000-01-01 .. 2100-01-01.
MIN_TIME_US = 946_684_800_000_000
MAX_TIME_US = 4_102_444_800_000_000
_KNOWN_WIRE_IDS = np.array(sorted(BY_WIRE_ID), dtype=np.uint8)
_KNOWN_QUALITY = int(sum(Quality))

_U16 = struct.Struct("<H")
_COUNTS = struct.Struct("<Iq")


def to_micros(when: dt.datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the Unix epoch."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: sample times must be timezone-aware")
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=micros)


@dataclass(frozen=True, slots=True)
class VitalSample:
    """One observation in row form: convenient at the edges of the system, slow in bulk."""

    time: dt.datetime
    patient_id: str
    kind: str
    value: float
    device_id: str = ""
    quality: Quality = Quality.NONE


class VitalsBatch:
    """Columnar samples. Build with VitalsBatchBuilder or from_samples(); arrays are read-only."""

    __slots__ = ("device_idx", "devices", "kind_id", "patient_idx", "patients", "quality", "time_us", "value")

    def __init__(
        self,
        *,
        patients: tuple[str, ...],
        devices: tuple[str, ...],
        time_us: npt.NDArray[np.int64],
        patient_idx: npt.NDArray[np.uint16],
        device_idx: npt.NDArray[np.uint16],
        kind_id: npt.NDArray[np.uint8],
        value: npt.NDArray[np.float64],
        quality: npt.NDArray[np.uint16],
    ) -> None:
        self.patients = patients
        self.devices = devices
        self.time_us = time_us
        self.patient_idx = patient_idx
        self.device_idx = device_idx
        self.kind_id = kind_id
        self.value = value
        self.quality = quality
        for column in (time_us, patient_idx, device_idx, kind_id, value, quality):
            column.flags.writeable = False

    def __len__(self) -> int:
        return int(self.time_us.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VitalsBatch):
            return NotImplemented
        return self.samples() == other.samples()

    def __repr__(self) -> str:
        return f"VitalsBatch({len(self)} samples, {len(self.patients)} patients, {len(self.devices)} devices)"

    def validate(self) -> None:
        """Check the batch is well formed; raises ValidationError naming the offending column."""
        n = len(self)
        if n == 0:
            raise ValidationError("samples", "a batch carries at least one sample")
        if n > MAX_SAMPLES:
            raise ValidationError("samples", f"more than {MAX_SAMPLES} samples")
        for name in ("patient_idx", "device_idx", "kind_id", "value", "quality"):
            if getattr(self, name).shape != (n,):
                raise ValidationError(name, f"column length differs from time column ({n})")
        for name, ids in (("patients", self.patients), ("devices", self.devices)):
            if len(ids) > MAX_IDS:
                raise ValidationError(name, f"more than {MAX_IDS} ids")
            for i, ident in enumerate(ids):
                if not (OPAQUE_ID.match(ident) or (name == "devices" and ident == "")):
                    raise ValidationError(f"{name}[{i}]", f"not a valid pseudonymous id: {ident!r}")
        if int(self.patient_idx.max()) >= len(self.patients):
            raise ValidationError("patient_idx", "index beyond the patient dictionary")
        if int(self.device_idx.max()) >= len(self.devices):
            raise ValidationError("device_idx", "index beyond the device dictionary")
        unknown = ~np.isin(self.kind_id, _KNOWN_WIRE_IDS)
        if unknown.any():
            raise ValidationError(f"kind_id[{int(np.argmax(unknown))}]", "unknown vital-sign wire id")
        finite = np.isfinite(self.value)
        if not finite.all():
            raise ValidationError(f"value[{int(np.argmin(finite))}]", "must be a finite number")
        if int(self.time_us.min()) < MIN_TIME_US or int(self.time_us.max()) > MAX_TIME_US:
            raise ValidationError("time_us", "sample time outside 2000-01-01..2100-01-01")
        if int(np.bitwise_or.reduce(self.quality)) & ~_KNOWN_QUALITY:
            raise ValidationError("quality", "unknown quality flag bits")

    def samples(self) -> list[VitalSample]:
        """The batch in row form."""
        return list(self.iter_samples())

    def iter_samples(self) -> Iterator[VitalSample]:
        kinds = {wire_id: k.name for wire_id, k in BY_WIRE_ID.items()}
        for t, p, d, k, v, q in zip(
            self.time_us.tolist(), self.patient_idx.tolist(), self.device_idx.tolist(),
            self.kind_id.tolist(), self.value.tolist(), self.quality.tolist(), strict=True,
        ):
            yield VitalSample(from_micros(t), self.patients[p], kinds[k], v, self.devices[d], Quality(q))

    @classmethod
    def from_samples(cls, samples: Iterable[VitalSample]) -> VitalsBatch:
        builder = VitalsBatchBuilder()
        for s in samples:
            builder.add(s.time, s.patient_id, s.kind, s.value, device_id=s.device_id, quality=s.quality)
        return builder.build()


class VitalsBatchBuilder:
    """Accumulates samples (the edge's collector) and freezes them into a VitalsBatch."""

    def __init__(self) -> None:
        self._patients: dict[str, int] = {}
        self._devices: dict[str, int] = {}
        self._time: list[int] = []
        self._patient: list[int] = []
        self._device: list[int] = []
        self._kind: list[int] = []
        self._value: list[float] = []
        self._quality: list[int] = []

    def __len__(self) -> int:
        return len(self._time)

    def add(
        self, time: dt.datetime | int, patient_id: str, kind_name: str, value: float, *,
        device_id: str = "", quality: int = 0,
    ) -> None:
        """Append one sample; `time` is an aware datetime or epoch microseconds."""
        if not math.isfinite(value):
            raise ValueError(f"{kind_name} value must be finite, got {value!r}")
        self._time.append(time if isinstance(time, int) else to_micros(time))
        self._patient.append(self._patients.setdefault(patient_id, len(self._patients)))
        self._device.append(self._devices.setdefault(device_id, len(self._devices)))
        self._kind.append(kind(kind_name).wire_id)
        self._value.append(float(value))
        self._quality.append(int(quality))

    def build(self) -> VitalsBatch:
        """The accumulated samples as a batch (validated); the builder is left empty."""
        batch = VitalsBatch(
            patients=tuple(self._patients), devices=tuple(self._devices),
            time_us=np.array(self._time, dtype=np.int64),
            patient_idx=np.array(self._patient, dtype=np.uint16),
            device_idx=np.array(self._device, dtype=np.uint16),
            kind_id=np.array(self._kind, dtype=np.uint8),
            value=np.array(self._value, dtype=np.float64),
            quality=np.array(self._quality, dtype=np.uint16),
        )
        batch.validate()
        self.__init__()  # type: ignore[misc]
        return batch


# --- body codec ------------------------------------------------------------------------------------------


def _shuffle(column: npt.NDArray[np.generic]) -> bytes:
    width = column.dtype.itemsize
    if width == 1:
        return column.tobytes()
    return column.view(np.uint8).reshape(-1, width).T.tobytes()


def _unshuffle(raw: bytes | memoryview, dtype: str, n: int) -> npt.NDArray[np.generic]:
    width = np.dtype(dtype).itemsize
    flat = np.frombuffer(raw, dtype=np.uint8, count=n * width)
    if width == 1:
        return flat.view(dtype).copy()
    return np.ascontiguousarray(flat.reshape(width, n).T).view(dtype).reshape(n)


def _encode_ids(ids: tuple[str, ...]) -> bytes:
    parts = [_U16.pack(len(ids))]
    for ident in ids:
        raw = ident.encode()
        parts.append(bytes((len(raw),)) + raw)
    return b"".join(parts)


def encode_batch(batch: VitalsBatch) -> bytes:
    """The uncompressed columnar body of a batch (the envelope compresses it)."""
    n = len(batch)
    deltas = np.empty(n, dtype="<i8")
    deltas[0] = 0
    np.subtract(batch.time_us[1:], batch.time_us[:-1], out=deltas[1:])
    return b"".join((
        _encode_ids(batch.patients), _encode_ids(batch.devices),
        _COUNTS.pack(n, int(batch.time_us[0])),
        _shuffle(deltas), _shuffle(batch.patient_idx.astype("<u2", copy=False)),
        _shuffle(batch.device_idx.astype("<u2", copy=False)), batch.kind_id.tobytes(),
        _shuffle(batch.value.astype("<f8", copy=False)), _shuffle(batch.quality.astype("<u2", copy=False)),
    ))


def _decode_ids(raw: memoryview, offset: int, what: str) -> tuple[tuple[str, ...], int]:
    if offset + 2 > len(raw):
        raise ValidationError(what, "truncated id dictionary")
    (count,) = _U16.unpack_from(raw, offset)
    offset += 2
    ids = []
    for i in range(count):
        if offset >= len(raw):
            raise ValidationError(f"{what}[{i}]", "truncated id")
        length = raw[offset]
        end = offset + 1 + length
        if end > len(raw):
            raise ValidationError(f"{what}[{i}]", "truncated id")
        try:
            ids.append(bytes(raw[offset + 1 : end]).decode())
        except UnicodeDecodeError:
            raise ValidationError(f"{what}[{i}]", "not UTF-8") from None
        offset = end
    return tuple(ids), offset


def decode_batch(body: bytes) -> VitalsBatch:
    """Parse and validate a columnar body; raises ValidationError naming what is wrong."""
    raw = memoryview(body)
    patients, offset = _decode_ids(raw, 0, "patients")
    devices, offset = _decode_ids(raw, offset, "devices")
    if offset + _COUNTS.size > len(raw):
        raise ValidationError("samples", "truncated sample count")
    n, t0 = _COUNTS.unpack_from(raw, offset)
    offset += _COUNTS.size
    if not 0 < n <= MAX_SAMPLES:
        raise ValidationError("samples", f"sample count {n} outside 1..{MAX_SAMPLES}")
    expected = n * (8 + 2 + 2 + 1 + 8 + 2)
    if len(raw) - offset != expected:
        raise ValidationError("samples", f"columns hold {len(raw) - offset} bytes, {expected} expected for {n} samples")
    columns = {}
    for name, dtype in (("time", "<i8"), ("patient_idx", "<u2"), ("device_idx", "<u2"), ("kind_id", "u1"),
                        ("value", "<f8"), ("quality", "<u2")):
        width = np.dtype(dtype).itemsize * n
        columns[name] = _unshuffle(raw[offset : offset + width], dtype, n)
        offset += width
    deltas = columns["time"].astype(np.int64)
    deltas[0] = t0
    with np.errstate(over="ignore"):
        time_us = np.cumsum(deltas, dtype=np.int64)
    batch = VitalsBatch(
        patients=patients, devices=devices, time_us=time_us,
        patient_idx=columns["patient_idx"].astype(np.uint16, copy=False),
        device_idx=columns["device_idx"].astype(np.uint16, copy=False),
        kind_id=columns["kind_id"].astype(np.uint8, copy=False),
        value=columns["value"].astype(np.float64, copy=False),
        quality=columns["quality"].astype(np.uint16, copy=False),
    )
    batch.validate()
    return batch
