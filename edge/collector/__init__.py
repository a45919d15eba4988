"""The wearable collector: device registry, BLE links, GATT readings -> samples and device status events."""

from edge.collector.collector import Collector, CollectorConfig, DeviceView
from edge.collector.commands import CommandArgsError, register_device_commands
from edge.collector.profiles import DEVICE_TYPES, PROFILES, DeviceProfile, default_subscriptions
from edge.collector.registry import (
    DeviceRecord,
    DeviceRegistry,
    InvalidDeviceError,
    RegistryError,
    UnknownDeviceError,
)
from edge.collector.samples import Converted, TimePolicy, convert, sample_time
from edge.collector.simulation import SimulatedWard, WardOptions

__all__ = [
    "DEVICE_TYPES",
    "PROFILES",
    "Collector",
    "CollectorConfig",
    "CommandArgsError",
    "Converted",
    "DeviceProfile",
    "DeviceRecord",
    "DeviceRegistry",
    "DeviceView",
    "InvalidDeviceError",
    "RegistryError",
    "SimulatedWard",
    "TimePolicy",
    "UnknownDeviceError",
    "WardOptions",
    "convert",
    "default_subscriptions",
    "register_device_commands",
    "sample_time",
]
