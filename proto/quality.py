"""Quality flags carried with every vital-sign sample (a bit set, 16 bits on the wire).

They come from device status bits (GATT measurement-status fields) or from validation, and decide
whether an abnormal value may page a doctor: an artefact raises a technical alert, not a clinical one.
"""

from __future__ import annotations

import enum


class Quality(enum.IntFlag):
    """Why a sample may not be trusted at face value. Bit positions are part of the wire contract."""

    NONE = 0
    SENSOR_CONTACT_LOST = 1 << 0  # HRS sensor contact not detected; PLX sensor off / displaced
    MOTION = 1 << 1  # body movement during measurement (BPS, PLX)
    LOW_PERFUSION = 1 << 2  # PLX low perfusion
    SENSOR_DISPLACED = 1 << 3  # PLX probe displaced
    IRREGULAR_PULSE = 1 << 4  # BPS irregular pulse detected
    CUFF_FIT = 1 << 5  # BPS cuff too loose or too tight
    IMPROPER_POSITION = 1 << 6  # BPS improper measurement position
    EARLY_ESTIMATE = 1 << 7  # PLX early estimated data / intermediate (not final) measurement
    SIGNAL_QUESTIONABLE = 1 << 8  # PLX questionable pulse, erratic signal, signal analysis ongoing
    DEVICE_FAULT = 1 << 9  # device or sensor malfunction, unsupported/ invalid measurement reported
    IMPLAUSIBLE = 1 << 10  # outside the vocabulary's plausible range (set by validation)
    MANUAL_ENTRY = 1 << 11  # typed by staff, not measured by a device
    SIMULATED = 1 << 12  # produced by a simulator (demo and tests)

    @property
    def names(self) -> tuple[str, ...]:
        """Readable lowercase names of the set flags, in bit order."""
        return tuple(f.name.lower() for f in Quality if f and f in self and f.name)


# Flags that mean the value should not drive a clinical alarm (IEC 60601-1-8 technical alarm condition).
ARTEFACT = (
    Quality.SENSOR_CONTACT_LOST
    | Quality.MOTION
    | Quality.LOW_PERFUSION
    | Quality.SENSOR_DISPLACED
    | Quality.SIGNAL_QUESTIONABLE
    | Quality.DEVICE_FAULT
)
