"""GATT UUIDs the transport filters and subscribes on, and 16-bit to 128-bit expansion.

Values are Bluetooth SIG Assigned Numbers (section 3.4 "GATT Services" and 3.8 "Characteristics"),
plus one vendor service of our own for the respiratory-rate chest patch.
"""

from __future__ import annotations

import re
from typing import Final

# Bluetooth Core Specification v5.4, Vol 3, Part B, section 2.5.1: a 16-bit SIG UUID is an alias for
# 0000xxxx-0000-1000-8000-00805F9B34FB (the Bluetooth Base UUID).
_BASE_UUID_SUFFIX: Final = "-0000-1000-8000-00805f9b34fb"
_UUID128 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX = re.compile(r"^[0-9a-f]+$")


def uuid16(value: int) -> str:
    """Expand a 16-bit SIG-assigned UUID to its lower-case 128-bit string form."""
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"not a 16-bit UUID: {value!r}")
    return f"0000{value:04x}{_BASE_UUID_SUFFIX}"


def normalize_uuid(value: str | int) -> str:
    """Return the lower-case 128-bit form of a 16-bit, 32-bit or 128-bit UUID (int, "180d", "0x180D", full)."""
    if isinstance(value, int):
        return uuid16(value)
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if _HEX.match(text) and len(text) == 4:
        return f"0000{text}{_BASE_UUID_SUFFIX}"
    if _HEX.match(text) and len(text) == 8:
        # 32-bit SIG UUIDs use the same base (Core v5.4, Vol 3, Part B, 2.5.1).
        return f"{text}{_BASE_UUID_SUFFIX}"
    if _UUID128.match(text):
        return text
    raise ValueError(f"not a Bluetooth UUID: {value!r}")


def short_uuid(value: str) -> int | None:
    """The 16-bit alias of a 128-bit UUID built on the Bluetooth Base UUID, else None (vendor UUID)."""
    text = normalize_uuid(value)
    if text.startswith("0000") and text.endswith(_BASE_UUID_SUFFIX):
        return int(text[4:8], 16)
    return None


# --- SIG services (Assigned Numbers 3.4) -------------------------------------------------------------
HEART_RATE_SERVICE: Final = uuid16(0x180D)
BLOOD_PRESSURE_SERVICE: Final = uuid16(0x1810)
PULSE_OXIMETER_SERVICE: Final = uuid16(0x1822)
HEALTH_THERMOMETER_SERVICE: Final = uuid16(0x1809)
GLUCOSE_SERVICE: Final = uuid16(0x1808)
WEIGHT_SCALE_SERVICE: Final = uuid16(0x181D)
BATTERY_SERVICE: Final = uuid16(0x180F)
DEVICE_INFORMATION_SERVICE: Final = uuid16(0x180A)

# --- SIG characteristics (Assigned Numbers 3.8) ------------------------------------------------------
BATTERY_LEVEL: Final = uuid16(0x2A19)  # read (+ optional notify), one uint8 percent
HEART_RATE_MEASUREMENT: Final = uuid16(0x2A37)  # notify (HRS 1.0, 3.1)
BODY_SENSOR_LOCATION: Final = uuid16(0x2A38)  # read
BLOOD_PRESSURE_MEASUREMENT: Final = uuid16(0x2A35)  # indicate (BLS 1.1, 3.1)
INTERMEDIATE_CUFF_PRESSURE: Final = uuid16(0x2A36)  # notify
PLX_SPOT_CHECK_MEASUREMENT: Final = uuid16(0x2A5E)  # indicate (PLXS 1.0, 3.1)
PLX_CONTINUOUS_MEASUREMENT: Final = uuid16(0x2A5F)  # notify (PLXS 1.0, 3.2)
TEMPERATURE_MEASUREMENT: Final = uuid16(0x2A1C)  # indicate (HTS 1.0, 3.1)
INTERMEDIATE_TEMPERATURE: Final = uuid16(0x2A1E)  # notify
GLUCOSE_MEASUREMENT: Final = uuid16(0x2A18)  # notify (GLS 1.0, 3.1)
GLUCOSE_MEASUREMENT_CONTEXT: Final = uuid16(0x2A34)  # notify
RECORD_ACCESS_CONTROL_POINT: Final = uuid16(0x2A52)  # write + indicate (GLS 1.0, 3.4)
WEIGHT_MEASUREMENT: Final = uuid16(0x2A9D)  # indicate (WSS 1.0, 3.2)

# --- Vendor: telemed respiratory-rate chest patch -----------------------------------------------------
# A fixed random (version 4) 128-bit base, generated once for this product and never reused; the service
# and its characteristics differ only in the first group, the same scheme SIG-adopted vendors use.
CHEST_PATCH_SERVICE: Final = "2ba70001-ec60-4ce7-9da5-e5eb1420c710"
CHEST_PATCH_RESPIRATORY_RATE: Final = "2ba70002-ec60-4ce7-9da5-e5eb1420c710"  # notify

# Services a health wearable advertises; the default scan filter.
HEALTH_SERVICE_UUIDS: Final = frozenset(
    {
        HEART_RATE_SERVICE,
        BLOOD_PRESSURE_SERVICE,
        PULSE_OXIMETER_SERVICE,
        HEALTH_THERMOMETER_SERVICE,
        GLUCOSE_SERVICE,
        WEIGHT_SCALE_SERVICE,
        CHEST_PATCH_SERVICE,
    }
)
