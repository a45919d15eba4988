"""The vocabulary matches ARCHITECTURE.md, and unit conversions are exact."""

from __future__ import annotations

import pytest

from proto import units, vocabulary
from proto.quality import ARTEFACT, Quality

# ARCHITECTURE.md, "Vital-sign vocabulary".
EXPECTED = {
    "heart_rate": ("/min", "8867-4"), "spo2": ("%", "59408-5"), "respiratory_rate": ("/min", "9279-1"),
    "systolic_bp": ("mm[Hg]", "8480-6"), "diastolic_bp": ("mm[Hg]", "8462-4"), "mean_bp": ("mm[Hg]", "8478-0"),
    "body_temperature": ("Cel", "8310-5"), "glucose": ("mmol/L", "15074-8"), "body_weight": ("kg", "29463-7"),
    "body_height": ("m", "8302-2"), "bmi": ("kg/m2", "39156-5"), "rr_interval": ("s", None),
    "energy_expended": ("kJ", None), "consciousness": ("{ACVPU}", "67775-7"), "on_oxygen": ("{bool}", None),
}


def test_vocabulary_matches_the_architecture() -> None:
    assert {k: (v.unit, v.loinc) for k, v in vocabulary.VOCABULARY.items()} == EXPECTED


def test_every_kind_has_both_languages_and_a_unique_wire_id() -> None:
    kinds = list(vocabulary.VOCABULARY.values())
    assert len({k.wire_id for k in kinds}) == len(kinds)
    for k in kinds:
        assert k.display("en") and k.display("zh-CN") and k.display("en") != k.display("zh-CN")
        assert k.plausible_min < k.plausible_max
    assert vocabulary.kind("spo2").display("zh-CN") == "血氧饱和度"


def test_unknown_kind() -> None:
    with pytest.raises(vocabulary.UnknownKindError):
        vocabulary.kind("mood")


def test_plausibility() -> None:
    hr = vocabulary.kind("heart_rate")
    assert hr.is_plausible(72) and not hr.is_plausible(400) and not hr.is_plausible(0)


def test_acvpu_codes() -> None:
    assert [vocabulary.consciousness_code(c) for c in "ACVPU"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert vocabulary.consciousness_level(3.0) == "P"
    with pytest.raises(ValueError):
        vocabulary.consciousness_code("X")
    with pytest.raises(ValueError):
        vocabulary.consciousness_level(1.5)


@pytest.mark.parametrize(("value", "unit", "expected", "canonical"), [
    (16.0, "kPa", 120.00992, "mm[Hg]"),  # 1 kPa = 7.50062 mm[Hg]
    (98.6, "[degF]", 37.0, "Cel"),
    (32.0, "[degF]", 0.0, "Cel"),
    (180.16, "mg/dL", 10.0, "mmol/L"),  # 1 mg/dL = 1/18.016 mmol/L
    (0.0018016, "kg/L", 10.0, "mmol/L"),  # 1 kg/L = 100 000 mg/dL
    (0.0055, "mol/L", 5.5, "mmol/L"),
    (100.0, "[lb_av]", 45.359237, "kg"),
    (70.0, "[in_i]", 1.778, "m"),
])
def test_conversions_are_exact(value: float, unit: str, expected: float, canonical: str) -> None:
    converted, unit_out = units.to_canonical(value, unit)
    assert unit_out == canonical
    assert converted == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_unknown_unit() -> None:
    with pytest.raises(ValueError):
        units.to_canonical(1.0, "furlong")


def test_quality_names_and_artefact_mask() -> None:
    q = Quality.MOTION | Quality.LOW_PERFUSION
    assert q.names == ("motion", "low_perfusion")
    assert q & ARTEFACT and not (Quality.MANUAL_ENTRY & ARTEFACT)
