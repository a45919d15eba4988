"""The vital-sign vocabulary shared by edge and cloud (ARCHITECTURE.md, "Vital-sign vocabulary").

Every observation in the system names one of these kinds and carries its value in the kind's canonical
UCUM unit. The `wire_id` is the kind's number in the compact vitals codec: it is part of the wire
contract, so an existing id never changes meaning; new kinds take new ids.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


class ValueType(enum.Enum):
    """How a kind's float value is to be read."""

    QUANTITY = "quantity"  # a measured amount in `unit`
    CODE = "code"  # an ordinal code (ACVPU: 0..4, see CONSCIOUSNESS_CODES)
    BOOLEAN = "boolean"  # 0.0 = false, 1.0 = true


@dataclass(frozen=True, slots=True)
class VitalKind:
    """One vital sign: its name, canonical UCUM unit, LOINC code, display names and plausible range.

    The plausible range bounds what a living patient can show; values outside it are kept but flagged
    implausible (never silently dropped), since a wrong flag is cheaper than a lost reading.
    """

    name: str
    wire_id: int
    unit: str
    loinc: str | None
    display_en: str
    display_zh: str
    plausible_min: float
    plausible_max: float
    value_type: ValueType = ValueType.QUANTITY

    def display(self, language: str) -> str:
        """The display name for a UI language ('zh-CN' or 'en'); Chinese is the default."""
        return self.display_en if language.lower().startswith("en") else self.display_zh

    def is_plausible(self, value: float) -> bool:
        """Whether `value` (in the canonical unit) lies within the plausible range."""
        return self.plausible_min <= value <= self.plausible_max


class UnknownKindError(KeyError):
    """A vital-sign kind that is not in the vocabulary."""


# ACVPU (NEWS2, RCP 2017): Alert, new Confusion, responds to Voice, responds to Pain, Unresponsive.
CONSCIOUSNESS_CODES: tuple[str, ...] = ("A", "C", "V", "P", "U")

_KINDS: tuple[VitalKind, ...] = (
    VitalKind("heart_rate", 1, "/min", "8867-4", "Heart rate", "心率", 20.0, 300.0),
    VitalKind("spo2", 2, "%", "59408-5", "Oxygen saturation (SpO2)", "血氧饱和度", 50.0, 100.0),
    VitalKind("respiratory_rate", 3, "/min", "9279-1", "Respiratory rate", "呼吸频率", 2.0, 80.0),
    VitalKind("systolic_bp", 4, "mm[Hg]", "8480-6", "Systolic blood pressure", "收缩压", 40.0, 300.0),
    VitalKind("diastolic_bp", 5, "mm[Hg]", "8462-4", "Diastolic blood pressure", "舒张压", 15.0, 200.0),
    VitalKind("mean_bp", 6, "mm[Hg]", "8478-0", "Mean blood pressure", "平均动脉压", 20.0, 250.0),
    VitalKind("body_temperature", 7, "Cel", "8310-5", "Body temperature", "体温", 25.0, 45.0),
    VitalKind("glucose", 8, "mmol/L", "15074-8", "Blood glucose", "血糖", 0.5, 50.0),
    VitalKind("body_weight", 9, "kg", "29463-7", "Body weight", "体重", 0.3, 400.0),
    VitalKind("body_height", 10, "m", "8302-2", "Body height", "身高", 0.2, 2.6),
    VitalKind("bmi", 11, "kg/m2", "39156-5", "Body mass index", "体重指数", 5.0, 100.0),
    VitalKind("rr_interval", 12, "s", None, "RR interval", "RR间期", 0.15, 3.0),
    VitalKind("energy_expended", 13, "kJ", None, "Energy expended", "能量消耗", 0.0, 65535.0),
    VitalKind(
        "consciousness", 14, "{ACVPU}", "67775-7", "Level of consciousness (ACVPU)", "意识水平 (ACVPU)",
        0.0, 4.0, ValueType.CODE,
    ),
    VitalKind("on_oxygen", 15, "{bool}", None, "On supplemental oxygen", "吸氧", 0.0, 1.0, ValueType.BOOLEAN),
)

VOCABULARY: Mapping[str, VitalKind] = MappingProxyType({k.name: k for k in _KINDS})
BY_WIRE_ID: Mapping[int, VitalKind] = MappingProxyType({k.wire_id: k for k in _KINDS})


def kind(name: str) -> VitalKind:
    """The vocabulary entry for `name`; raises UnknownKindError for anything else."""
    try:
        return VOCABULARY[name]
    except KeyError:
        raise UnknownKindError(f"unknown vital-sign kind {name!r}") from None


def kind_by_wire_id(wire_id: int) -> VitalKind:
    """The vocabulary entry with codec number `wire_id`; raises UnknownKindError for anything else."""
    try:
        return BY_WIRE_ID[wire_id]
    except KeyError:
        raise UnknownKindError(f"unknown vital-sign wire id {wire_id}") from None


def consciousness_code(level: str) -> float:
    """The numeric value carried for an ACVPU level ('A' -> 0.0 ... 'U' -> 4.0)."""
    try:
        return float(CONSCIOUSNESS_CODES.index(level))
    except ValueError:
        raise ValueError(f"consciousness must be one of {'/'.join(CONSCIOUSNESS_CODES)}, got {level!r}") from None


def consciousness_level(code: float) -> str:
    """The ACVPU level for a carried numeric value (inverse of consciousness_code)."""
    index = int(code)
    if index != code or not 0 <= index < len(CONSCIOUSNESS_CODES):
        raise ValueError(f"not an ACVPU code: {code!r}")
    return CONSCIOUSNESS_CODES[index]
