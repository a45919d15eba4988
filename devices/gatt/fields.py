"""Wire field types and named-bit tables: the vocabulary the characteristic layouts are written in.

A `Codec` is one GATT format (UINT8, SFLOAT, Date Time...): its struct format and the conversion of the
unpacked item to and from a Python value. A `BitNames` table names the bits of a status field and an
`Enumeration` names the codes of an enumerated field, so every profile describes its statuses as data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from devices.gatt.date_time import DATE_TIME_SIZE, decode_date_time, encode_date_time
from devices.gatt.errors import FieldValueError
from devices.gatt.sfloat import SFLOAT_VALUES, decode_float, encode_float, encode_sfloat


@dataclass(frozen=True, slots=True)
class Codec:
    """One wire format: `fmt` is a single-item little-endian struct format of `size` bytes.

    `decode` maps the unpacked item to its Python value and `encode` maps back (None: as is);
    both raise FieldValueError for values the format cannot carry.
    """

    name: str
    fmt: str
    size: int
    decode: Callable[[Any], Any] | None = None
    encode: Callable[[Any], Any] | None = None


def _uint24_decode(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _uint24_encode(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFF:
        raise FieldValueError(f"{value} does not fit UINT24")
    return value.to_bytes(3, "little")


# GATT Specification Supplement, "Formats" (and IEEE 11073-20601 for the medical floats).
UINT8 = Codec("UINT8", "B", 1)
UINT16 = Codec("UINT16", "H", 2)
SINT16 = Codec("SINT16", "h", 2)
UINT24 = Codec("UINT24", "3s", 3, _uint24_decode, _uint24_encode)
SFLOAT = Codec("SFLOAT", "H", 2, SFLOAT_VALUES.__getitem__, encode_sfloat)
FLOAT = Codec("FLOAT", "I", 4, decode_float, encode_float)
DATE_TIME = Codec("DATE_TIME", f"{DATE_TIME_SIZE}s", DATE_TIME_SIZE, decode_date_time, encode_date_time)


@dataclass(frozen=True, slots=True)
class BitName:
    """A named condition of a status field: set when `raw & mask == value` (a single bit: mask == value)."""

    name: str
    mask: int
    value: int


class BitNames:
    """The named bits of a status field, in bit order; decodes raw -> names and encodes names -> raw.

    Bits not in the table are reserved for future use and ignored on decode, as the specs require of a
    receiver.
    """

    def __init__(self, entries: Iterable[BitName]) -> None:
        self.entries: tuple[BitName, ...] = tuple(entries)
        self.by_name: Mapping[str, BitName] = MappingProxyType({e.name: e for e in self.entries})
        # names(raw) -> the set conditions in table order. Status words repeat (mostly all clear), so the
        # decoded names of recent ones are remembered.
        self.names = functools.lru_cache(maxsize=512)(self._names)

    @classmethod
    def single(cls, names: Mapping[int, str]) -> BitNames:
        """A table of one-bit conditions given as {bit number: name}."""
        return cls(BitName(name, 1 << bit, 1 << bit) for bit, name in sorted(names.items()))

    def _names(self, raw: int) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries if raw & e.mask == e.value)

    def encode(self, names: Iterable[str]) -> int:
        """The raw field with `names` set; raises FieldValueError for unknown or conflicting names."""
        raw = 0
        for name in names:
            entry = self.by_name.get(name)
            if entry is None:
                raise FieldValueError(f"unknown status {name!r}")
            if raw & entry.mask not in (0, entry.value):
                raise FieldValueError(f"status {name!r} conflicts with another status of the same field")
            raw |= entry.value
        return raw


class Enumeration:
    """The named codes of an enumerated field (e.g. temperature type); other codes are reserved."""

    def __init__(self, field: str, names: Mapping[int, str]) -> None:
        self.field = field
        self.by_code: Mapping[int, str] = MappingProxyType(dict(names))
        self.by_name: Mapping[str, int] = MappingProxyType({v: k for k, v in names.items()})

    def name_of(self, code: int) -> str | None:
        """The name of `code`, or None for a reserved code."""
        return self.by_code.get(code)

    def code_of(self, name: str) -> int:
        """The code of `name`; raises FieldValueError for a name not in the table."""
        try:
            return self.by_name[name]
        except KeyError:
            raise FieldValueError(
                f"unknown {self.field} {name!r} (one of {', '.join(self.by_name)})"
            ) from None
