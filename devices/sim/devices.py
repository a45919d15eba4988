"""Simulated wearables on the simulated BLE radio: one GATT peripheral per worn device, sending byte-exact
notifications and indications of what the physiological model's devices measure.

Each device type is a `Fleet` (every device of that type in a ward), fed once per step from the Cohort's
`DeviceBatch` and encoded with devices.gatt, on the characteristic the device's SIG profile mandates:

    heart_rate_monitor      0x2A37 notified every second, with R-R intervals and sensor contact
    pulse_oximeter          0x2A5F notified every second (status bits for artefacts), 0x2A5E spot-checks
    blood_pressure_monitor  0x2A36 cuff pressure while inflating/deflating, then 0x2A35 indicated
    thermometer             0x2A1C indicated on schedule (time stamp, armpit site)
    glucose_meter           records stored on the meter, pulled over the RACP 0x2A52 onto 0x2A18
    chest_patch             respiratory rate on the vendor characteristic (devices.gatt.profiles.chest_patch)
    weight_scale            0x2A9D indicated at the morning weighing (a ward-level device, not in the Cohort)

Every device also has the Battery Service (0x2A19, readable, notified on change). A radio dropout sends
nothing; a flat battery powers the device off (it stops advertising and its links drop) until replaced.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import ClassVar, NamedTuple

import numpy as np
import numpy.typing as npt

from devices.ble.models import CharProperty
from devices.ble.sim_radio import SimulatedPeripheral, SimulatedRadio
from devices.ble.uuids import (
    BATTERY_LEVEL,
    BATTERY_SERVICE,
    BLOOD_PRESSURE_MEASUREMENT,
    BLOOD_PRESSURE_SERVICE,
    CHEST_PATCH_RESPIRATORY_RATE,
    CHEST_PATCH_SERVICE,
    GLUCOSE_MEASUREMENT,
    GLUCOSE_SERVICE,
    HEALTH_THERMOMETER_SERVICE,
    HEART_RATE_MEASUREMENT,
    HEART_RATE_SERVICE,
    INTERMEDIATE_CUFF_PRESSURE,
    PLX_CONTINUOUS_MEASUREMENT,
    PLX_SPOT_CHECK_MEASUREMENT,
    PULSE_OXIMETER_SERVICE,
    RECORD_ACCESS_CONTROL_POINT,
    TEMPERATURE_MEASUREMENT,
    WEIGHT_MEASUREMENT,
    WEIGHT_SCALE_SERVICE,
    normalize_uuid,
)
from devices.gatt import (
    BatteryLevel,
    BloodPressureMeasurement,
    GattDecodeError,
    GlucoseMeasurement,
    HeartRateMeasurement,
    IntermediateCuffPressure,
    PlxContinuous,
    PlxSpotCheck,
    RacpNumberOfRecords,
    RacpOpCode,
    RacpOperator,
    RacpRequest,
    RacpResponse,
    RacpResponseCode,
    RespiratoryRateMeasurement,
    TemperatureMeasurement,
    WeightMeasurement,
    encode,
    parse,
)
from devices.gatt.uuids import RECORD_ACCESS_CONTROL_POINT as RACP_16
from devices.sim.errors import SimulationError
from devices.sim.physiology import Cohort
from devices.sim.schedule import DailyAt, Every, count_periodic, device_phase
from devices.sim.sensors import (
    BLOOD_PRESSURE_MONITOR,
    CHEST_PATCH,
    DEFAULT_DEVICES,
    GLUCOSE_METER,
    HEART_RATE_MONITOR,
    LOW_PERFUSION,
    MOTION,
    PULSE_OXIMETER,
    SENSOR_OFF,
    SENSORS,
    THERMOMETER,
)
from proto.quality import Quality

_log = logging.getLogger(__name__)

WEIGHT_SCALE = "weight_scale"
# A ward bed: the five default devices plus the chest patch, so NEWS2's respiratory rate is measured too.
WARD_DEVICES: tuple[str, ...] = (*DEFAULT_DEVICES, CHEST_PATCH)
DEVICE_TYPES: tuple[str, ...] = (*SENSORS, WEIGHT_SCALE)

# BLS 1.1.1 User ID of the bed's cuff: one user per device (0xFF would be "unknown user").
CUFF_USER = 1
# PLX spot-checks: a validated reading every 15 minutes in addition to the continuous stream.
SPOT_CHECK_S = 15 * 60.0
# Default ATT_MTU 23 leaves 20 bytes of notification: flags + UINT8 bpm + 9 R-R intervals (HRS 1.0, RR-Interval).
MAX_RR_PER_NOTIFICATION = 9


class DeviceError(SimulationError):
    """A simulated device driven inconsistently (unknown address, a write to a read-only characteristic)."""


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """A device type's GATT face: advertised model name, primary service, characteristics and properties."""

    device_type: str
    model: str
    service: str
    characteristics: Mapping[str, tuple[CharProperty, ...]]

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The characteristics a collector enables (notify or indicate), battery last."""
        measured = tuple(u for u, props in self.characteristics.items()
                         if {CharProperty.NOTIFY, CharProperty.INDICATE} & set(props))
        return (*measured, BATTERY_LEVEL)


_N, _I, _R, _W = CharProperty.NOTIFY, CharProperty.INDICATE, CharProperty.READ, CharProperty.WRITE
PROFILES: Mapping[str, DeviceProfile] = MappingProxyType({p.device_type: p for p in (
    DeviceProfile(HEART_RATE_MONITOR, "HRM-2", HEART_RATE_SERVICE, {HEART_RATE_MEASUREMENT: (_N,)}),
    DeviceProfile(PULSE_OXIMETER, "PO-3", PULSE_OXIMETER_SERVICE, {
        PLX_CONTINUOUS_MEASUREMENT: (_N,), PLX_SPOT_CHECK_MEASUREMENT: (_I,),
    }),
    DeviceProfile(BLOOD_PRESSURE_MONITOR, "BP-5", BLOOD_PRESSURE_SERVICE, {
        BLOOD_PRESSURE_MEASUREMENT: (_I,), INTERMEDIATE_CUFF_PRESSURE: (_N,),
    }),
    DeviceProfile(THERMOMETER, "TM-1", HEALTH_THERMOMETER_SERVICE, {TEMPERATURE_MEASUREMENT: (_I,)}),
    DeviceProfile(GLUCOSE_METER, "BG-5", GLUCOSE_SERVICE, {
        GLUCOSE_MEASUREMENT: (_N,), RECORD_ACCESS_CONTROL_POINT: (_W, _I),
    }),
    DeviceProfile(CHEST_PATCH, "RP-1", CHEST_PATCH_SERVICE, {CHEST_PATCH_RESPIRATORY_RATE: (_N,)}),
    DeviceProfile(WEIGHT_SCALE, "HS-2", WEIGHT_SCALE_SERVICE, {WEIGHT_MEASUREMENT: (_I,)}),
)})


@dataclass(frozen=True, slots=True)
class SimDevice:
    """One simulated device as the edge registry needs it: where it is on the air and whose it is."""

    address: str
    name: str
    device_type: str
    patient_id: str
    services: tuple[str, ...]
    subscriptions: tuple[str, ...]


class Emission(NamedTuple):
    """One notification or indication a device sent (whether or not anyone was subscribed)."""

    elapsed_s: float
    address: str
    characteristic: str
    payload: bytes


Tap = Callable[[Emission], None]


@dataclass(frozen=True, slots=True)
class Frame:
    """One step of the ward: simulated seconds (t0_s, t1_s] since the start, and the devices' local clock."""

    cohort: Cohort
    t0_s: float
    t1_s: float
    local_time: datetime  # naive device-local time at t1_s, what Date Time fields carry
    day_offset_s: float  # local time of day of the start, in seconds (for daily schedules)


