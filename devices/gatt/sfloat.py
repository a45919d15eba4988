"""IEEE 11073-20601 medical floats: SFLOAT (16-bit) and FLOAT (32-bit), decode and encode.

Both are decimal: value = mantissa * 10**exponent, with a signed 4-bit exponent and 12-bit mantissa
(SFLOAT) or a signed 8-bit exponent and 24-bit mantissa (FLOAT), little-endian on the wire. With
exponent 0 the top five mantissa values are not numbers but special values (IEEE 11073-20601 Annex
F.8, F.9): NaN, NRes (not at this resolution), +INF, -INF and one reserved value.

Decoding gives the nearest double to the decimal value (never the product of two rounded floats),
None for NaN, NRes and the reserved value, and +/-inf for the infinities: callers turn every special
value into "no reading".
"""

from __future__ import annotations

import math
from typing import Final

from devices.gatt.errors import FieldValueError

# SFLOAT special values (exponent 0; 11073-20601 Annex F.8).
SFLOAT_NAN: Final = 0x07FF
SFLOAT_NRES: Final = 0x0800
SFLOAT_POSITIVE_INFINITY: Final = 0x07FE
SFLOAT_NEGATIVE_INFINITY: Final = 0x0802
SFLOAT_RESERVED: Final = 0x0801

# FLOAT special values (exponent 0; 11073-20601 Annex F.9).
FLOAT_NAN: Final = 0x007FFFFF
FLOAT_NRES: Final = 0x00800000
FLOAT_POSITIVE_INFINITY: Final = 0x007FFFFE
FLOAT_NEGATIVE_INFINITY: Final = 0x00800002
FLOAT_RESERVED: Final = 0x00800001

# The mantissas that are special when the exponent is 0, as signed integers.
_SFLOAT_SPECIAL_MANTISSAS: Final = frozenset({2047, 2046, -2048, -2047, -2046})
_FLOAT_SPECIAL_MANTISSAS: Final = frozenset({0x7FFFFF, 0x7FFFFE, -0x800000, -0x7FFFFF, -0x7FFFFE})


# Exact integer powers of ten for every exponent a FLOAT can carry (-128..127).
_POW10: Final[tuple[int, ...]] = tuple(10**k for k in range(129))


def _decimal(mantissa: int, exponent: int) -> float:
    """mantissa * 10**exponent, correctly rounded (int / int true division rounds once)."""
    if exponent >= 0:
        return float(mantissa * _POW10[exponent])
    return mantissa / _POW10[-exponent]


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def sfloat_parts(raw: int) -> tuple[int, int]:
    """The (mantissa, exponent) of a 16-bit SFLOAT."""
    return _signed(raw & 0x0FFF, 12), _signed(raw >> 12, 4)


def float_parts(raw: int) -> tuple[int, int]:
    """The (mantissa, exponent) of a 32-bit FLOAT."""
    return _signed(raw & 0x00FFFFFF, 24), _signed(raw >> 24, 8)


def _decode_sfloat_slow(raw: int) -> float | None:
    if raw == SFLOAT_POSITIVE_INFINITY:
        return math.inf
    if raw == SFLOAT_NEGATIVE_INFINITY:
        return -math.inf
    if raw in (SFLOAT_NAN, SFLOAT_NRES, SFLOAT_RESERVED):
        return None
    mantissa, exponent = sfloat_parts(raw)
    return _decimal(mantissa, exponent)


# Every SFLOAT decoded once at import (65,536 entries): decoding is then one tuple index.
SFLOAT_VALUES: Final[tuple[float | None, ...]] = tuple(_decode_sfloat_slow(raw) for raw in range(0x10000))


def decode_sfloat(raw: int) -> float | None:
    """A 16-bit SFLOAT as a float; None for NaN, NRes and reserved; +/-inf for the infinities."""
    return SFLOAT_VALUES[raw]


def decode_float(raw: int) -> float | None:
    """A 32-bit FLOAT as a float; None for NaN, NRes and reserved; +/-inf for the infinities."""
    if raw == FLOAT_POSITIVE_INFINITY:
        return math.inf
    if raw == FLOAT_NEGATIVE_INFINITY:
        return -math.inf
    if raw in (FLOAT_NAN, FLOAT_NRES, FLOAT_RESERVED):
        return None
    mantissa, exponent = float_parts(raw)
    return _decimal(mantissa, exponent)


def _encode_decimal(
    value: float | None, *, kind: str, mantissa_bits: int, exponent_bits: int,
    specials: frozenset[int], nan: int, pos_inf: int, neg_inf: int,
) -> int:
    """The raw bits for `value`: its shortest exact decimal form, else the finest one that fits."""
    if value is None or math.isnan(value):
        return nan
    if math.isinf(value):
        return pos_inf if value > 0 else neg_inf
    m_min, m_max = -(1 << (mantissa_bits - 1)), (1 << (mantissa_bits - 1)) - 1
    e_min, e_max = -(1 << (exponent_bits - 1)), (1 << (exponent_bits - 1)) - 1

    def fits(mantissa: int, exponent: int) -> bool:
        return m_min <= mantissa <= m_max and not (exponent == 0 and mantissa in specials)

    def pack(mantissa: int, exponent: int) -> int:
        return ((exponent & ((1 << exponent_bits) - 1)) << mantissa_bits) | (mantissa & ((1 << mantissa_bits) - 1))

    if value == 0:
        return 0
    finest: tuple[int, int] | None = None
    for decimals in range(-e_min + 1):
        mantissa = round(value * _POW10[decimals])
        if not fits(mantissa, -decimals):
            break
        if _decimal(mantissa, -decimals) == value:
            return pack(mantissa, -decimals)
        finest = (mantissa, -decimals)
    if finest is not None:
        return pack(*finest)
    for exponent in range(1, e_max + 1):
        mantissa = round(value / _POW10[exponent])
        if fits(mantissa, exponent):
            return pack(mantissa, exponent)
    raise FieldValueError(f"{value!r} is out of the {kind} range")


def encode_sfloat(value: float | None) -> int:
    """`value` as a 16-bit SFLOAT: exact when it has <= 4 significant digits, else rounded.

    None and NaN encode as NaN, +/-inf as +/-INF; raises FieldValueError beyond +/-2047e7.
    """
    return _encode_decimal(
        value, kind="SFLOAT", mantissa_bits=12, exponent_bits=4, specials=_SFLOAT_SPECIAL_MANTISSAS,
        nan=SFLOAT_NAN, pos_inf=SFLOAT_POSITIVE_INFINITY, neg_inf=SFLOAT_NEGATIVE_INFINITY,
    )


def encode_float(value: float | None) -> int:
    """`value` as a 32-bit FLOAT: exact when it has <= 7 significant digits, else rounded."""
    return _encode_decimal(
        value, kind="FLOAT", mantissa_bits=24, exponent_bits=8, specials=_FLOAT_SPECIAL_MANTISSAS,
        nan=FLOAT_NAN, pos_inf=FLOAT_POSITIVE_INFINITY, neg_inf=FLOAT_NEGATIVE_INFINITY,
    )
