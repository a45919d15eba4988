"""Which samples may drive a clinical alarm: not artefact-flagged, not implausible (scalar and vectorised).

A sample is untrusted when it carries any proto.quality.ARTEFACT bit (an IEC 60601-1-8 technical alarm
condition), the IMPLAUSIBLE flag, or a value outside the vocabulary's plausible range (or not a valid
code / boolean for coded kinds). Untrusted samples feed technical rules only.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from proto.alerting.rules import KIND_COLUMNS
from proto.quality import ARTEFACT, Quality
from proto.vocabulary import BY_WIRE_ID, ValueType

UNTRUSTED = int(ARTEFACT | Quality.IMPLAUSIBLE)
_IMPLAUSIBLE = int(Quality.IMPLAUSIBLE)

_MIN = np.full(KIND_COLUMNS, -np.inf)
_MAX = np.full(KIND_COLUMNS, np.inf)
_DISCRETE = np.zeros(KIND_COLUMNS, dtype=np.bool_)
for _wire_id, _kind in BY_WIRE_ID.items():
    _MIN[_wire_id] = _kind.plausible_min
    _MAX[_wire_id] = _kind.plausible_max
    _DISCRETE[_wire_id] = _kind.value_type is not ValueType.QUANTITY
_MIN_LIST: list[float] = _MIN.tolist()
_MAX_LIST: list[float] = _MAX.tolist()
_DISCRETE_LIST: list[bool] = _DISCRETE.tolist()


def untrusted_flags(kind_id: int, value: float, quality: int) -> int:
    """The untrusting quality bits of one sample (0: trusted), IMPLAUSIBLE added for implausible values."""
    flags = quality & UNTRUSTED
    if not _MIN_LIST[kind_id] <= value <= _MAX_LIST[kind_id] or (_DISCRETE_LIST[kind_id] and value != int(value)):
        flags |= _IMPLAUSIBLE
    return flags


def untrusted_mask(kind_ids: npt.NDArray[np.intp], values: npt.NDArray[np.float64],
                   quality: npt.NDArray[np.uint16]) -> npt.NDArray[np.bool_]:
    """Vectorised: which samples untrusted_flags would flag."""
    flagged = (quality & UNTRUSTED) != 0
    implausible = (values < _MIN[kind_ids]) | (values > _MAX[kind_ids])
    implausible |= _DISCRETE[kind_ids] & (values != np.trunc(values))
    result: npt.NDArray[np.bool_] = flagged | implausible
    return result
