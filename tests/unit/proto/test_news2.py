"""NEWS2 against the RCP 2017 chart: every band boundary, both SpO2 scales, risk bands, bad input.

Source: Royal College of Physicians, National Early Warning Score (NEWS) 2, December 2017,
chart 1 (the NEWS2 scoring system) and chart 3 (clinical response thresholds).
"""

from __future__ import annotations

from typing import Any

import pytest

from proto import news2

NORMAL: dict[str, Any] = dict(respiratory_rate=16, spo2=98, on_oxygen=False, temperature=37.0, systolic_bp=120,
                              heart_rate=70, consciousness="A")


def _sub(parameter: str, value: Any, **extra: Any) -> int:
    args = dict(NORMAL, **{parameter: value}, **extra)
    result = news2.score(**args)
    key = {"temperature": "temperature", "on_oxygen": "air_or_oxygen"}.get(parameter, parameter)
    return result.subscores[key]


# (value, points) at each side of every boundary of chart 1.
RESPIRATION = [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)]
SPO2_SCALE_1 = [(50, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)]
SYSTOLIC = [(50, 3), (90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3), (260, 3)]
PULSE = [(30, 3), (40, 3), (41, 1), (50, 1), (51, 0), (90, 0), (91, 1), (110, 1), (111, 2), (130, 2),
         (131, 3), (200, 3)]
TEMPERATURE = [(33.0, 3), (35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1),
               (39.1, 2), (41.0, 2)]


@pytest.mark.parametrize(("value", "points"), RESPIRATION)
def test_respiration_rate_bands(value: float, points: int) -> None:
    assert _sub("respiratory_rate", value) == points


@pytest.mark.parametrize(("value", "points"), SPO2_SCALE_1)
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale_1_bands_ignore_oxygen(value: float, points: int, on_oxygen: bool) -> None:
    assert _sub("spo2", value, on_oxygen=on_oxygen) == points


# Scale 2: 88-92 scores 0 whatever the oxygen; >= 93 scores 0 on air but 1/2/3 on oxygen.
SPO2_SCALE_2 = [
    (70, False, 3), (83, False, 3), (84, False, 2), (85, False, 2), (86, False, 1), (87, False, 1),
    (88, False, 0), (92, False, 0), (93, False, 0), (97, False, 0), (100, False, 0),
    (83, True, 3), (87, True, 1), (88, True, 0), (92, True, 0), (93, True, 1), (94, True, 1),
    (95, True, 2), (96, True, 2), (97, True, 3), (100, True, 3),
]


@pytest.mark.parametrize(("value", "on_oxygen", "points"), SPO2_SCALE_2)
def test_spo2_scale_2_bands(value: float, on_oxygen: bool, points: int) -> None:
    assert _sub("spo2", value, on_oxygen=on_oxygen, spo2_scale=2) == points


def test_air_or_oxygen() -> None:
    assert _sub("on_oxygen", False) == 0
    assert _sub("on_oxygen", True) == 2


@pytest.mark.parametrize(("value", "points"), SYSTOLIC)
def test_systolic_bands(value: float, points: int) -> None:
    assert _sub("systolic_bp", value) == points


@pytest.mark.parametrize(("value", "points"), PULSE)
def test_pulse_bands(value: float, points: int) -> None:
    assert _sub("heart_rate", value) == points


@pytest.mark.parametrize(("value", "points"), TEMPERATURE)
def test_temperature_bands(value: float, points: int) -> None:
    assert _sub("temperature", value) == points


@pytest.mark.parametrize(("level", "points"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(level: str, points: int) -> None:
    assert _sub("consciousness", level) == points


def test_values_are_charted_at_chart_resolution() -> None:
    # 35.05 Cel is charted as 35.1 (rounded half up) -> 1 point; 90.5 mmHg is charted 91 -> 2 points.
    assert _sub("temperature", 35.05) == 1
    assert _sub("temperature", 35.04) == 3
    assert _sub("systolic_bp", 90.5) == 2
    assert _sub("systolic_bp", 90.4) == 3


def test_all_normal_is_zero_and_low() -> None:
    result = news2.score(**NORMAL)
    assert (result.total, result.risk, result.complete) == (0, "low", True)
    assert set(result.subscores) == {"respiratory_rate", "spo2", "air_or_oxygen", "systolic_bp", "heart_rate",
                                     "consciousness", "temperature"}


@pytest.mark.parametrize(("changes", "total", "risk"), [
    (dict(heart_rate=95), 1, "low"),
    (dict(heart_rate=95, respiratory_rate=22, temperature=38.5), 4, "low"),
    (dict(respiratory_rate=26), 3, "low-medium"),  # a single red score
    (dict(consciousness="C"), 3, "low-medium"),
    (dict(respiratory_rate=22, heart_rate=115, temperature=38.5), 5, "medium"),
    (dict(respiratory_rate=22, heart_rate=115, temperature=39.5), 6, "medium"),
    (dict(respiratory_rate=26, heart_rate=115, temperature=39.5), 7, "high"),
    (dict(respiratory_rate=30, spo2=85, on_oxygen=True, systolic_bp=85, heart_rate=140, consciousness="U",
          temperature=34.0), 20, "high"),
])
def test_aggregate_and_risk(changes: dict[str, Any], total: int, risk: str) -> None:
    result = news2.score(**dict(NORMAL, **changes))
    assert (result.total, result.risk) == (total, risk)


def test_missing_parameters_make_a_partial_score() -> None:
    result = news2.score(**dict(NORMAL, systolic_bp=None, consciousness=None, respiratory_rate=26))
    assert not result.complete
    assert result.missing == ("systolic_bp", "consciousness")
    assert result.total == 3 and result.subscores["systolic_bp"] == 0


@pytest.mark.parametrize("changes", [
    dict(spo2=101), dict(spo2=-1), dict(respiratory_rate=-2), dict(heart_rate=-5), dict(consciousness="X"),
    dict(consciousness="alert"), dict(spo2_scale=3), dict(spo2_scale=0), dict(temperature=float("nan")),
    dict(systolic_bp=float("inf")),
])
def test_impossible_input_raises(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        news2.score(**dict(NORMAL, **changes))