def device_address(patient_id: str, device_type: str) -> str:
    """A random static device address, the same for the same patient and device type on every run.

    Random static addresses have the two most significant bits set and a random part that is neither all
    zeros nor all ones (Core v5.4, Vol 6, Part B, 1.3.2.1).
    """
    raw = bytearray(hashlib.sha256(f"{patient_id}\x00{device_type}".encode()).digest()[:6])
    raw[0] |= 0xC0
    if raw[0] == 0xFF and all(b == 0xFF for b in raw[1:]):
        raw[5] = 0xFE
    return ":".join(f"{b:02X}" for b in raw)


def describe(patient_id: str, device_type: str) -> SimDevice:
    """The SimDevice a patient's device of this type is."""
    profile = _profile(device_type)
    address = device_address(patient_id, device_type)
    return SimDevice(
        address=address,
        name=f"{profile.model} {address[-5:].replace(':', '')}",
        device_type=device_type,
        patient_id=patient_id,
        services=(profile.service, BATTERY_SERVICE),
        subscriptions=profile.subscriptions,
    )


def _profile(device_type: str) -> DeviceProfile:
    try:
        return PROFILES[device_type]
    except KeyError:
        raise DeviceError(f"unknown device type {device_type!r} (one of {', '.join(PROFILES)})") from None


