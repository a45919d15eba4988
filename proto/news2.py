"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, December 2017).

Pure and shared: the edge scores while the uplink is down and the cloud scores on ingest, with this one
implementation so both always agree. Bands follow the RCP 2017 chart ("NEWS2 scoring system", chart 1):

    parameter            3        2        1        0          1          2          3
    respiration /min     <=8               9-11     12-20                 21-24      >=25
    SpO2 scale 1 %       <=91     92-93    94-95    >=96
    SpO2 scale 2 %       <=83     84-85    86-87    88-92,     93-94 O2   95-96 O2   >=97 O2
                                                    >=93 air
    air or oxygen                 oxygen            air
    systolic BP mmHg     <=90     91-100   101-110  111-219                          >=220
    pulse /min           <=40              41-50    51-90      91-110     111-130    >=131
    consciousness                                   A                                C, V, P or U
    temperature Cel      <=35.0            35.1-36.0 36.1-38.0 38.1-39.0  >=39.1

Clinical response thresholds (chart 3): aggregate 0-4 low; a score of 3 in any single parameter
low-medium; 5-6 medium; 7 or more high.

Values are charted at the chart's resolution before banding (whole numbers; temperature to 0.1 Cel,
rounded half up), as a clinician would write them on the paper chart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from proto.vocabulary import CONSCIOUSNESS_CODES

Risk = Literal["low", "low-medium", "medium", "high"]
PARAMETERS: tuple[str, ...] = (
    "respiratory_rate", "spo2", "air_or_oxygen", "systolic_bp", "heart_rate", "consciousness", "temperature",
)

# (inclusive upper bound, points), ascending; the last band is open-ended.
_Bands = tuple[tuple[float, int], ...]
_RESPIRATORY_RATE: _Bands = ((8, 3), (11, 1), (20, 0), (24, 2), (float("inf"), 3))
_SPO2_SCALE_1: _Bands = ((91, 3), (93, 2), (95, 1), (float("inf"), 0))
_SPO2_SCALE_2_LOW: _Bands = ((83, 3), (85, 2), (87, 1), (92, 0))
_SPO2_SCALE_2_ON_OXYGEN: _Bands = ((94, 1), (96, 2), (float("inf"), 3))
_SYSTOLIC_BP: _Bands = ((90, 3), (100, 2), (110, 1), (219, 0), (float("inf"), 3))
_HEART_RATE: _Bands = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (float("inf"), 3))
_TEMPERATURE: _Bands = ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (float("inf"), 2))


@dataclass(frozen=True, slots=True)
class News2Score:
    """A NEWS2 result. `complete` is False when some parameters were missing and scored as absent."""

    total: int
    subscores: dict[str, int]
    risk: Risk
    missing: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """Whether every parameter was present (a partial score can only under-estimate risk)."""
        return not self.missing


def _band(value: float, bands: _Bands) -> int:
    for upper, points in bands:
        if value <= upper:
            return points
    raise AssertionError("bands are open-ended")  # pragma: no cover


def _charted(value: float, places: int, name: str) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    quantum = Decimal(1).scaleb(-places)
    return float(Decimal(repr(float(value))).quantize(quantum, rounding=ROUND_HALF_UP))


def _check_range(value: float, name: str, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is impossible (allowed {low}..{high})")


def _spo2_points(spo2: float, on_oxygen: bool, scale: int) -> int:
    if scale == 1:
        return _band(spo2, _SPO2_SCALE_1)
    # Scale 2 (target 88-92%, e.g. hypercapnic respiratory failure): high saturations score only on oxygen.
    if spo2 <= 92:
        return _band(spo2, _SPO2_SCALE_2_LOW)
    return _band(spo2, _SPO2_SCALE_2_ON_OXYGEN) if on_oxygen else 0


def risk_of(total: int, subscores: Mapping[str, int]) -> Risk:
    """The RCP clinical risk band for an aggregate score and its parameter scores."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    if any(points == 3 for points in subscores.values()):
        return "low-medium"
    return "low"


def score(
    *,
    respiratory_rate: float | None,
    spo2: float | None,
    on_oxygen: bool | None,
    temperature: float | None,
    systolic_bp: float | None,
    heart_rate: float | None,
    consciousness: str | None,
    spo2_scale: int = 1,
) -> News2Score:
    """Score NEWS2 from one set of observations (units: /min, %, Cel, mm[Hg], /min; ACVPU letter).

    A parameter given as None is missing: it scores 0 and is listed in `missing`. Impossible input
    (SpO2 over 100, negative rates, an unknown consciousness level, a scale other than 1 or 2) raises
    ValueError.
    """
    if spo2_scale not in (1, 2):
        raise ValueError(f"spo2_scale must be 1 or 2, got {spo2_scale!r}")
    subscores: dict[str, int] = {}
    missing: list[str] = []

    if respiratory_rate is None:
        missing.append("respiratory_rate")
    else:
        rr = _charted(respiratory_rate, 0, "respiratory_rate")
        _check_range(rr, "respiratory_rate", 0, 200)
        subscores["respiratory_rate"] = _band(rr, _RESPIRATORY_RATE)

    if spo2 is None:
        missing.append("spo2")
    else:
        sat = _charted(spo2, 0, "spo2")
        _check_range(sat, "spo2", 0, 100)
        subscores["spo2"] = _spo2_points(sat, bool(on_oxygen), spo2_scale)

    if on_oxygen is None:
        missing.append("air_or_oxygen")
    else:
        subscores["air_or_oxygen"] = 2 if on_oxygen else 0

    if systolic_bp is None:
        missing.append("systolic_bp")
    else:
        sbp = _charted(systolic_bp, 0, "systolic_bp")
        _check_range(sbp, "systolic_bp", 0, 400)
        subscores["systolic_bp"] = _band(sbp, _SYSTOLIC_BP)

    if heart_rate is None:
        missing.append("heart_rate")
    else:
        hr = _charted(heart_rate, 0, "heart_rate")
        _check_range(hr, "heart_rate", 0, 400)
        subscores["heart_rate"] = _band(hr, _HEART_RATE)

    if consciousness is None:
        missing.append("consciousness")
    elif consciousness not in CONSCIOUSNESS_CODES:
        raise ValueError(f"consciousness must be one of {', '.join(CONSCIOUSNESS_CODES)}, got {consciousness!r}")
    else:
        # Any new confusion, voice, pain or unresponsive scores 3 (RCP 2017 added "C" to AVPU).
        subscores["consciousness"] = 0 if consciousness == "A" else 3

    if temperature is None:
        missing.append("temperature")
    else:
        temp = _charted(temperature, 1, "temperature")
        _check_range(temp, "temperature", 10.0, 50.0)
        subscores["temperature"] = _band(temp, _TEMPERATURE)

    ordered = {name: subscores.get(name, 0) for name in PARAMETERS}
    total = sum(ordered.values())
    return News2Score(total=total, subscores=ordered, risk=risk_of(total, ordered),
                      missing=tuple(missing))
