"""The simulated device types, as data: what each measures, how accurately, how often, what disturbs it,
and how long its battery lasts.

Accuracy figures follow the device standards (ISO 80601-2-61 pulse oximeters, ISO 81060-2 automated
cuffs, ISO 80601-2-56 thermometers, ISO 15197:2013 glucose meters); resolutions are what the devices
display and what their GATT characteristics carry (whole beats and mm[Hg], 0.1 Cel, 0.1 mmol/L).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from devices.sim.schedule import DailyAt, Every, Schedule
from proto.quality import Quality

HEART_RATE_MONITOR = "heart_rate_monitor"
PULSE_OXIMETER = "pulse_oximeter"
BLOOD_PRESSURE_MONITOR = "blood_pressure_monitor"
THERMOMETER = "thermometer"
GLUCOSE_METER = "glucose_meter"
CHEST_PATCH = "chest_patch"

# Artefact names (PhysiologicalState.artefacts, DeviceReading.artefacts).
MOTION = "motion"  # patient movement: spurious values, flagged (patient-wide, every worn device it disturbs)
LOW_PERFUSION = "low_perfusion"  # weak peripheral pulse: SpO2 unreliable, flagged (patient-wide)
SENSOR_OFF = "sensor_off"  # probe or electrodes off the patient: no values, contact-lost status (per device)
DROPOUT = "dropout"  # radio gap: nothing delivered at all (per device)
BATTERY_DEPLETED = "battery_depleted"  # battery empty: nothing delivered until it is replaced (per device)
ARTEFACT_NAMES: tuple[str, ...] = (MOTION, LOW_PERFUSION, SENSOR_OFF, DROPOUT, BATTERY_DEPLETED)

# Artefacts that suppress a reading, and the status bit a device reports for an artefact it notices.
SILENCING: frozenset[str] = frozenset({SENSOR_OFF, DROPOUT, BATTERY_DEPLETED})
ARTEFACT_QUALITY: Mapping[str, Quality] = MappingProxyType({
    MOTION: Quality.MOTION,
    LOW_PERFUSION: Quality.LOW_PERFUSION,
    SENSOR_OFF: Quality.SENSOR_CONTACT_LOST,
})


@dataclass(frozen=True, slots=True)
class Accuracy:
    """A device's error for one kind: a fixed per-device bias ~ N(0, bias_sd) plus per-reading noise.

    With `relative` the sds are fractions of the value (glucose meters are specified in percent).
    """

    kind: str
    bias_sd: float
    noise_sd: float
    resolution: float
    low: float
    high: float
    relative: bool = False


@dataclass(frozen=True, slots=True)
class Distortion:
    """What an artefact does to one kind while active: value += shift + spread * z (z ~ N(0, 1); |z| if one-sided)."""

    artefact: str
    kind: str
    shift: float
    spread: float
    one_sided: bool = False


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One device type.

    `kinds` are vocabulary kinds it reports (mean_bp is derived from the measured SBP/DBP by the cuff's
    algorithm); `rate_from_beats` means its heart rate is counted from the simulated beats (R-R
    intervals) rather than read from the smoothed rate; `battery_hours` is the runtime from full at the
    default schedule.
    """

    name: str
    gatt_service: int | None
    kinds: tuple[str, ...]
    accuracy: tuple[Accuracy, ...]
    schedule: Schedule
    battery_hours: float
    artefacts: frozenset[str]
    distortions: tuple[Distortion, ...] = ()
    rate_from_beats: bool = False
    reports_rr_intervals: bool = False
    flags_irregular_pulse: bool = False


