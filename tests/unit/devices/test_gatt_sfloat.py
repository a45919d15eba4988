"""IEEE 11073-20601 SFLOAT / FLOAT: published values, special values, and encode/decode round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.gatt.errors import FieldValueError
from devices.gatt.sfloat import (
    FLOAT_NAN,
    FLOAT_NEGATIVE_INFINITY,
    FLOAT_NRES,
    FLOAT_POSITIVE_INFINITY,
    FLOAT_RESERVED,
    SFLOAT_NAN,
    SFLOAT_NEGATIVE_INFINITY,
    SFLOAT_NRES,
    SFLOAT_POSITIVE_INFINITY,
    SFLOAT_RESERVED,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
    float_parts,
    sfloat_parts,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # IEEE 11073-20601 Annex F.8 special values (exponent 0): never numbers.
        (SFLOAT_NAN, None),
        (SFLOAT_NRES, None),
        (SFLOAT_RESERVED, None),
        (SFLOAT_POSITIVE_INFINITY, math.inf),
        (SFLOAT_NEGATIVE_INFINITY, -math.inf),
        # Nordic Android-BLE-Common-Library BloodPressureMeasurementDataCallbackTest: 18.9 kPa = 0xF0BD,
        # 138 mmHg = 0x008A, 15.9 = 0xF09F.
        (0xF0BD, 18.9),
        (0x008A, 138.0),
        (0xF09F, 15.9),
        # Stanford SpeziBluetooth PLXTests: 99.0 = 0xF3DE, 8.9 = 0xE37A, 8.7 = 0xF057, 137 = 0xF55A.
        (0xF3DE, 99.0),
        (0xE37A, 8.9),
        (0xF057, 8.7),
        (0xF55A, 137.0),
        # Sign extension of both nibbles: exponent -1, mantissa -1; exponent +1, mantissa -2048 (a number).
        (0xFFFF, -0.1),
        (0x1800, -20480.0),
        (0x87FF, 2047e-8),
    ],
)
def test_sfloat_decodes_published_values(raw: int, expected: float | None) -> None:
    assert decode_sfloat(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Annex F.9 special values.
        (FLOAT_NAN, None),
        (FLOAT_NRES, None),
        (FLOAT_RESERVED, None),
        (FLOAT_POSITIVE_INFINITY, math.inf),
        (FLOAT_NEGATIVE_INFINITY, -math.inf),
        # Nordic TemperatureMeasurementDataCallbackTest: B0 0E 00 FE = 3760e-2 = 37.60 degC.
        (0xFE000EB0, 37.6),
        # 371e-1 = 37.1, the usual HTS example value; 0xFFFFFFFF = -1e-1.
        (0xFF000173, 37.1),
        (0xFFFFFFFF, -0.1),
    ],
)
def test_float_decodes_published_values(raw: int, expected: float | None) -> None:
    assert decode_float(raw) == expected


def test_parts_sign_extend() -> None:
    assert sfloat_parts(0xF0BD) == (189, -1)
    assert sfloat_parts(0x7800) == (-2048, 7)
    assert float_parts(0x80800000) == (-0x800000, -128)


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        (None, SFLOAT_NAN),
        (math.nan, SFLOAT_NAN),
        (math.inf, SFLOAT_POSITIVE_INFINITY),
        (-math.inf, SFLOAT_NEGATIVE_INFINITY),
        (0.0, 0x0000),
        (138.0, 0x008A),  # integers keep exponent 0, as devices send them
        (18.9, 0xF0BD),  # shortest exact decimal form
        (12.34, 0xE4D2),  # Spezi MedFloatTests: exponent -2, mantissa 1234
        (123000.0, 0x24CE),  # Spezi MedFloatTests normalised form: exponent 2, mantissa 1230
        (2046.0, 0x10CD),  # 2046e0 would be +INF: rounds to 205e1
        (1 / 3, 0xD14D),  # not representable: rounded to the finest form that fits, 333e-3
    ],
)
def test_sfloat_encodes_shortest_exact_form(value: float | None, raw: int) -> None:
    assert encode_sfloat(value) == raw


def test_float_encodes_typical_thermometer_values() -> None:
    assert encode_float(37.1) == 0xFF000173
    assert encode_float(98.6) == 0xFF0003DA
    assert encode_float(None) == FLOAT_NAN
    assert encode_float(-math.inf) == FLOAT_NEGATIVE_INFINITY


def test_out_of_range_values_do_not_encode() -> None:
    with pytest.raises(FieldValueError, match="out of the SFLOAT range"):
        encode_sfloat(2.1e10)
    with pytest.raises(FieldValueError, match="out of the FLOAT range"):
        encode_float(1e200)


@given(st.integers(0, 0xFFFF))
def test_every_sfloat_value_survives_encode(raw: int) -> None:
    value = decode_sfloat(raw)
    assert decode_sfloat(encode_sfloat(value)) == value


@given(st.integers(0, 0xFFFFFFFF))
def test_every_float_value_survives_encode(raw: int) -> None:
    value = decode_float(raw)
    assert decode_float(encode_float(value)) == value


@given(st.integers(-2045, 2045), st.integers(-8, 7))
def test_sfloat_decodes_to_the_nearest_double_of_the_decimal(mantissa: int, exponent: int) -> None:
    raw = ((exponent & 0xF) << 12) | (mantissa & 0xFFF)
    assert decode_sfloat(raw) == float(f"{mantissa}e{exponent}")