def _peripheral(device: SimDevice) -> SimulatedPeripheral:
    profile = PROFILES[device.device_type]
    characteristics: dict[str | int, tuple[CharProperty, ...]] = {u: p for u, p in profile.characteristics.items()}
    characteristics[BATTERY_LEVEL] = (_R, _N)
    # Bedside signal strengths differ per device and stay put (-50..-79 dBm).
    rssi = -50 - zlib.crc32(device.address.encode()) % 30
    return SimulatedPeripheral(device.address, device.name, device.services, characteristics, rssi)


def battery_levels(battery: npt.NDArray[np.float64] | Sequence[float]) -> list[int]:
    """Battery Level percentages for charges in %: whole percent rounded up, so a device shows 1 % until it is
    really empty (BAS 1.0 Battery Level, 0-100)."""
    levels: list[int] = np.clip(np.ceil(np.asarray(battery, dtype=np.float64)), 0, 100).astype(np.int64).tolist()
    return levels


def _number(value: float) -> float | None:
    return value if value == value else None


class Fleet(abc.ABC):
    """Every simulated device of one type in a ward, each a peripheral on the radio, emitting once per step."""

    device_type: ClassVar[str]

    def __init__(
        self, devices: Sequence[SimDevice], rows: Sequence[int], radio: SimulatedRadio, battery: Sequence[float],
    ) -> None:
        self.devices = tuple(devices)
        self.rows = tuple(rows)  # the cohort row (patient) of each device
        self.peripherals = tuple(radio.add(_peripheral(d)) for d in self.devices)
        self.sent = 0
        self.tap: Tap | None = None
        self._at = 0.0
        self._levels = [-1] * len(self.devices)
        self._powered = [True] * len(self.devices)
        for i, level in enumerate(battery_levels(battery)):
            self._battery(i, level, notify=False)

    @abc.abstractmethod
    def emit(self, frame: Frame) -> None:
        """Send what every device of the fleet sends in this step."""

    def write(self, index: int, characteristic: str | int, payload: bytes) -> None:
        """A GATT write from a collector; only control points accept writes."""
        raise self._not_writable(index, characteristic)

    def _not_writable(self, index: int, characteristic: str | int) -> DeviceError:
        return DeviceError(f"{self.devices[index].name} has no writable characteristic {characteristic}")

    def _send(self, i: int, characteristic: str, payload: bytes) -> int:
        reached = self.peripherals[i].notify(characteristic, payload)
        self.sent += 1
        if self.tap is not None:
            self.tap(Emission(self._at, self.devices[i].address, characteristic, payload))
        return reached

    def _power(self, i: int, level: int) -> bool:
        """Whether the device runs; a flat battery switches it off (no advertising, links drop) until replaced."""
        alive = level > 0
        if alive != self._powered[i]:
            self._powered[i] = alive
            peripheral = self.peripherals[i]
            if alive:
                peripheral.come_back()
            else:
                peripheral.go_out_of_range()
            _log.info("sim.device.power", extra={"address": self.devices[i].address,
                                                 "device_type": self.device_type, "on": alive})
        return alive

    def _battery(self, i: int, level: int, *, notify: bool = True) -> None:
        """A new Battery Level: readable from now on, and notified (callers skip unchanged levels)."""
        self._levels[i] = level
        payload = encode(BatteryLevel(level))
        self.peripherals[i].set_value(BATTERY_LEVEL, payload)
        if notify:
            self._send(i, BATTERY_LEVEL, payload)