SENSORS: Mapping[str, SensorSpec] = MappingProxyType({s.name: s for s in (
    SensorSpec(
        # Chest strap, Heart Rate Service 0x180D; HR counted from R-waves, R-R intervals reported.
        name=HEART_RATE_MONITOR, gatt_service=0x180D, kinds=("heart_rate",),
        accuracy=(Accuracy("heart_rate", 0.0, 0.5, 1.0, 0.0, 255.0),),
        schedule=Every(1.0), battery_hours=400.0,
        artefacts=frozenset({MOTION, SENSOR_OFF, DROPOUT, BATTERY_DEPLETED}),
        # Muscle (EMG) noise during movement double-counts beats: spuriously high rates.
        distortions=(Distortion(MOTION, "heart_rate", 5.0, 30.0, one_sided=True),),
        rate_from_beats=True, reports_rr_intervals=True,
    ),
    SensorSpec(
        # Finger clip, Pulse Oximeter Service 0x1822; ISO 80601-2-61 allows A_rms <= 4 %, good ones ~2 %;
        # the per-second value is already averaged over several beats, so its own noise is small.
        name=PULSE_OXIMETER, gatt_service=0x1822, kinds=("spo2", "heart_rate"),
        accuracy=(Accuracy("spo2", 0.5, 0.5, 1.0, 0.0, 100.0), Accuracy("heart_rate", 0.0, 1.5, 1.0, 0.0, 255.0)),
        schedule=Every(1.0), battery_hours=36.0,
        artefacts=frozenset({MOTION, LOW_PERFUSION, SENSOR_OFF, DROPOUT, BATTERY_DEPLETED}),
        distortions=(
            # Motion reads falsely low saturation and wild pulse rates; low perfusion biases SpO2 low.
            Distortion(MOTION, "spo2", -1.0, -6.0, one_sided=True),
            Distortion(MOTION, "heart_rate", 10.0, 30.0),
            Distortion(LOW_PERFUSION, "spo2", -3.0, 3.0),
            Distortion(LOW_PERFUSION, "heart_rate", 0.0, 10.0),
        ),
    ),
    SensorSpec(
        # Upper-arm oscillometric cuff, Blood Pressure Service 0x1810; ISO 81060-2: mean error <= 5, SD <= 8 mm[Hg].
        name=BLOOD_PRESSURE_MONITOR, gatt_service=0x1810,
        kinds=("systolic_bp", "diastolic_bp", "mean_bp", "heart_rate"),
        accuracy=(
            Accuracy("systolic_bp", 1.5, 3.0, 1.0, 0.0, 300.0),
            Accuracy("diastolic_bp", 1.5, 2.5, 1.0, 0.0, 300.0),
            Accuracy("heart_rate", 0.0, 2.0, 1.0, 0.0, 255.0),
        ),
        schedule=Every(30 * 60.0), battery_hours=24 * 30.0,
        artefacts=frozenset({MOTION, DROPOUT, BATTERY_DEPLETED}),
        distortions=(
            Distortion(MOTION, "systolic_bp", 0.0, 15.0),
            Distortion(MOTION, "diastolic_bp", 0.0, 10.0),
            Distortion(MOTION, "heart_rate", 5.0, 15.0),
        ),
        flags_irregular_pulse=True,
    ),
    SensorSpec(
        # Continuous axillary patch, Health Thermometer Service 0x1809; ISO 80601-2-56 lab accuracy +/-0.3 Cel.
        name=THERMOMETER, gatt_service=0x1809, kinds=("body_temperature",),
        accuracy=(Accuracy("body_temperature", 0.1, 0.05, 0.1, 25.0, 45.0),),
        schedule=Every(4 * 60.0), battery_hours=24 * 7.0,
        artefacts=frozenset({SENSOR_OFF, DROPOUT, BATTERY_DEPLETED}),
    ),
    SensorSpec(
        # Finger-stick meter, Glucose Service 0x1808; ISO 15197:2013: 95 % within +/-15 % (or 0.83 mmol/L).
        name=GLUCOSE_METER, gatt_service=0x1808, kinds=("glucose",),
        accuracy=(Accuracy("glucose", 0.03, 0.05, 0.1, 0.6, 33.3, relative=True),),
        # Fasting, 2 h after each meal (07:00, 12:00, 18:00) and at bedtime.
        schedule=DailyAt((6.5, 9.0, 14.0, 20.0)), battery_hours=24 * 365.0,
        artefacts=frozenset({DROPOUT, BATTERY_DEPLETED}),
    ),
    SensorSpec(
        # Chest patch counting breaths by impedance pneumography; no SIG GATT service exists for it.
        name=CHEST_PATCH, gatt_service=None, kinds=("respiratory_rate",),
        accuracy=(Accuracy("respiratory_rate", 0.3, 0.8, 1.0, 0.0, 100.0),),
        schedule=Every(1.0), battery_hours=24 * 5.0,
        artefacts=frozenset({MOTION, SENSOR_OFF, DROPOUT, BATTERY_DEPLETED}),
        distortions=(Distortion(MOTION, "respiratory_rate", 4.0, 6.0),),
    ),
)})

# The five devices of a ward bed by default; respiratory rate is counted by the nurse (manual entry).
DEFAULT_DEVICES: tuple[str, ...] = (
    HEART_RATE_MONITOR, PULSE_OXIMETER, BLOOD_PRESSURE_MONITOR, THERMOMETER, GLUCOSE_METER,
)

# Which worn device's reading stands for a kind, in order of preference (news2 from measurements).
PREFERRED_SOURCES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "heart_rate": (HEART_RATE_MONITOR, PULSE_OXIMETER, BLOOD_PRESSURE_MONITOR),
    "spo2": (PULSE_OXIMETER,),
    "respiratory_rate": (CHEST_PATCH,),
    "systolic_bp": (BLOOD_PRESSURE_MONITOR,),
    "diastolic_bp": (BLOOD_PRESSURE_MONITOR,),
    "mean_bp": (BLOOD_PRESSURE_MONITOR,),
    "body_temperature": (THERMOMETER,),
    "glucose": (GLUCOSE_METER,),
})
