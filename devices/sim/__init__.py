"""Deterministic physiological patient simulator: named clinical scenarios, correlated vitals, beats,
artefacts, device readings and batteries, advanced in simulated time.

    cohort = Cohort([PatientSpec(f"P{i:03}", s) for i, s in enumerate(mix(100, seed=7))], seed=7, start=start)
    cohort.advance(1.0)
    oximeters = cohort.batch(PULSE_OXIMETER)      # arrays for emitters
    state = cohort.state("P000")                  # one patient: truth + readings
    state.news2(measured=True).risk
"""

from devices.sim.artefacts import ArtefactProfile, EpisodeRate
from devices.sim.errors import (
    CohortError,
    ScenarioError,
    SimulationError,
    SimulationTimeError,
    UnknownDeviceError,
    UnknownPatientError,
    UnknownScenarioError,
)
from devices.sim.measurement import DeviceBatch
from devices.sim.physiology import Cohort, PatientSimulator, PatientSpec
from devices.sim.scenarios import HOUR, MINUTE, SCENARIOS, Course, Scenario, mix, scenario
from devices.sim.schedule import DailyAt, Every
from devices.sim.sensors import (
    ARTEFACT_NAMES,
    BATTERY_DEPLETED,
    BLOOD_PRESSURE_MONITOR,
    CHEST_PATCH,
    DEFAULT_DEVICES,
    DROPOUT,
    GLUCOSE_METER,
    HEART_RATE_MONITOR,
    LOW_PERFUSION,
    MOTION,
    PULSE_OXIMETER,
    SENSOR_OFF,
    SENSORS,
    THERMOMETER,
    SensorSpec,
)
from devices.sim.state import DeviceReading, PhysiologicalState

__all__ = [
    "ARTEFACT_NAMES",
    "BATTERY_DEPLETED",
    "BLOOD_PRESSURE_MONITOR",
    "CHEST_PATCH",
    "DEFAULT_DEVICES",
    "DROPOUT",
    "GLUCOSE_METER",
    "HEART_RATE_MONITOR",
    "HOUR",
    "LOW_PERFUSION",
    "MINUTE",
    "MOTION",
    "PULSE_OXIMETER",
    "SCENARIOS",
    "SENSORS",
    "SENSOR_OFF",
    "THERMOMETER",
    "ArtefactProfile",
    "Cohort",
    "CohortError",
    "Course",
    "DailyAt",
    "DeviceBatch",
    "DeviceReading",
    "EpisodeRate",
    "Every",
    "PatientSimulator",
    "PatientSpec",
    "PhysiologicalState",
    "Scenario",
    "ScenarioError",
    "SensorSpec",
    "SimulationError",
    "SimulationTimeError",
    "UnknownDeviceError",
    "UnknownPatientError",
    "UnknownScenarioError",
    "mix",
    "scenario",
]
