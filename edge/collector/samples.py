"""Decoded GATT readings -> vocabulary samples (pure: no I/O, no clock).

What the collector stores for one notification:
- every vital-sign Reading becomes a VitalSample of the device's patient, in the kind's canonical unit, with the
  device's quality bits, plus IMPLAUSIBLE when the value lies outside the vocabulary's plausible range (kept and
  flagged, never dropped: proto.vocabulary) and SIMULATED for simulator devices;
- Battery Level is device status (a DeviceStatus event), never a vital;
- intermediate values (the inflating cuff's pressure 0x2A36, intermediate temperature 0x2A1E) are transient
  and not stored.

The sample time is the device's own time stamp when it has one that can be trusted, so stored results (a cuff's
or a glucose meter's records sent on reconnect) keep the time they were measured; otherwise the receive time.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from devices.gatt import BATTERY_LEVEL, Reading, is_device_status
from proto.quality import Quality
from proto.vitals import VitalSample
from proto.vocabulary import VOCABULARY

# PLXS 1.0.1 Spot-check flags bit 4: the device's clock was never set, so its time stamps mean nothing.
_CLOCK_NOT_SET: Final = "device_clock_not_set"


@dataclass(frozen=True, slots=True)
class TimePolicy:
    """How device time stamps are read: naive GATT Date Time fields are local time in `device_tz`."""

    device_tz: dt.tzinfo = dt.UTC
    max_backfill_s: float = 86_400.0  # older device times are distrusted (clock reset to 2000-01-01, ...)
    max_clock_skew_s: float = 120.0  # device times further in the future than this are distrusted


@dataclass(frozen=True, slots=True)
class Converted:
    """What one notification contributes: samples to store, a battery level, and readings left out."""

    samples: tuple[VitalSample, ...]
    battery_pct: float | None = None
    ignored: int = 0


def sample_time(reading: Reading, received: dt.datetime, policy: TimePolicy) -> dt.datetime:
    """The device's time stamp (as UTC) when plausible against the receive time, else the receive time."""
    measured = reading.measured_at
    if measured is None or _CLOCK_NOT_SET in reading.flags:
        return received
    aware = measured.replace(tzinfo=policy.device_tz) if measured.tzinfo is None else measured
    behind = (received - aware).total_seconds()
    if -policy.max_clock_skew_s <= behind <= policy.max_backfill_s:
        return aware.astimezone(dt.UTC)
    return received


def convert(
    readings: Sequence[Reading], *, patient_id: str, device_id: str, received: dt.datetime, simulated: bool = False,
    policy: TimePolicy = TimePolicy(),
) -> Converted:
    """The samples and device status carried by the readings of one notification."""
    samples: list[VitalSample] = []
    battery: float | None = None
    ignored = 0
    extra = Quality.SIMULATED if simulated else Quality.NONE
    for reading in readings:
        if reading.kind == BATTERY_LEVEL:
            if math.isfinite(reading.value):
                battery = min(100.0, max(0.0, reading.value))
            continue
        kind = VOCABULARY.get(reading.kind)
        if kind is None or is_device_status(reading.kind) or reading.intermediate or not math.isfinite(reading.value):
            ignored += 1
            continue
        quality = reading.quality | extra
        if not kind.is_plausible(reading.value):
            quality |= Quality.IMPLAUSIBLE
        samples.append(VitalSample(time=sample_time(reading, received, policy), patient_id=patient_id,
                                   kind=reading.kind, value=reading.value, device_id=device_id, quality=quality))
    return Converted(tuple(samples), battery, ignored)
