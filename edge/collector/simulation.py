"""The simulated ward inside the edge (`telemed-edge --simulate-ward N`): the demo and test path.

The devices/sim Ward runs in-process on a SimulatedTransport; the collector connects to its devices through
that transport exactly as it would through BlueZ. This module only builds the ward, seeds the device registry
with its devices, and plays the nurse: consciousness (ACVPU) and supplemental oxygen are charted by hand in a
real ward, so they are entered here as manual samples (Quality.MANUAL_ENTRY), which NEWS2 needs.

Patient ids carry the edge id (`<edge>-P001`), so two simulated hospitals never share a patient or a device.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from devices.ble.sim_backend import SimulatedTransport
from devices.sim.artefacts import ArtefactProfile
from devices.sim.devices import WARD_DEVICES
from devices.sim.physiology import PatientSpec
from devices.sim.scenarios import mix, scenario
from devices.sim.ward import Speed, Ward, WardClock
from edge.collector.registry import DeviceRecord
from proto.quality import Quality
from proto.vitals import VitalSample
from proto.vocabulary import consciousness_code

log = logging.getLogger(__name__)

SampleSink = Callable[[VitalSample], None]


@dataclass(frozen=True, slots=True)
class WardOptions:
    """What ward to simulate (devices/sim): patients, scenario ("mix" or one name), seed, speed, time scale."""

    patients: int
    scenario: str = "mix"
    seed: int = 0
    speed: Speed = 1.0
    time_scale: float = 1.0
    devices: tuple[str, ...] = WARD_DEVICES
    artefacts: ArtefactProfile | None = None  # None: a typical ward's motion, sensor-off, dropouts, batteries
    chart_check_s: float = 60.0  # the nurse looks at each patient this often (simulated seconds)
    chart_every_s: float = 3600.0  # and charts even without a change this often

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ValueError("a simulated ward needs at least one patient")
        if self.scenario != "mix":
            scenario(self.scenario)  # UnknownScenarioError for a typo, before anything starts


class SimulatedWard:
    """Owns the Ward; `run()` steps it until cancelled while charting manual observations."""

    def __init__(self, options: WardOptions, *, patient_prefix: str, start: dt.datetime | None = None) -> None:
        self.options = options
        chosen = mix(options.patients, seed=options.seed) if options.scenario == "mix" \
            else (scenario(options.scenario),) * options.patients
        specs = [PatientSpec(f"{patient_prefix}-P{i + 1:03d}", s, options.devices) for i, s in enumerate(chosen)]
        self.ward = Ward(specs, seed=options.seed, speed=options.speed, start=start, devices=options.devices,
                         time_scale=options.time_scale, artefacts=options.artefacts)
        self._charted: dict[str, tuple[float, float, float]] = {}  # patient -> (code, oxygen, charted at)

    @property
    def transport(self) -> SimulatedTransport:
        return self.ward.transport

    @property
    def clock(self) -> WardClock:
        return self.ward.clock

    def records(self) -> list[DeviceRecord]:
        """The ward's devices as registry records, each assigned to its wearer."""
        return [DeviceRecord(device_id=d.address, address=d.address, device_type=d.device_type,
                             patient_id=d.patient_id, name=d.name, subscriptions=d.subscriptions, simulated=True,
                             source="simulation") for d in self.ward.devices]

    async def run(self, on_sample: SampleSink) -> None:
        """Step the ward (until cancelled) and chart consciousness and oxygen as a nurse would."""
        charting = asyncio.create_task(self._chart_loop(on_sample), name="sim-charting")
        try:
            await self.ward.run()
        finally:
            charting.cancel()
            await asyncio.gather(charting, return_exceptions=True)

    def chart(self, on_sample: SampleSink) -> int:
        """Chart every patient whose consciousness or oxygen changed, or is due; returns the samples added."""
        now = self.clock.now()
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        added = 0
        cohort = self.ward.cohort
        for patient in cohort.patient_ids:
            state = cohort.state(patient)
            code, oxygen = consciousness_code(state.consciousness), 1.0 if state.on_oxygen else 0.0
            previous = self._charted.get(patient)
            due = previous is None or now - previous[2] >= self.options.chart_every_s
            if not due and previous is not None and previous[:2] == (code, oxygen):
                continue
            quality = Quality.MANUAL_ENTRY | Quality.SIMULATED
            on_sample(VitalSample(when, patient, "consciousness", code, "", quality))
            on_sample(VitalSample(when, patient, "on_oxygen", oxygen, "", quality))
            self._charted[patient] = (code, oxygen, now)
            added += 2
        return added

    async def _chart_loop(self, on_sample: SampleSink) -> None:
        while True:
            try:
                self.chart(on_sample)
            except Exception:
                log.exception("sim.charting_failed")
            await self.clock.sleep(self.options.chart_check_s)

    async def aclose(self) -> None:
        await self.ward.aclose()
