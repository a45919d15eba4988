"""One patient's simulated state at an instant: the true physiology and what each worn device reports.

The float fields of PhysiologicalState are the truth (what the patient's body does); `readings` are the
devices' view of it, with accuracy errors, quantisation and artefacts. Tests compare the two; device
emitters encode `readings`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from devices.sim.sensors import BATTERY_DEPLETED, DROPOUT, PREFERRED_SOURCES, SENSOR_OFF
from proto.news2 import News2Score, score
from proto.quality import Quality
from proto.vocabulary import consciousness_code


@dataclass(frozen=True, slots=True)
class DeviceReading:
    """What one worn device would report now (whether or not its schedule has it measure now: see `due`).

    `values` maps vocabulary kinds to canonical-unit values and is empty while the device reports
    nothing (sensor off, dropout, flat battery); `quality` carries the status a device shows for the
    artefacts it notices; `rr_intervals_s` are the beats since the last step (heart-rate monitors only).
    """

    device: str
    values: Mapping[str, float]
    quality: Quality
    artefacts: frozenset[str]
    battery: float
    due: bool
    rr_intervals_s: tuple[float, ...] = ()

    @property
    def delivered(self) -> bool:
        """Whether the device sends anything (a sensor-off device still sends its contact-lost status)."""
        return not self.artefacts & {DROPOUT, BATTERY_DEPLETED}

    @property
    def contact(self) -> bool:
        """Whether the sensor touches the patient."""
        return SENSOR_OFF not in self.artefacts


@dataclass(frozen=True, slots=True)
class PhysiologicalState:
    """A patient at `time`: true vitals in canonical UCUM units (proto/vocabulary.py) plus device readings.

    `rr_intervals_s` are the true beat-to-beat intervals that ended since the previous step;
    `artefacts` names every artefact active on any worn device; `battery` is percent per device type.
    """

    patient_id: str
    scenario: str
    time: datetime
    heart_rate: float
    spo2: float
    respiratory_rate: float
    systolic_bp: float
    diastolic_bp: float
    mean_bp: float
    temperature: float
    glucose: float
    consciousness: str
    on_oxygen: bool
    rhythm: str
    rr_intervals_s: tuple[float, ...]
    artefacts: frozenset[str]
    battery: Mapping[str, float]
    readings: Mapping[str, DeviceReading]

    def true_value(self, kind: str) -> float:
        """The true value of a vocabulary kind (consciousness as its ACVPU code, on_oxygen as 0/1)."""
        if kind == "body_temperature":
            return self.temperature
        if kind == "consciousness":
            return consciousness_code(self.consciousness)
        if kind == "on_oxygen":
            return 1.0 if self.on_oxygen else 0.0
        if kind in _TRUE_FIELDS:
            return float(getattr(self, kind))
        raise KeyError(f"no true value for kind {kind!r}")

    def source(self, kind: str) -> DeviceReading | None:
        """The worn device whose reading stands for `kind`: the most preferred one reporting it now (the
        chest strap's heart rate, else the oximeter's...), else the most preferred worn one (whose status
        then says why it is silent), else None."""
        worn = [r for d in PREFERRED_SOURCES.get(kind, ()) if (r := self.readings.get(d)) is not None]
        return next((r for r in worn if kind in r.values), worn[0] if worn else None)

    def measured(self, kind: str) -> float | None:
        """The measured value of `kind` from its preferred worn device, or None when none reports it now."""
        reading = self.source(kind)
        return None if reading is None else reading.values.get(kind)

    def measured_quality(self, kind: str) -> Quality:
        """The quality flags of the reading behind measured(kind) (NONE when no device measures it)."""
        reading = self.source(kind)
        return Quality.NONE if reading is None else reading.quality

    def news2(self, *, measured: bool = False) -> News2Score:
        """NEWS2 from the true state, or from the device readings where a worn device measures the
        parameter (consciousness, oxygen and unmeasured parameters are charted by the nurse: the truth).
        A device reporting nothing leaves its parameter missing.
        """

        def pick(kind: str) -> float | None:
            if measured and self.source(kind) is not None:
                return self.measured(kind)
            return self.true_value(kind)

        return score(
            respiratory_rate=pick("respiratory_rate"), spo2=pick("spo2"), on_oxygen=self.on_oxygen,
            temperature=pick("body_temperature"), systolic_bp=pick("systolic_bp"),
            heart_rate=pick("heart_rate"), consciousness=self.consciousness,
        )


_TRUE_FIELDS = frozenset({
    "heart_rate", "spo2", "respiratory_rate", "systolic_bp", "diastolic_bp", "mean_bp", "glucose",
})
