"""GATT decode throughput: notifications per second per characteristic, one core, through decode().

Payloads are realistic and varied (encoded from a spread of measurements, so no single byte string repeats
back to back). 0x2A37 carries the target (>= 200,000/s) and is measured twice: the bare 2-byte form most
straps and watches send, with the generic table-driven path as same-run baseline, and the form with
energy expended and RR-intervals that chest straps send.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from devices.gatt import (
    BatteryLevel,
    BloodPressureMeasurement,
    GlucoseMeasurement,
    HeartRateMeasurement,
    IntermediateCuffPressure,
    IntermediateTemperature,
    Measurement,
    PlxContinuous,
    PlxSpotCheck,
    Reading,
    TemperatureMeasurement,
    WeightMeasurement,
    decode,
    encode,
)
from devices.gatt.profiles import heart_rate
from tests.bench.harness import BenchContext, best_of

VARIANTS = 256
T0 = datetime(2025, 3, 1, 8, 0, 0)


def _spread(build: Callable[[int], Measurement]) -> list[bytes]:
    return [encode(build(i)) for i in range(VARIANTS)]


def _cases() -> list[tuple[str, int, list[bytes]]]:
    at: Callable[[int], datetime] = lambda i: T0 + timedelta(minutes=i)  # noqa: E731
    return [
        ("0x2A37 heart rate + EE + 2 RR", 0x2A37, _spread(lambda i: HeartRateMeasurement(
            60 + i % 90, True, 1000 + i, ((700 + i) / 1024, (710 + i) / 1024)))),
        ("0x2A35 blood pressure", 0x2A35, _spread(lambda i: BloodPressureMeasurement(
            100.0 + i % 80, 60.0 + i % 40, 80.0 + i % 50, "mmHg", at(i), 60.0 + i % 50, 1, ()))),
        ("0x2A36 cuff pressure", 0x2A36, _spread(lambda i: IntermediateCuffPressure(float(i % 200), "mmHg"))),
        ("0x2A5E PLX spot-check", 0x2A5E, _spread(lambda i: PlxSpotCheck(
            90.0 + i % 10, 50.0 + i % 100, at(i), ("validated_data",), ()))),
        ("0x2A5F PLX continuous", 0x2A5F, _spread(lambda i: PlxContinuous(
            90.0 + i % 10, 50.0 + i % 100, device_status=() if i % 7 else ("low_perfusion",)))),
        ("0x2A1C temperature", 0x2A1C, _spread(lambda i: TemperatureMeasurement(
            36.0 + (i % 40) / 10, "C", at(i), "ear"))),
        ("0x2A1E intermediate temperature", 0x2A1E, _spread(lambda i: IntermediateTemperature(
            35.0 + (i % 40) / 10, "C"))),
        ("0x2A18 glucose record", 0x2A18, _spread(lambda i: GlucoseMeasurement(
            i, at(i), (70 + i % 200) * 1e-5, "kg/L", "capillary_plasma", "finger", 0, ()))),
        ("0x2A9D weight", 0x2A9D, _spread(lambda i: WeightMeasurement(
            50.0 + i * 0.1, "kg", at(i), 1, 18.0 + (i % 100) / 10, 1.5 + i / 1000))),
        ("0x2A19 battery level", 0x2A19, _spread(lambda i: BatteryLevel(i % 101))),
    ]


def _rate(decode_one: Callable[[bytes], list[Reading]], payloads: list[bytes], n: int) -> float:
    batch = payloads * max(1, n // len(payloads))
    start = time.perf_counter()
    for payload in batch:
        decode_one(payload)
    return len(batch) / (time.perf_counter() - start)


def _best(decode_one: Callable[[bytes], list[Reading]], payloads: list[bytes], n: int) -> float:
    return max(best_of(lambda: _rate(decode_one, payloads, n), rounds=3))


def run(ctx: BenchContext) -> None:
    n_hr = ctx.scale(150_000, 512)
    n_other = ctx.scale(20_000, 256)

    hr_plain = _spread(lambda i: HeartRateMeasurement(40 + i % 160, None if i % 3 == 0 else i % 5 != 0))
    fast = _best(lambda p: decode(0x2A37, p), hr_plain, n_hr)
    generic = _best(lambda p: heart_rate.readings(heart_rate.parse(p)), hr_plain, n_hr)
    ctx.record(
        "decode 0x2A37 heart rate (2-byte)", fast, "notifications/s",
        baseline=generic, baseline_name="generic layout path", target=200_000, higher_is_better=True,
    )

    for name, characteristic, payloads in _cases():
        rate = _best(functools.partial(decode, characteristic), payloads, n_other)
        ctx.record(f"decode {name}", rate, "notifications/s", higher_is_better=True)