class HeartRateStraps(Fleet):
    """Chest straps: heart rate counted from R-waves with the R-R intervals of the step, every second."""

    device_type = HEART_RATE_MONITOR

    def emit(self, frame: Frame) -> None:
        b = frame.cohort.batch(HEART_RATE_MONITOR)
        self._at = frame.t1_s
        rates, levels, delivered = b.values[:, 0].tolist(), battery_levels(b.battery), b.delivered.tolist()
        rr_intervals = frame.cohort.rr_intervals
        for i, row in enumerate(self.rows):
            if not self._power(i, levels[i]) or not delivered[i]:
                continue
            rate = rates[i]
            if rate == rate:
                rr = rr_intervals(row)[-MAX_RR_PER_NOTIFICATION:]
                m = HeartRateMeasurement(round(rate), sensor_contact=True, rr_intervals_s=rr)
            else:
                # Electrodes off: straps keep notifying 0 bpm, "contact not detected" (HRS 1.0 Sensor Contact Status).
                m = HeartRateMeasurement(0, sensor_contact=False)
            self._send(i, HEART_RATE_MEASUREMENT, encode(m))
            if levels[i] != self._levels[i]:
                self._battery(i, levels[i])


# PLXS 1.0.1 status bits for the artefacts an oximeter notices. Motion shows as an erratic signal and a
# questionable measurement (PLXS has no motion bit); a probe off the finger as sensor unconnected.
_PLX_STATUS: dict[tuple[bool, bool, bool], tuple[tuple[str, ...], tuple[str, ...]]] = {
    (motion, perfusion, off): (
        ("questionable_measurement",) if motion else (),
        tuple(name for name, on in (("erratic_signal", motion), ("low_perfusion", perfusion),
                                    ("sensor_unconnected", off)) if on),
    )
    for motion in (False, True) for perfusion in (False, True) for off in (False, True)
}


class PulseOximeters(Fleet):
    """Finger oximeters: a continuous SpO2/pulse-rate stream with status fields, and periodic spot-checks."""

    device_type = PULSE_OXIMETER

    def __init__(
        self, devices: Sequence[SimDevice], rows: Sequence[int], radio: SimulatedRadio, battery: Sequence[float],
    ) -> None:
        super().__init__(devices, rows, radio, battery)
        spot = Every(SPOT_CHECK_S)
        self._spot_phase = np.array([device_phase(d.patient_id, "pulse_oximeter/spot-check", spot)
                                     for d in self.devices])
        self._cache: dict[tuple[float | None, float | None, bool, bool, bool], bytes] = {}

    def emit(self, frame: Frame) -> None:
        b = frame.cohort.batch(PULSE_OXIMETER)
        self._at = frame.t1_s
        values, levels, delivered = b.values.tolist(), battery_levels(b.battery), b.delivered.tolist()
        motion, perfusion, off = (b.artefacts[a].tolist() for a in (MOTION, LOW_PERFUSION, SENSOR_OFF))
        spot_due = (count_periodic(frame.t0_s, frame.t1_s, self._spot_phase, SPOT_CHECK_S) > 0).tolist()
        quality = b.quality.tolist()
        cache = self._cache
        if len(cache) > 4096:
            cache.clear()
        for i in range(len(self.devices)):
            if not self._power(i, levels[i]) or not delivered[i]:
                continue
            spo2, rate = values[i]
            # Readings repeat (whole percent and beats): encode each combination once. NaN keys as None.
            key = (_number(spo2), _number(rate), motion[i], perfusion[i], off[i])
            payload = cache.get(key)
            if payload is None:
                measurement_status, device_status = _PLX_STATUS[key[2:]]
                payload = cache[key] = encode(PlxContinuous(
                    key[0], key[1], measurement_status=measurement_status, device_status=device_status,
                ))
            self._send(i, PLX_CONTINUOUS_MEASUREMENT, payload)
            if spot_due[i] and not quality[i] and spo2 == spo2:
                # A spot-check is only taken from a steady, artefact-free reading.
                self._send(i, PLX_SPOT_CHECK_MEASUREMENT, encode(PlxSpotCheck(spo2, rate, timestamp=frame.local_time)))
            if levels[i] != self._levels[i]:
                self._battery(i, levels[i])


