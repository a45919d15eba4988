"""Bluetooth SIG 16-bit UUIDs of the health services and characteristics we use (Assigned Numbers).

Also the 128-bit form (the 16-bit value inside the Bluetooth Base UUID, Core Spec Vol 3 Part B §2.5.1)
that transports such as bleak report, and whether each characteristic is indicated or notified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from devices.gatt.errors import UnknownCharacteristicError

# Services.
HEALTH_THERMOMETER_SERVICE: Final = 0x1809
HEART_RATE_SERVICE: Final = 0x180D
BATTERY_SERVICE: Final = 0x180F
GLUCOSE_SERVICE: Final = 0x1808
BLOOD_PRESSURE_SERVICE: Final = 0x1810
WEIGHT_SCALE_SERVICE: Final = 0x181D
PULSE_OXIMETER_SERVICE: Final = 0x1822

# Characteristics.
GLUCOSE_MEASUREMENT: Final = 0x2A18
BATTERY_LEVEL: Final = 0x2A19
TEMPERATURE_MEASUREMENT: Final = 0x2A1C
INTERMEDIATE_TEMPERATURE: Final = 0x2A1E
BLOOD_PRESSURE_MEASUREMENT: Final = 0x2A35
INTERMEDIATE_CUFF_PRESSURE: Final = 0x2A36
HEART_RATE_MEASUREMENT: Final = 0x2A37
RECORD_ACCESS_CONTROL_POINT: Final = 0x2A52
PLX_SPOT_CHECK_MEASUREMENT: Final = 0x2A5E
PLX_CONTINUOUS_MEASUREMENT: Final = 0x2A5F
WEIGHT_MEASUREMENT: Final = 0x2A9D

# The characteristics each service carries that this package decodes (in the order a collector subscribes).
SERVICE_CHARACTERISTICS: Final[Mapping[int, tuple[int, ...]]] = MappingProxyType({
    HEART_RATE_SERVICE: (HEART_RATE_MEASUREMENT,),
    BLOOD_PRESSURE_SERVICE: (BLOOD_PRESSURE_MEASUREMENT, INTERMEDIATE_CUFF_PRESSURE),
    PULSE_OXIMETER_SERVICE: (PLX_SPOT_CHECK_MEASUREMENT, PLX_CONTINUOUS_MEASUREMENT, RECORD_ACCESS_CONTROL_POINT),
    HEALTH_THERMOMETER_SERVICE: (TEMPERATURE_MEASUREMENT, INTERMEDIATE_TEMPERATURE),
    GLUCOSE_SERVICE: (GLUCOSE_MEASUREMENT, RECORD_ACCESS_CONTROL_POINT),
    WEIGHT_SCALE_SERVICE: (WEIGHT_MEASUREMENT,),
    BATTERY_SERVICE: (BATTERY_LEVEL,),
})

# Acknowledged (indicated) vs unacknowledged (notified) characteristics, as each service spec mandates.
INDICATED: Final = frozenset({
    BLOOD_PRESSURE_MEASUREMENT,  # BLS 1.1.1
    TEMPERATURE_MEASUREMENT,  # HTS 1.0
    PLX_SPOT_CHECK_MEASUREMENT,  # PLXS 1.0.1
    WEIGHT_MEASUREMENT,  # WSS 1.0
    RECORD_ACCESS_CONTROL_POINT,  # GLS 1.0.1 / PLXS 1.0.1 (responses are indicated)
})
NOTIFIED: Final = frozenset({
    HEART_RATE_MEASUREMENT,  # HRS 1.0
    INTERMEDIATE_CUFF_PRESSURE,  # BLS 1.1.1
    INTERMEDIATE_TEMPERATURE,  # HTS 1.0
    PLX_CONTINUOUS_MEASUREMENT,  # PLXS 1.0.1
    GLUCOSE_MEASUREMENT,  # GLS 1.0.1
    BATTERY_LEVEL,  # BAS 1.0 (notify is optional; Battery Level is also readable)
})

BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_BASE_UUID = re.compile(r"0000([0-9a-f]{4})-0000-1000-8000-00805f9b34fb")


def uuid128(short: int) -> str:
    """The 128-bit UUID string (lowercase, as bleak reports it) of a 16-bit SIG UUID."""
    if not 0 <= short <= 0xFFFF:
        raise ValueError(f"not a 16-bit UUID: {short!r}")
    return f"{short:08x}{BASE_UUID_SUFFIX}"


def short_uuid(uuid: int | str) -> int:
    """The 16-bit UUID in 0x2A37, '2A37' (any case, optional '0x') or a Bluetooth Base 128-bit string.

    Raises UnknownCharacteristicError for anything else (a vendor 128-bit UUID, garbage).
    """
    if isinstance(uuid, int):
        if 0 <= uuid <= 0xFFFF:
            return uuid
        raise UnknownCharacteristicError(-1, str(uuid))
    text = uuid.strip()
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if _HEX4.fullmatch(text):
        return int(text, 16)
    match = _BASE_UUID.fullmatch(text.lower())
    if match:
        return int(match.group(1), 16)
    raise UnknownCharacteristicError(-1, uuid)


def is_indicated(characteristic: int | str) -> bool:
    """Whether the characteristic is delivered by indication (acknowledged) rather than notification."""
    return short_uuid(characteristic) in INDICATED
