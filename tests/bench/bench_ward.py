"""Simulated ward speed: simulated seconds per wall second for 100 patients x 5 devices at max speed.

Each step includes the physiology model, GATT encoding of every notification and indication, and delivery
through the simulated radio and the SimulatedTransport (ConnectionManager links) to subscribed handlers.
Figures: with handlers that only take the bytes, and with handlers that decode every notification with
devices.gatt.decode (the CLI's in-process collector). Baseline in the same run: the physiology model alone.
Target (issue 3): the 500-device simulator runs >= 50x real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from devices.gatt import decode
from devices.sim import DEFAULT_DEVICES, Cohort, PatientSpec, mix
from devices.sim.ward import CHINA, Ward
from tests.bench.harness import BenchContext, median

START = datetime(2026, 3, 2, 8, 0, tzinfo=CHINA)
SEED = 7


async def _ward_rate(patients: int, seconds: int, handler: Callable[[str, bytes, float], None]) -> tuple[float, float]:
    ward = Ward(patients, seed=SEED, speed="max", start=START, devices=DEFAULT_DEVICES)
    transport = ward.transport
    await ward.drive(asyncio.gather(*(
        transport.connect(d.address, subscriptions={u: handler for u in d.subscriptions}) for d in ward.devices
    )))
    await ward.run(5)  # warm-up: first-step caches
    stats = await ward.run(seconds)
    await ward.aclose()
    return stats.real_time_factor, stats.notifications_per_s


def _model_rate(patients: int, seconds: int) -> float:
    cohort = Cohort([PatientSpec(f"P{i + 1:03d}", s, DEFAULT_DEVICES) for i, s in enumerate(mix(patients, seed=SEED))],
                    seed=SEED, start=START)
    cohort.advance(1.0)
    began = time.perf_counter()
    for _ in range(seconds):
        cohort.advance(1.0)
    return seconds / (time.perf_counter() - began)


def run(ctx: BenchContext) -> None:
    patients = ctx.scale(100, 5)
    seconds = ctx.scale(600, 20)
    rounds = ctx.scale(3, 1)
    received = [0]

    def take(uuid: str, payload: bytes, at: float) -> None:
        received[0] += 1

    def decoding(uuid: str, payload: bytes, at: float) -> None:
        received[0] += len(decode(uuid, payload))

    plain = [asyncio.run(_ward_rate(patients, seconds, take)) for _ in range(rounds)]
    decoded = [asyncio.run(_ward_rate(patients, seconds, decoding)) for _ in range(rounds)]
    model = median([_model_rate(patients, seconds) for _ in range(rounds)])
    devices = patients * len(DEFAULT_DEVICES)
    ctx.record(
        f"ward, {patients} patients x {len(DEFAULT_DEVICES)} devices, GATT encode + transport delivery",
        median([rate for rate, _ in plain]), "sim s / wall s", baseline=model,
        baseline_name="physiology model alone", target=50.0, notes=f"{devices} devices, 1 Hz steps",
    )
    ctx.record(
        f"ward + decoding collector, {devices} devices", median([rate for rate, _ in decoded]), "sim s / wall s",
        baseline=model, baseline_name="physiology model alone", target=50.0,
    )
    ctx.record(f"notifications delivered, {devices} devices", median([n for _, n in plain]), "notifications / wall s")
