"""Which characteristics the collector subscribes to, per device type (pure data).

A device's registry record may list its own characteristics; these are the defaults, the measurement
characteristics each SIG profile mandates plus Battery Level (BAS 1.0: read, notify optional). Optional
characteristics are left out, because a subscription a device cannot serve makes its link give up
(CharacteristicNotFoundError is not retried).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from devices.ble import uuids


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A device type: the characteristics to enable, and whether it streams (about 1 Hz) or measures on occasion."""

    device_type: str
    subscriptions: tuple[str, ...]
    streaming: bool


PROFILES: Final[Mapping[str, DeviceProfile]] = MappingProxyType({p.device_type: p for p in (
    # HRS 1.0 section 3.1: Heart Rate Measurement is mandatory (notify).
    DeviceProfile("heart_rate_monitor", (uuids.HEART_RATE_MEASUREMENT, uuids.BATTERY_LEVEL), streaming=True),
    # PLXS 1.0 section 3: at least one of Spot-check (indicate) or Continuous (notify); ward oximeters stream.
    DeviceProfile("pulse_oximeter", (uuids.PLX_CONTINUOUS_MEASUREMENT, uuids.BATTERY_LEVEL), streaming=True),
    # BLS 1.1 section 3.1: Blood Pressure Measurement is mandatory (indicate); the cuff pressure is optional.
    DeviceProfile("blood_pressure_monitor", (uuids.BLOOD_PRESSURE_MEASUREMENT, uuids.BATTERY_LEVEL), streaming=False),
    # HTS 1.0 section 3.1: Temperature Measurement is mandatory (indicate).
    DeviceProfile("thermometer", (uuids.TEMPERATURE_MEASUREMENT, uuids.BATTERY_LEVEL), streaming=False),
    # GLS 1.0 sections 3.1 and 3.4: Glucose Measurement (notify) and the RACP (write, indicate) are mandatory.
    DeviceProfile("glucose_meter", (uuids.GLUCOSE_MEASUREMENT, uuids.RECORD_ACCESS_CONTROL_POINT, uuids.BATTERY_LEVEL),
                  streaming=False),
    # WSS 1.0 section 3.2: Weight Measurement is mandatory (indicate).
    DeviceProfile("weight_scale", (uuids.WEIGHT_MEASUREMENT, uuids.BATTERY_LEVEL), streaming=False),
    # Our vendor chest patch (docs/simulators.md, "The chest-patch profile").
    DeviceProfile("chest_patch", (uuids.CHEST_PATCH_RESPIRATORY_RATE, uuids.BATTERY_LEVEL), streaming=True),
)})

DEVICE_TYPES: Final[tuple[str, ...]] = tuple(PROFILES)


def default_subscriptions(device_type: str) -> tuple[str, ...]:
    """The characteristics to enable on a device of this type (KeyError for an unknown type)."""
    return PROFILES[device_type].subscriptions


def is_streaming(device_type: str) -> bool:
    """Whether the device type sends about once a second (a silent one is worth showing as quiet)."""
    profile = PROFILES.get(device_type)
    return profile is not None and profile.streaming


# The primary service each device type advertises (Assigned Numbers 3.4, plus our vendor patch service).
SERVICE_DEVICE_TYPES: Final[Mapping[str, str]] = MappingProxyType({
    uuids.HEART_RATE_SERVICE: "heart_rate_monitor",
    uuids.PULSE_OXIMETER_SERVICE: "pulse_oximeter",
    uuids.BLOOD_PRESSURE_SERVICE: "blood_pressure_monitor",
    uuids.HEALTH_THERMOMETER_SERVICE: "thermometer",
    uuids.GLUCOSE_SERVICE: "glucose_meter",
    uuids.WEIGHT_SCALE_SERVICE: "weight_scale",
    uuids.CHEST_PATCH_SERVICE: "chest_patch",
})


def device_type_for(services: Iterable[str]) -> str | None:
    """The device type suggested by advertised service UUIDs (for `telemed-edge devices scan`), or None."""
    for service in services:
        device_type = SERVICE_DEVICE_TYPES.get(uuids.normalize_uuid(service))
        if device_type is not None:
            return device_type
    return None