# Oscillometric cycle: inflate ~20 mm[Hg]/s to ~30 above systolic, deflate ~4 mm[Hg]/s to below diastolic.
INFLATE_MMHG_PER_S = 20.0
DEFLATE_MMHG_PER_S = 4.0
OVERSHOOT_MMHG = 30.0
UNDERSHOOT_MMHG = 15.0
# Results kept on the cuff until a collector takes them (BLS stored measurements), oldest dropped first.
CUFF_MEMORY = 60


@dataclass(frozen=True, slots=True)
class CuffCycle:
    """One measurement in progress: started at `started_s`, its result known from the start (the model's)."""

    started_s: float
    result: BloodPressureMeasurement
    peak: float
    floor: float

    @classmethod
    def begin(cls, started_s: float, result: BloodPressureMeasurement) -> CuffCycle:
        """A cycle for a result with finite systolic and diastolic pressures."""
        assert result.systolic is not None and result.diastolic is not None
        return cls(started_s, result, result.systolic + OVERSHOOT_MMHG,
                   max(20.0, result.diastolic - UNDERSHOOT_MMHG))

    @property
    def duration_s(self) -> float:
        """Seconds from the start to the final result."""
        return math.ceil(self.peak / INFLATE_MMHG_PER_S) + math.ceil((self.peak - self.floor) / DEFLATE_MMHG_PER_S)

    def pressure(self, t_s: float) -> float:
        """The cuff pressure `t_s` seconds after the start (whole mm[Hg])."""
        inflated = self.peak / INFLATE_MMHG_PER_S
        if t_s <= inflated:
            return float(round(t_s * INFLATE_MMHG_PER_S))
        return float(round(max(self.floor, self.peak - (t_s - inflated) * DEFLATE_MMHG_PER_S)))


class BloodPressureCuffs(Fleet):
    """Upper-arm cuffs: on schedule a cycle of cuff pressures (0x2A36), then the indicated result (0x2A35)."""

    device_type = BLOOD_PRESSURE_MONITOR

    def __init__(
        self, devices: Sequence[SimDevice], rows: Sequence[int], radio: SimulatedRadio, battery: Sequence[float],
    ) -> None:
        super().__init__(devices, rows, radio, battery)
        self._cycles: list[CuffCycle | None] = [None] * len(self.devices)
        self._stored: list[list[BloodPressureMeasurement]] = [[] for _ in self.devices]

    def emit(self, frame: Frame) -> None:
        b = frame.cohort.batch(BLOOD_PRESSURE_MONITOR)
        self._at = frame.t1_s
        levels, delivered = battery_levels(b.battery), b.delivered.tolist()
        for i in np.flatnonzero(b.due).tolist():
            if self._cycles[i] is None and not math.isnan(b.values[i, 0]):
                self._cycles[i] = CuffCycle.begin(frame.t1_s, self._result(b.values[i].tolist(), int(b.quality[i]),
                                                                           bool(b.artefacts[MOTION][i]), frame))
        for i in range(len(self.devices)):
            alive = self._power(i, levels[i])
            cycle = self._cycles[i]
            if cycle is not None and alive:
                t = frame.t1_s - cycle.started_s
                if t >= cycle.duration_s:
                    self._store(i, cycle.result)
                    self._cycles[i] = None
                elif t > 0 and delivered[i]:
                    self._send(i, INTERMEDIATE_CUFF_PRESSURE, encode(IntermediateCuffPressure(
                        cycle.pressure(t), user_id=CUFF_USER)))
            if not alive or not delivered[i]:
                continue
            stored = self._stored[i]
            if stored and self.peripherals[i].is_subscribed(BLOOD_PRESSURE_MEASUREMENT):
                for result in stored:
                    self._send(i, BLOOD_PRESSURE_MEASUREMENT, encode(result))
                stored.clear()
            if levels[i] != self._levels[i]:
                self._battery(i, levels[i])

    @staticmethod
    def _result(values: list[float], quality: int, motion: bool, frame: Frame) -> BloodPressureMeasurement:
        systolic, diastolic, mean, rate = values
        status = tuple(name for name, on in (("body_movement", motion),
                                             ("irregular_pulse", bool(quality & Quality.IRREGULAR_PULSE))) if on)
        return BloodPressureMeasurement(systolic, diastolic, mean, "mmHg", timestamp=frame.local_time,
                                        pulse_rate=_number(rate), user_id=CUFF_USER, status=status)

    def _store(self, i: int, result: BloodPressureMeasurement) -> None:
        stored = self._stored[i]
        stored.append(result)
        del stored[:-CUFF_MEMORY]


