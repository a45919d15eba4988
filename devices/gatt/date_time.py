"""The 7-byte GATT Date Time (0x2A08) used as a timestamp by BPS, HTS, PLXS, GLS and WSS.

Layout (GATT Specification Supplement, Date Time): year UINT16 (1582..9999, 0 = not known), month
UINT8 (1..12, 0 = not known), day UINT8 (1..31, 0 = not known), hours (0..23), minutes (0..59),
seconds (0..59). It is the device's local wall-clock time, so it decodes to a naive datetime.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Final

from devices.gatt.errors import FieldValueError

DATE_TIME_SIZE: Final = 7
_DATE_TIME = struct.Struct("<HBBBBB")
_UNKNOWN: Final = bytes(DATE_TIME_SIZE)  # all fields "not known"


def decode_date_time(raw: bytes) -> datetime | None:
    """A Date Time field as a naive local datetime; None when year, month or day is 0 (not known).

    Raises FieldValueError for values outside the ranges above (and impossible dates such as 31 April).
    """
    year, month, day, hours, minutes, seconds = _DATE_TIME.unpack(raw)
    if not (year == 0 or 1582 <= year <= 9999):
        raise FieldValueError(f"invalid date-time year {year}")
    if month > 12 or day > 31 or hours > 23 or minutes > 59 or seconds > 59:
        raise FieldValueError(
            f"invalid date-time {year:04d}-{month:02d}-{day:02d} {hours:02d}:{minutes:02d}:{seconds:02d}"
        )
    if year == 0 or month == 0 or day == 0:
        return None
    try:
        return datetime(year, month, day, hours, minutes, seconds)
    except ValueError:
        raise FieldValueError(f"impossible date {year:04d}-{month:02d}-{day:02d}") from None


def encode_date_time(value: datetime | None) -> bytes:
    """A naive datetime as a Date Time field (sub-second part dropped); None encodes as all 'not known'."""
    if value is None:
        return _UNKNOWN
    if value.tzinfo is not None:
        raise FieldValueError("a GATT Date Time is naive device-local time; got an aware datetime")
    if not 1582 <= value.year <= 9999:
        raise FieldValueError(f"year {value.year} is outside the Date Time range 1582..9999")
    return _DATE_TIME.pack(value.year, value.month, value.day, value.hour, value.minute, value.second)
