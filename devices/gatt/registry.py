"""The characteristic -> codec table behind the public decode / parse / encode functions."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from devices.gatt.errors import UnknownCharacteristicError
from devices.gatt.profiles import (
    battery,
    blood_pressure,
    chest_patch,
    glucose,
    heart_rate,
    pulse_oximeter,
    racp,
    thermometer,
    weight_scale,
)
from devices.gatt.profiles.base import CharacteristicCodec
from devices.gatt.reading import Reading
from devices.gatt.uuids import short_uuid

Measurement = (
    heart_rate.HeartRateMeasurement
    | blood_pressure.BloodPressureMeasurement
    | blood_pressure.IntermediateCuffPressure
    | pulse_oximeter.PlxSpotCheck
    | pulse_oximeter.PlxContinuous
    | thermometer.TemperatureMeasurement
    | glucose.GlucoseMeasurement
    | weight_scale.WeightMeasurement
    | battery.BatteryLevel
    | racp.RacpMessage
    | chest_patch.RespiratoryRateMeasurement
)

_ALL: Final[tuple[CharacteristicCodec[Any], ...]] = (
    heart_rate.CODEC,
    blood_pressure.MEASUREMENT_CODEC,
    blood_pressure.CUFF_CODEC,
    pulse_oximeter.SPOT_CHECK_CODEC,
    pulse_oximeter.CONTINUOUS_CODEC,
    thermometer.MEASUREMENT_CODEC,
    thermometer.INTERMEDIATE_CODEC,
    glucose.CODEC,
    racp.CODEC,
    weight_scale.CODEC,
    battery.CODEC,
)
CODECS: Final[Mapping[int, CharacteristicCodec[Any]]] = MappingProxyType({c.characteristic: c for c in _ALL})
_BY_TYPE: Final[Mapping[type[Any], CharacteristicCodec[Any]]] = MappingProxyType(
    {t: c for c in _ALL for t in c.types}
)
# Vendor characteristics (128-bit UUIDs outside the Bluetooth Base UUID), by lower-case UUID string.
VENDOR_CODECS: Final[Mapping[str, CharacteristicCodec[Any]]] = MappingProxyType({
    chest_patch.RESPIRATORY_RATE_UUID: chest_patch.CODEC,
})
_ENCODERS: Final[Mapping[type[Any], CharacteristicCodec[Any]]] = MappingProxyType(
    {**_BY_TYPE, **{t: c for c in VENDOR_CODECS.values() for t in c.types}}
)
# Strings already resolved (bleak hands the same few UUID strings over and over); known UUIDs only, so bounded.
_BY_STRING: dict[str, CharacteristicCodec[Any]] = {}


def codec_for(characteristic: int | str) -> CharacteristicCodec[Any]:
    """The codec of a characteristic given as 0x2A37, '2A37' or its 128-bit UUID string (SIG or vendor)."""
    if type(characteristic) is int:
        codec = CODECS.get(characteristic)
        if codec is None:
            known = characteristic if 0 <= characteristic <= 0xFFFF else -1
            raise UnknownCharacteristicError(known, f"0x{characteristic:04X}")
        return codec
    if isinstance(characteristic, str):
        codec = _BY_STRING.get(characteristic)
        if codec is None:
            codec = VENDOR_CODECS.get(characteristic.strip().lower())
            if codec is None:
                short = short_uuid(characteristic)
                codec = CODECS.get(short)
                if codec is None:
                    raise UnknownCharacteristicError(short, characteristic)
            _BY_STRING[characteristic] = codec
        return codec
    return codec_for(short_uuid(characteristic))


def decode(characteristic: int | str, payload: bytes) -> list[Reading]:
    """The readings in one notification / indication / read value; GattDecodeError if malformed."""
    return codec_for(characteristic).decode(payload)


def parse(characteristic: int | str, payload: bytes) -> Measurement:
    """The structured measurement (the profile's dataclass) in a payload; GattDecodeError if malformed."""
    result: Measurement = codec_for(characteristic).parse(payload)
    return result


def encode(measurement: Measurement) -> bytes:
    """The exact characteristic value for a measurement dataclass; GattEncodeError if not representable."""
    codec = _ENCODERS.get(type(measurement))
    if codec is None:
        raise TypeError(f"no GATT codec encodes {type(measurement).__name__}")
    return codec.encode(measurement)


def characteristic_of(measurement: Measurement) -> int:
    """The characteristic (16-bit UUID) a measurement dataclass is sent on."""
    codec = _BY_TYPE.get(type(measurement))
    if codec is None:
        raise TypeError(f"no GATT characteristic carries {type(measurement).__name__}")
    return codec.characteristic