class Thermometers(Fleet):
    """Axillary patches: an indicated temperature on schedule; NaN while the patch is off the skin."""

    device_type = THERMOMETER

    def emit(self, frame: Frame) -> None:
        b = frame.cohort.batch(THERMOMETER)
        self._at = frame.t1_s
        values, levels, delivered = b.values[:, 0].tolist(), battery_levels(b.battery), b.delivered.tolist()
        due = b.due.tolist()
        for i in range(len(self.devices)):
            if not self._power(i, levels[i]) or not delivered[i]:
                continue
            if due[i]:
                self._send(i, TEMPERATURE_MEASUREMENT, encode(TemperatureMeasurement(
                    _number(values[i]), "C", timestamp=frame.local_time, type="armpit")))
            if levels[i] != self._levels[i]:
                self._battery(i, levels[i])


# The meter's measuring range (ISO 15197 meters show "LO"/"HI" beyond it), from the sensor table.
_GLUCOSE_ACCURACY = SENSORS[GLUCOSE_METER].accuracy[0]
GLUCOSE_MEMORY = 500  # records a meter keeps (GLS servers store records until deleted or overwritten)


class GlucoseMeters(Fleet):
    """Finger-stick meters: each test is stored as a record; collectors pull records over the RACP.

    The simulated radio has no GATT write yet, so each step the fleet plays the collector's part of the
    Glucose Profile procedure: when a subscribed meter holds records the collector has not seen, it
    writes "report stored records >= next sequence number" to its RACP (`write`), and the meter answers
    with the records on 0x2A18 and a Response Code indication on 0x2A52 (GLS 1.0.1 and GLP 1.0, Record Access
    Control Point procedures).
    """

    device_type = GLUCOSE_METER

    def __init__(
        self, devices: Sequence[SimDevice], rows: Sequence[int], radio: SimulatedRadio, battery: Sequence[float],
    ) -> None:
        super().__init__(devices, rows, radio, battery)
        self.records: list[list[GlucoseMeasurement]] = [[] for _ in self.devices]
        # Meters come with a history: sequence numbers continue from where the last user left them.
        self._next_seq = [zlib.crc32(d.address.encode()) % 1000 for d in self.devices]
        self._collected = [seq - 1 for seq in self._next_seq]

    def emit(self, frame: Frame) -> None:
        b = frame.cohort.batch(GLUCOSE_METER)
        self._at = frame.t1_s
        values, levels, delivered = b.values[:, 0].tolist(), battery_levels(b.battery), b.delivered.tolist()
        for i in np.flatnonzero(b.due).tolist():
            if values[i] == values[i]:
                self._record(i, values[i], frame.local_time)
        for i in range(len(self.devices)):
            if not self._power(i, levels[i]) or not delivered[i]:
                continue
            records = self.records[i]
            if records and records[-1].sequence_number > self._collected[i] and self._collector_listens(i):
                self.write(i, RECORD_ACCESS_CONTROL_POINT, encode(RacpRequest.report_from(self._collected[i] + 1)))
                self._collected[i] = records[-1].sequence_number
            if levels[i] != self._levels[i]:
                self._battery(i, levels[i])

    def _collector_listens(self, i: int) -> bool:
        peripheral = self.peripherals[i]
        return peripheral.is_subscribed(GLUCOSE_MEASUREMENT) and peripheral.is_subscribed(RECORD_ACCESS_CONTROL_POINT)

    def _record(self, i: int, mmol_l: float, when: datetime) -> None:
        status = (("result_above_range",) if mmol_l >= _GLUCOSE_ACCURACY.high
                  else ("result_below_range",) if mmol_l <= _GLUCOSE_ACCURACY.low else None)
        seq = self._next_seq[i]
        self._next_seq[i] = (seq + 1) & 0xFFFF
        # mmol/L is what Chinese meters display; GLS carries it as mol/L (flags bit 2), exact in SFLOAT.
        self.records[i].append(GlucoseMeasurement(
            sequence_number=seq, base_time=when, concentration=round(mmol_l / 1000.0, 7), unit="mol/L",
            sample_type="capillary_whole_blood", sample_location="finger", sensor_status=status,
        ))
        del self.records[i][:-GLUCOSE_MEMORY]

    def write(self, index: int, characteristic: str | int, payload: bytes) -> None:
        """A write to the meter's Record Access Control Point: run the procedure and answer on it."""
        if normalize_uuid(characteristic) != RECORD_ACCESS_CONTROL_POINT:
            raise self._not_writable(index, characteristic)
        try:
            request = parse(RACP_16, payload)
        except GattDecodeError as exc:
            self._respond(index, payload[0] if payload else 0, _RACP_PARSE_ERRORS.get(exc.offset,
                                                                                     RacpResponseCode.INVALID_OPERAND))
            return
        if not isinstance(request, RacpRequest):
            self._respond(index, payload[0], RacpResponseCode.OP_CODE_NOT_SUPPORTED)
            return
        if request.op_code == RacpOpCode.ABORT_OPERATION:
            # Procedures here complete within the write, so there is never one left to abort.
            self._respond(index, request.op_code, RacpResponseCode.SUCCESS)
            return
        records = self.records[index]
        selected = _select(records, request)
        if request.op_code == RacpOpCode.REPORT_NUMBER_OF_STORED_RECORDS:
            self._send(index, RECORD_ACCESS_CONTROL_POINT, encode(RacpNumberOfRecords(len(selected))))
            return
        if not selected:
            self._respond(index, request.op_code, RacpResponseCode.NO_RECORDS_FOUND)
            return
        if request.op_code == RacpOpCode.REPORT_STORED_RECORDS:
            for record in selected:
                self._send(index, GLUCOSE_MEASUREMENT, encode(record))
        else:
            chosen = {id(r) for r in selected}
            records[:] = [r for r in records if id(r) not in chosen]
        self._respond(index, request.op_code, RacpResponseCode.SUCCESS)

    def _respond(self, index: int, op_code: int, code: RacpResponseCode) -> None:
        self._send(index, RECORD_ACCESS_CONTROL_POINT, encode(RacpResponse(op_code, code)))


