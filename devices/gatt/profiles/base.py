"""What every characteristic codec offers: parse to its dataclass, encode from it, and build Readings."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from devices.gatt.errors import GattEncodeError
from devices.gatt.reading import Reading

M = TypeVar("M")

# UINT8 user index 0xFF means "unknown user" (User Data Service; BLS and WSS User ID field).
UNKNOWN_USER = 0xFF


@dataclass(frozen=True, slots=True)
class CharacteristicCodec(Generic[M]):
    """One characteristic: `parse` bytes -> dataclass, `encode` dataclass -> bytes, `readings` of a parse.

    `decode` is readings(parse(payload)), or a faster path that must return the same list.
    """

    characteristic: int
    name: str
    types: tuple[type[Any], ...]
    parse: Callable[[bytes], M]
    encode: Callable[[M], bytes]
    readings: Callable[[M], list[Reading]]
    decode: Callable[[bytes], list[Reading]]


def characteristic_codec(
    characteristic: int, name: str, types: tuple[type[Any], ...], *,
    parse: Callable[[bytes], M], encode: Callable[[M], bytes], readings: Callable[[M], list[Reading]],
    decode: Callable[[bytes], list[Reading]] | None = None,
) -> CharacteristicCodec[M]:
    """A codec whose decode is readings(parse(payload)) unless a fast path is given."""

    def decode_slow(payload: bytes) -> list[Reading]:
        return readings(parse(payload))

    return CharacteristicCodec(
        characteristic, name, types, parse, encode, readings, decode if decode is not None else decode_slow,
    )


def is_number(value: float | None) -> bool:
    """Whether a decoded value is a number (not None for NaN/NRes, not an infinity): only those yield readings."""
    return value is not None and math.isfinite(value)


def user_of(user_id: int | None) -> int | None:
    """The Reading user id: None for an absent field or the 'unknown user' index."""
    return None if user_id is None or user_id == UNKNOWN_USER else user_id


def check(characteristic: int, condition: bool, reason: str) -> None:
    """Raise GattEncodeError(reason) unless `condition` holds (encoder-side validation)."""
    if not condition:
        raise GattEncodeError(characteristic, reason)


def unscaled(characteristic: int, field: str, value: float, resolution_divisor: int, maximum: int) -> int:
    """The raw fixed-point integer for `value` at resolution 1/divisor; GattEncodeError when out of range."""
    if not math.isfinite(value):
        raise GattEncodeError(characteristic, f"{field}: {value!r} is not a finite number")
    raw = round(value * resolution_divisor)
    if not 0 <= raw <= maximum:
        raise GattEncodeError(characteristic, f"{field}: {value!r} is out of range")
    return raw
