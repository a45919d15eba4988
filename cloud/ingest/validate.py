"""Validation of samples against the vocabulary: implausible values are kept and flagged, never dropped.

A value outside its kind's plausible range (proto.vocabulary), or a coded/boolean kind that is not a whole
number, gets Quality.IMPLAUSIBLE; a wrong flag costs less than a lost reading.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from proto.quality import Quality
from proto.vocabulary import BY_WIRE_ID, ValueType

_LOW: Final = np.full(256, -np.inf)
_HIGH: Final = np.full(256, np.inf)
_WHOLE: Final = np.zeros(256, dtype=bool)
for _wire_id, _kind in BY_WIRE_ID.items():
    _LOW[_wire_id] = _kind.plausible_min
    _HIGH[_wire_id] = _kind.plausible_max
    _WHOLE[_wire_id] = _kind.value_type in (ValueType.CODE, ValueType.BOOLEAN)


def implausible(kind_id: npt.NDArray[np.integer], value: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Which samples are implausible for their kind."""
    kinds = kind_id.astype(np.intp, copy=False)
    outside = (value < _LOW[kinds]) | (value > _HIGH[kinds])
    fractional = _WHOLE[kinds] & (value != np.floor(value))
    result: npt.NDArray[np.bool_] = outside | fractional
    return result


def flag_implausible(
    kind_id: npt.NDArray[np.integer], value: npt.NDArray[np.float64], quality: npt.NDArray[np.integer]
) -> npt.NDArray[np.int32]:
    """The quality column (as int32, the database type) with IMPLAUSIBLE set where it applies."""
    flagged = quality.astype(np.int32)
    flagged[implausible(kind_id, value)] |= int(Quality.IMPLAUSIBLE)
    return flagged