# Where parsing a written RACP value failed (byte offset) -> the response code it earns (GLS 1.0.1, RACP).
_RACP_PARSE_ERRORS: Mapping[int, RacpResponseCode] = MappingProxyType({
    0: RacpResponseCode.OP_CODE_NOT_SUPPORTED,
    1: RacpResponseCode.INVALID_OPERATOR,
    2: RacpResponseCode.OPERAND_NOT_SUPPORTED,
})


def _select(records: Sequence[GlucoseMeasurement], request: RacpRequest) -> list[GlucoseMeasurement]:
    """The stored records a request's operator and sequence-number operand select, oldest first."""
    op = request.operator
    if op == RacpOperator.ALL_RECORDS:
        return list(records)
    if op == RacpOperator.FIRST_RECORD:
        return list(records[:1])
    if op == RacpOperator.LAST_RECORD:
        return list(records[-1:])
    low = request.minimum if request.minimum is not None else 0
    high = request.maximum if request.maximum is not None else 0xFFFF
    return [r for r in records if low <= r.sequence_number <= high]


_PATCH_STATUS: dict[tuple[bool, bool], tuple[str, ...]] = {
    (off, motion): tuple(name for name, on in (("sensor_contact_not_detected", off), ("body_movement", motion)) if on)
    for off in (False, True) for motion in (False, True)
}


class ChestPatches(Fleet):
    """Impedance-pneumography patches: the breathing rate every second on the vendor characteristic."""

    device_type = CHEST_PATCH

    def emit(self, frame: Frame) -> None:
        b = frame.cohort.batch(CHEST_PATCH)
        self._at = frame.t1_s
        values, levels, delivered = b.values[:, 0].tolist(), battery_levels(b.battery), b.delivered.tolist()
        motion, off = b.artefacts[MOTION].tolist(), b.artefacts[SENSOR_OFF].tolist()
        for i in range(len(self.devices)):
            if not self._power(i, levels[i]) or not delivered[i]:
                continue
            self._send(i, CHEST_PATCH_RESPIRATORY_RATE, encode(RespiratoryRateMeasurement(
                _number(values[i]), timestamp=frame.local_time, status=_PATCH_STATUS[(off[i], motion[i])])))
            if levels[i] != self._levels[i]:
                self._battery(i, levels[i])


