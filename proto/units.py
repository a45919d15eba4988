"""Exact conversions into the vocabulary's canonical UCUM units.

The factors are the ones the vocabulary fixes (ARCHITECTURE.md) or exact by definition; every codec
converts through these functions so edge and cloud never disagree on a unit.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

# 1 kPa = 7.50062 mm[Hg] (ARCHITECTURE.md; 1 mmHg = 133.322 Pa).
MMHG_PER_KPA = 7.50062
# Glucose: 1 mg/dL = 1/18.016 mmol/L (ARCHITECTURE.md; molar mass of glucose 180.16 g/mol).
MGDL_PER_MMOLL = 18.016
# International avoirdupois pound and inch, exact by definition (1959 agreement).
KG_PER_LB = 0.45359237
M_PER_INCH = 0.0254


def kpa_to_mmhg(kpa: float) -> float:
    """Pressure in kPa to mm[Hg]."""
    return kpa * MMHG_PER_KPA


def fahrenheit_to_celsius(deg_f: float) -> float:
    """Temperature in [degF] to Cel."""
    return (deg_f - 32.0) * 5.0 / 9.0


def mg_dl_to_mmol_l(mg_dl: float) -> float:
    """Glucose concentration in mg/dL to mmol/L."""
    return mg_dl / MGDL_PER_MMOLL


def kg_per_l_to_mmol_l(kg_per_l: float) -> float:
    """Glucose concentration in kg/L (the GATT Glucose Measurement unit) to mmol/L (1 kg/L = 100000 mg/dL)."""
    return mg_dl_to_mmol_l(kg_per_l * 100_000.0)


def mol_per_l_to_mmol_l(mol_per_l: float) -> float:
    """Concentration in mol/L to mmol/L."""
    return mol_per_l * 1000.0


def lb_to_kg(lb: float) -> float:
    """Mass in [lb_av] to kg."""
    return lb * KG_PER_LB


def inch_to_m(inches: float) -> float:
    """Length in [in_i] to m."""
    return inches * M_PER_INCH


def identity(value: float) -> float:
    """A value already in its canonical unit."""
    return value


# Source UCUM unit -> (canonical UCUM unit, conversion).
TO_CANONICAL: MappingProxyType[str, tuple[str, Callable[[float], float]]] = MappingProxyType({
    "kPa": ("mm[Hg]", kpa_to_mmhg),
    "mm[Hg]": ("mm[Hg]", identity),
    "[degF]": ("Cel", fahrenheit_to_celsius),
    "Cel": ("Cel", identity),
    "mg/dL": ("mmol/L", mg_dl_to_mmol_l),
    "kg/L": ("mmol/L", kg_per_l_to_mmol_l),
    "mol/L": ("mmol/L", mol_per_l_to_mmol_l),
    "mmol/L": ("mmol/L", identity),
    "[lb_av]": ("kg", lb_to_kg),
    "kg": ("kg", identity),
    "[in_i]": ("m", inch_to_m),
    "m": ("m", identity),
})


def to_canonical(value: float, unit: str) -> tuple[float, str]:
    """Convert `value` in UCUM `unit` to its canonical unit; raises ValueError for an unknown unit."""
    try:
        canonical, convert = TO_CANONICAL[unit]
    except KeyError:
        raise ValueError(f"no conversion from unit {unit!r}") from None
    return convert(value), canonical


# UCUM print symbols (UCUM table "print" column) for text people read; codes stay in data and on the wire.
PRINT_SYMBOLS: MappingProxyType[str, str] = MappingProxyType({
    "Cel": "°C", "[degF]": "°F", "mm[Hg]": "mmHg", "kPa": "kPa", "mmol/L": "mmol/L", "mg/dL": "mg/dL",
    "kg": "kg", "[lb_av]": "lb", "m": "m", "[in_i]": "in", "%": "%", "/min": "/min",
})


def print_symbol(unit: str) -> str:
    """How `unit` is written for a reader (e.g. 'Cel' -> '°C'); the code itself when UCUM gives no other."""
    return PRINT_SYMBOLS.get(unit, unit)
