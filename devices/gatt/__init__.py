"""Pure, table-driven codecs for the Bluetooth SIG health profiles (no I/O).

    decode(0x2A37, bytes.fromhex("0655"))  -> [Reading(kind="heart_rate", value=85.0, unit="/min", ...)]
    parse(0x2A35, payload)                 -> BloodPressureMeasurement(...)
    encode(HeartRateMeasurement(bpm=72))   -> b"\\x00H"

Characteristics: Heart Rate 0x2A37; Blood Pressure 0x2A35 and Intermediate Cuff Pressure 0x2A36; PLX
Spot-check 0x2A5E and Continuous 0x2A5F; Temperature 0x2A1C and Intermediate Temperature 0x2A1E;
Glucose 0x2A18 with the Record Access Control Point 0x2A52; Weight 0x2A9D; Battery Level 0x2A19; and
the vendor chest patch's Respiratory Rate (profiles/chest_patch.py, by its 128-bit UUID).
"""

from devices.gatt.errors import GattDecodeError, GattEncodeError, UnknownCharacteristicError
from devices.gatt.profiles.battery import BatteryLevel
from devices.gatt.profiles.blood_pressure import BloodPressureMeasurement, IntermediateCuffPressure
from devices.gatt.profiles.chest_patch import RESPIRATORY_RATE_UUID, RespiratoryRateMeasurement
from devices.gatt.profiles.glucose import GlucoseMeasurement
from devices.gatt.profiles.heart_rate import HeartRateMeasurement
from devices.gatt.profiles.pulse_oximeter import PlxContinuous, PlxSpotCheck
from devices.gatt.profiles.racp import (
    RacpMessage,
    RacpNumberOfRecords,
    RacpOpCode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
)
from devices.gatt.profiles.thermometer import IntermediateTemperature, TemperatureMeasurement
from devices.gatt.profiles.weight_scale import WeightMeasurement
from devices.gatt.reading import (
    BATTERY_LEVEL,
    CUFF_PRESSURE,
    DEVICE_STATUS_UNITS,
    FLAG_QUALITY,
    Reading,
    is_device_status,
    quality_of,
)
from devices.gatt.registry import (
    CODECS,
    VENDOR_CODECS,
    Measurement,
    characteristic_of,
    codec_for,
    decode,
    encode,
    parse,
)
from devices.gatt.uuids import INDICATED, NOTIFIED, is_indicated, short_uuid, uuid128

__all__ = [
    "BATTERY_LEVEL",
    "CODECS",
    "CUFF_PRESSURE",
    "DEVICE_STATUS_UNITS",
    "FLAG_QUALITY",
    "INDICATED",
    "NOTIFIED",
    "RESPIRATORY_RATE_UUID",
    "VENDOR_CODECS",
    "BatteryLevel",
    "BloodPressureMeasurement",
    "GattDecodeError",
    "GattEncodeError",
    "GlucoseMeasurement",
    "HeartRateMeasurement",
    "IntermediateCuffPressure",
    "IntermediateTemperature",
    "Measurement",
    "PlxContinuous",
    "PlxSpotCheck",
    "RacpMessage",
    "RacpNumberOfRecords",
    "RacpOpCode",
    "RacpOperator",
    "RacpRequest",
    "RacpResponse",
    "RacpResponseCode",
    "Reading",
    "RespiratoryRateMeasurement",
    "TemperatureMeasurement",
    "UnknownCharacteristicError",
    "WeightMeasurement",
    "characteristic_of",
    "codec_for",
    "decode",
    "encode",
    "is_device_status",
    "is_indicated",
    "parse",
    "quality_of",
    "short_uuid",
    "uuid128",
]