# Weighing: once a day before breakfast, on a scale at 0.1 kg display resolution (fields at 0.005 kg).
WEIGH_AT = DailyAt((6.0,))
SCALE_BATTERY_HOURS = 24 * 365.0


class WeightScales(Fleet):
    """Bedside scales: the morning weight, with height and BMI, indicated on 0x2A9D (WSS 1.0).

    The physiological model has no body weight, so each patient's is drawn here: height ~ N(1.64, 0.08) m
    and BMI ~ N(23, 3) kg/m2 (adult Chinese inpatients), with day-to-day fluid shifts of ~0.4 kg.
    """

    device_type = WEIGHT_SCALE

    def __init__(self, devices: Sequence[SimDevice], radio: SimulatedRadio, *, seed: int) -> None:
        rngs = [np.random.default_rng([seed, zlib.crc32(d.patient_id.encode()), 0x5CA1E]) for d in devices]
        self._rngs = rngs
        self._height = [round(float(np.clip(r.normal(1.64, 0.08), 1.45, 1.90)), 2) for r in rngs]
        self._weight = [float(np.clip(r.normal(23.0, 3.0), 16.0, 35.0)) * h * h
                        for r, h in zip(rngs, self._height, strict=True)]
        self._charge = [float(r.uniform(60.0, 100.0)) for r in rngs]
        super().__init__(devices, range(len(devices)), radio, self._charge)
        self._phases = [device_phase(d.patient_id, WEIGHT_SCALE, WEIGH_AT) for d in self.devices]
        self._events: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def emit(self, frame: Frame) -> None:
        self._at = frame.t1_s
        drain = (frame.t1_s - frame.t0_s) * 100.0 / (SCALE_BATTERY_HOURS * 3600.0)
        due = self._due(frame)
        for i in range(len(self.devices)):
            self._charge[i] = max(0.0, self._charge[i] - drain)
            level = math.ceil(self._charge[i])
            if not self._power(i, level):
                continue
            if due[i]:
                self._send(i, WEIGHT_MEASUREMENT, encode(self._weigh(i, frame.local_time)))
            if level != self._levels[i]:
                self._battery(i, level)

    def _due(self, frame: Frame) -> list[bool]:
        if self._events is None:
            events = [(i, *e) for i, phase in enumerate(self._phases)
                      for e in WEIGH_AT.events(phase, frame.day_offset_s)]
            self._events = (np.array([e[0] for e in events], dtype=np.int64), np.array([e[1] for e in events]),
                            np.array([e[2] for e in events]))
        rows, phases, periods = self._events
        counts = count_periodic(frame.t0_s, frame.t1_s, phases, periods)
        due: list[bool] = (np.bincount(rows, weights=counts, minlength=len(self.devices)) > 0).tolist()
        return due

    def _weigh(self, i: int, when: datetime) -> WeightMeasurement:
        weight = round(self._weight[i] + float(self._rngs[i].normal(0.0, 0.4)), 1)
        height = self._height[i]
        return WeightMeasurement(weight, "kg", timestamp=when, user_id=1, bmi=round(weight / (height * height), 1),
                                 height=height)


FLEETS: Mapping[str, type[Fleet]] = MappingProxyType({f.device_type: f for f in (
    HeartRateStraps, PulseOximeters, BloodPressureCuffs, Thermometers, GlucoseMeters, ChestPatches,
)})


def build_fleets(
    cohort: Cohort, radio: SimulatedRadio, *, weighed: Sequence[str] = (), seed: int = 0,
) -> tuple[Fleet, ...]:
    """The fleets of every device the cohort's patients wear, plus weight scales for the `weighed` patients,
    their peripherals added to `radio`."""
    fleets: list[Fleet] = []
    for device_type, fleet_type in FLEETS.items():
        if not any(device_type in worn for worn in cohort.devices):
            continue
        b = cohort.batch(device_type)
        rows = b.patients.tolist()
        devices = [describe(cohort.patient_ids[row], device_type) for row in rows]
        fleets.append(fleet_type(devices, rows, radio, b.battery.tolist()))
    if weighed:
        fleets.append(WeightScales([describe(pid, WEIGHT_SCALE) for pid in weighed], radio, seed=seed))
    return tuple(fleets)
