"""Battery Level 0x2A19 (Battery Service 1.0): one UINT8 percentage, 0-100; 101-255 are reserved.

It is device status, not a vital sign: its reading has the device-status kind `battery_level`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from devices.gatt.errors import FieldValueError
from devices.gatt.fields import UINT8, Codec
from devices.gatt.layout import Field, Layout
from devices.gatt.profiles.base import CharacteristicCodec, characteristic_codec
from devices.gatt.reading import BATTERY_LEVEL, Reading
from devices.gatt.uuids import BATTERY_LEVEL as BATTERY_LEVEL_UUID


def _percent(raw: int) -> int:
    if raw > 100:
        raise FieldValueError(f"battery level {raw} is reserved (0..100 %)")
    return raw


PERCENT_FIELD: Final = Codec("UINT8", UINT8.fmt, 1, _percent, _percent)
LAYOUT: Final = Layout(BATTERY_LEVEL_UUID, (Field("percent", PERCENT_FIELD),), flags=False)


@dataclass(frozen=True, slots=True)
class BatteryLevel:
    """The device's remaining battery charge in percent."""

    percent: int


def parse(payload: bytes) -> BatteryLevel:
    """The level in a 0x2A19 payload; raises GattDecodeError if malformed or reserved."""
    _, v = LAYOUT.unpack(payload)
    return BatteryLevel(v["percent"])


def encode(m: BatteryLevel) -> bytes:
    """The 0x2A19 payload for `m`."""
    return LAYOUT.pack(0, {"percent": m.percent})


def readings(m: BatteryLevel) -> list[Reading]:
    """One battery_level device-status reading in %."""
    return [Reading(BATTERY_LEVEL, float(m.percent), "%")]


CODEC: Final[CharacteristicCodec[BatteryLevel]] = characteristic_codec(
    BATTERY_LEVEL_UUID, "Battery Level", (BatteryLevel,), parse=parse, encode=encode, readings=readings,
)
