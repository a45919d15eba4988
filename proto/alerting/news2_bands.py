"""NEWS2 inputs as "cells": value ranges within which proto.news2 gives the same points, for every SpO2 scale.

The cell edges are not written down here: they are found once, at import, by probing proto.news2.score
on the chart's resolution (whole numbers; temperature 0.1 Cel, NEWS2 module docstring) over each kind's
plausible range. So there is still one NEWS2 implementation; this module only lets the batched path ask
"could this sample change the patient's score?" with a vectorised search instead of scoring it. Cells
are per SpO2 scale; each covers both air and oxygen.

A value v charts to c when c - q/2 <= v < c + q/2 (round half up), so an edge between charted values
c and c + q lies at c + q/2, and `np.searchsorted(edges, v, side="right")` is the cell of v.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from proto import news2
from proto.news2 import News2Score
from proto.vocabulary import CONSCIOUSNESS_CODES, ValueType, kind

# Vocabulary kind -> proto.news2.score keyword.
NEWS2_INPUTS: Mapping[str, str] = MappingProxyType({
    "respiratory_rate": "respiratory_rate",
    "spo2": "spo2",
    "on_oxygen": "on_oxygen",
    "body_temperature": "temperature",
    "systolic_bp": "systolic_bp",
    "heart_rate": "heart_rate",
    "consciousness": "consciousness",
})
NEWS2_WIRE_IDS: tuple[int, ...] = tuple(kind(name).wire_id for name in NEWS2_INPUTS)
SCALES = (1, 2)  # NEWS2 SpO2 scales
# Chart resolution per input (decimal places), as proto.news2 charts them.
_PLACES: Mapping[str, int] = MappingProxyType({"temperature": 1})


def _subscore_signature(param: str, scale: int) -> Callable[[float], tuple[int, ...]]:
    """The points `param` scores at a value on SpO2 scale `scale`, on air and on oxygen."""
    blank: dict[str, object] = {name: None for name in NEWS2_INPUTS.values()}

    def signature(value: float) -> tuple[int, ...]:
        points = []
        for on_oxygen in (False, True):
            args = dict(blank, on_oxygen=on_oxygen, spo2_scale=scale)
            args[param] = value
            try:
                result = news2.score(**args)  # type: ignore[arg-type]
            except ValueError:  # beyond what NEWS2 accepts (e.g. SpO2 > 100): implausible, its own cell
                return ()
            points.append(sum(result.subscores.values()))
        return tuple(points)

    return signature


def _quantity_edges(kind_name: str, param: str, scale: int) -> npt.NDArray[np.float64]:
    vk = kind(kind_name)
    places = _PLACES.get(param, 0)
    quantum = Decimal(1).scaleb(-places)
    low = Decimal(int(vk.plausible_min) - 1)
    high = Decimal(int(vk.plausible_max) + 1)
    signature = _subscore_signature(param, scale)
    edges: list[float] = []
    value = max(low, Decimal(0))
    previous = signature(float(value))
    while value < high:
        nxt = value + quantum
        current = signature(float(nxt))
        if current != previous:
            edges.append(float(value + quantum / 2))
        value, previous = nxt, current
    return np.array(edges, dtype=np.float64)


def _code_edges(count: int) -> npt.NDArray[np.float64]:
    # Codes and booleans: every value is its own cell (consciousness letters, air/oxygen).
    return np.arange(count - 1, dtype=np.float64) + 0.5


def _build_edges() -> dict[tuple[int, int], npt.NDArray[np.float64]]:
    edges: dict[tuple[int, int], npt.NDArray[np.float64]] = {}
    for scale in SCALES:
        for kind_name, param in NEWS2_INPUTS.items():
            vk = kind(kind_name)
            if vk.value_type is ValueType.QUANTITY:
                edges[scale, vk.wire_id] = _quantity_edges(kind_name, param, scale)
            elif vk.value_type is ValueType.CODE:
                edges[scale, vk.wire_id] = _code_edges(len(CONSCIOUSNESS_CODES))
            else:
                edges[scale, vk.wire_id] = _code_edges(2)
    return edges


# (SpO2 scale, wire id) -> cell edges. On scale 1 air/oxygen does not change the SpO2 points, so the
# ordinary 96-99 % of a healthy patient stays in one cell.
EDGES: Mapping[tuple[int, int], npt.NDArray[np.float64]] = MappingProxyType(_build_edges())
_EDGE_LISTS: Mapping[tuple[int, int], list[float]] = MappingProxyType({k: v.tolist() for k, v in EDGES.items()})


def cell_of(scale: int, wire_id: int, value: float) -> int:
    """The cell of one value of a NEWS2 input kind on SpO2 scale `scale` (same answer as cells_of)."""
    return bisect.bisect_right(_EDGE_LISTS[scale, wire_id], value)


def cells_of(scale: int, wire_id: int, values: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
    """The cells of many values of one NEWS2 input kind on SpO2 scale `scale`."""
    return np.searchsorted(EDGES[scale, wire_id], values, side="right")


# --- scoring with a cache keyed by cells ----------------------------------------------------------------

_CACHE: dict[tuple[object, ...], News2Score] = {}
_CACHE_LIMIT = 8192


def score_latest(values: Mapping[int, float], spo2_scale: int) -> News2Score:
    """proto.news2.score for the present inputs (by wire id; absent ones are missing), memoised by cell.

    Two input sets with the same cells score identically by construction of the cells, so the cache
    never changes a result; it only spares the Decimal charting on every sample of a busy patient.
    """
    key = (spo2_scale, *(cell_of(spo2_scale, w, values[w]) if w in values else -1 for w in NEWS2_WIRE_IDS))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    args: dict[str, object] = {}
    for kind_name, param in NEWS2_INPUTS.items():
        wire_id = kind(kind_name).wire_id
        raw = values.get(wire_id)
        if raw is None:
            args[param] = None
        elif param == "consciousness":
            args[param] = CONSCIOUSNESS_CODES[int(raw)]
        elif param == "on_oxygen":
            args[param] = raw >= 0.5
        else:
            args[param] = raw
    result = news2.score(spo2_scale=spo2_scale, **args)  # type: ignore[arg-type]
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.clear()
    _CACHE[key] = result
    return result
