"""`telemed-sim`: run a simulated ward of wearables, or the DICOM modality simulator.

    telemed-sim ward --patients 20 --scenario mix --speed 1 [--seed N --duration S]
    telemed-sim modality ...

`ward` runs the ward with its own in-process collector: it connects to every simulated device through the
BLE transport, decodes every notification with devices.gatt.decode, and prints a status line every
wall-clock second and a per-patient table (latest vitals, NEWS2, device status) every N simulated seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import TextIO

from devices.ble.models import LinkState, NotificationHandler
from devices.ble.uuids import BATTERY_LEVEL as BATTERY_LEVEL_UUID
from devices.gatt import BATTERY_LEVEL, GattDecodeError, Reading, decode, is_device_status
from devices.sim.devices import DEVICE_TYPES, SimDevice
from devices.sim.errors import SimulationError
from devices.sim.scenarios import SCENARIOS
from devices.sim.sensors import PREFERRED_SOURCES
from devices.sim.ward import CHINA, Speed, Ward, WardStats
from proto.news2 import News2Score, score
from proto.quality import ARTEFACT, Quality

_log = logging.getLogger(__name__)

# A 1 Hz device silent for longer than this is shown as quiet (radio dropout, or powered off).
QUIET_AFTER_S = 10.0
_STREAMING = frozenset({"heart_rate_monitor", "pulse_oximeter", "chest_patch"})
_TYPE_LETTER = {"heart_rate_monitor": "H", "pulse_oximeter": "O", "blood_pressure_monitor": "B",
                "thermometer": "T", "glucose_meter": "G", "chest_patch": "R", "weight_scale": "W"}


@dataclass(slots=True)
class Latest:
    """The newest decoded value of one kind from one device."""

    value: float
    quality: Quality
    at: float


@dataclass(slots=True)
class DeviceView:
    """What the collector knows of one device: traffic, battery, the status of its latest measurement."""

    device: SimDevice
    received: int = 0
    last_at: float | None = None
    battery: int | None = None
    flags: tuple[str, ...] = ()


@dataclass(slots=True)
class PatientView:
    """One patient's latest decoded values, per kind and device type."""

    latest: dict[tuple[str, str], Latest] = field(default_factory=dict)

    def value(self, kind: str) -> Latest | None:
        """The newest trustworthy reading of `kind` from its most preferred device (strap before oximeter)."""
        for device_type in PREFERRED_SOURCES.get(kind, ()):
            latest = self.latest.get((kind, device_type))
            if latest is not None:
                return latest
        return None


class WardMonitor:
    """The CLI's collector: subscribes to every device of a ward and keeps the latest decoded readings.

    Readings flagged as artefacts (proto.quality.ARTEFACT) never replace a trustworthy value; they only
    mark the device's status, as an edge would raise a technical rather than a clinical alert.
    """

    def __init__(self, ward: Ward) -> None:
        self.ward = ward
        self.devices = {d.address: DeviceView(d) for d in ward.devices}
        self.patients = {pid: PatientView() for pid in ward.cohort.patient_ids}
        self.readings = 0
        self.decode_errors = 0

    async def connect(self) -> None:
        """Connect and subscribe to every device (stepping the ward while the links come up)."""
        await self.ward.drive(asyncio.gather(*(self._connect(view) for view in self.devices.values())))

    async def _connect(self, view: DeviceView) -> None:
        # Battery Level is notified only on change, so a collector reads it once connected (BAS 1.0).
        handler, address = self._handler(view), view.device.address
        transport = self.ward.transport
        await transport.connect(address, subscriptions={uuid: handler for uuid in view.device.subscriptions})
        handler(BATTERY_LEVEL_UUID, await transport.read(address, BATTERY_LEVEL_UUID), self.ward.clock.now())

    def _handler(self, view: DeviceView) -> NotificationHandler:
        patient = self.patients[view.device.patient_id]
        device_type = view.device.device_type

        def on_notification(characteristic: str, payload: bytes, at: float) -> None:
            try:
                readings = decode(characteristic, payload)
            except GattDecodeError as exc:
                self.decode_errors += 1
                _log.warning("sim.monitor.decode_failed", extra={"address": view.device.address, "error": str(exc)})
                return
            view.received += 1
            view.last_at = at
            self._take(view, patient, device_type, readings, at)

        return on_notification

    def _take(self, view: DeviceView, patient: PatientView, device_type: str, readings: list[Reading],
              at: float) -> None:
        measured = False
        for r in readings:
            if r.kind == BATTERY_LEVEL:
                view.battery = int(r.value)
                continue
            if is_device_status(r.kind) or r.intermediate:
                continue
            self.readings += 1
            measured = True
            view.flags = r.flags
            if not r.quality & ARTEFACT:
                patient.latest[(r.kind, device_type)] = Latest(r.value, r.quality, at)
        if not measured and not readings:
            # A measurement with no value at all (NaN: sensor off): its status still says why.
            view.flags = ("no_value",)

    def news2(self, patient_id: str) -> News2Score:
        """NEWS2 from the decoded vitals; consciousness and oxygen are nurse-charted (taken from the ward)."""
        view = self.patients[patient_id]
        state = self.ward.cohort.state(patient_id)

        def pick(kind: str) -> float | None:
            latest = view.value(kind)
            return None if latest is None else latest.value

        return score(respiratory_rate=pick("respiratory_rate"), spo2=pick("spo2"), on_oxygen=state.on_oxygen,
                     temperature=pick("body_temperature"), systolic_bp=pick("systolic_bp"),
                     heart_rate=pick("heart_rate"), consciousness=state.consciousness)

    def device_code(self, view: DeviceView) -> str:
        """A device in two characters: type letter, then + fine, ! artefact, . quiet, ~ reconnecting, x gone."""
        letter = _TYPE_LETTER.get(view.device.device_type, "?")
        link = self.ward.transport.link(view.device.address)
        if link is None or link.state in (LinkState.GAVE_UP, LinkState.CLOSED):
            return letter + "x"
        if not link.is_connected:
            return letter + "~"
        now = self.ward.clock.now()
        if view.device.device_type in _STREAMING and (view.last_at is None or now - view.last_at > QUIET_AFTER_S):
            return letter + "."
        flagged = view.flags == ("no_value",) or any(f in _ARTEFACT_FLAGS for f in view.flags)
        return letter + ("!" if flagged else "+")


# Status names that mark an artefact (the ones whose Quality bits are in ARTEFACT).
_ARTEFACT_FLAGS = frozenset({
    "sensor_contact_not_detected", "body_movement", "erratic_signal", "low_perfusion", "sensor_unconnected",
    "sensor_displaced", "questionable_measurement", "poor_signal",
})


# ---- rendering ------------------------------------------------------------------------------------------


def _fmt(latest: Latest | None, places: int = 0) -> str:
    return "-" if latest is None else f"{latest.value:.{places}f}"


def status_line(monitor: WardMonitor) -> str:
    """One line: simulated clock, speed, traffic, links, and who scores medium or high."""
    ward = monitor.ward
    stats = ward.stats()
    linked = sum(1 for link in ward.transport.links.values() if link.is_connected)
    scores = {pid: monitor.news2(pid) for pid in ward.cohort.patient_ids}
    alerts = " ".join(f"{pid}:{s.total}({s.risk})" for pid, s in scores.items() if s.risk in ("medium", "high"))
    elapsed = int(ward.elapsed_s)
    return (f"{ward.cohort.time:%Y-%m-%d %H:%M:%S} +{elapsed // 3600:d}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}"
            f" | {stats.real_time_factor:7.1f}x | {stats.notifications_per_s:8.0f} notif/s"
            f" | links {linked}/{len(monitor.devices)} | decode errors {monitor.decode_errors}"
            f" | NEWS2 {alerts or 'all low'}")


def table(monitor: WardMonitor) -> str:
    """Per patient: latest decoded vitals, NEWS2 and the state of each device."""
    ward = monitor.ward
    header = (f"{'patient':<8} {'scenario':<20} {'HR':>4} {'SpO2':>4} {'RR':>3} {'BP':>7} {'Temp':>5} {'Glu':>5}"
              f" {'NEWS2':<10} {'bat':>4}  devices")
    lines = [header]
    views_of: dict[str, list[DeviceView]] = {}
    for view in monitor.devices.values():
        views_of.setdefault(view.device.patient_id, []).append(view)
    for i, pid in enumerate(ward.cohort.patient_ids):
        p = monitor.patients[pid]
        news2 = monitor.news2(pid)
        sbp, dbp = p.value("systolic_bp"), p.value("diastolic_bp")
        bp = "-" if sbp is None or dbp is None else f"{sbp.value:.0f}/{dbp.value:.0f}"
        views = views_of.get(pid, [])
        levels = [v.battery for v in views if v.battery is not None]
        battery = f"{min(levels)}%" if levels else "-"
        lines.append(
            f"{pid:<8} {ward.cohort.scenarios[i].name:<20} {_fmt(p.value('heart_rate')):>4}"
            f" {_fmt(p.value('spo2')):>4} {_fmt(p.value('respiratory_rate')):>3} {bp:>7}"
            f" {_fmt(p.value('body_temperature'), 1):>5} {_fmt(p.value('glucose'), 1):>5}"
            f" {f'{news2.total} {news2.risk}':<10} {battery:>4}  {' '.join(monitor.device_code(v) for v in views)}"
        )
    lines.append("devices: H strap, O oximeter, B cuff, T thermometer, G glucose, R chest patch, W scale;"
                 " + ok, ! artefact, . quiet, ~ reconnecting, x gone")
    return "\n".join(lines)


# ---- the ward command --------------------------------------------------------------------------------


def _speed(text: str) -> Speed:
    if text == "max":
        return "max"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be positive, not {text!r}")
    return value


def _start(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date-time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=CHINA)


def _devices(text: str) -> tuple[str, ...]:
    if text == "all":
        return DEVICE_TYPES
    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in chosen if t not in DEVICE_TYPES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"device types are 'all' or a comma list of {', '.join(DEVICE_TYPES)}")
    return chosen


def add_ward_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `ward` subcommand."""
    ward = subparsers.add_parser("ward", help="run a simulated ward with an in-process collector",
                                 description="Simulated wearables on a simulated BLE radio, decoded live.")
    ward.add_argument("--patients", type=int, default=20, help="number of patients (default 20)")
    ward.add_argument("--scenario", default="mix", choices=("mix", *SCENARIOS),
                      help="'mix' (one sepsis, a few acute, the rest stable) or one scenario for everyone")
    ward.add_argument("--speed", type=_speed, default=1.0, help="1 = real time, 10 = ten times faster, or 'max'")
    ward.add_argument("--seed", type=int, default=0, help="random seed: the same seed and start, the same ward")
    ward.add_argument("--duration", type=float, default=None, help="simulated seconds to run (default: until Ctrl-C)")
    ward.add_argument("--start", type=_start, default=None,
                      help="simulated start, ISO 8601 (no zone = China time; default now)")
    ward.add_argument("--time-scale", type=float, default=1.0,
                      help="scale every scenario's course (1/12 = a 12 h sepsis in 1 h)")
    ward.add_argument("--devices", type=_devices, default=DEVICE_TYPES,
                      help=f"'all' or a comma list of {', '.join(DEVICE_TYPES)}")
    ward.add_argument("--every", type=float, default=1.0, help="wall-clock seconds between status lines")
    ward.add_argument("--table-every", type=float, default=60.0,
                      help="simulated seconds between patient tables (0 = only at the end)")


async def run_ward(args: argparse.Namespace, out: TextIO) -> int:
    """Build the ward, connect the collector, run, and print progress; returns the exit status."""
    ward = Ward(args.patients, scenario=args.scenario, seed=args.seed, speed=args.speed, start=args.start,
                devices=args.devices, time_scale=args.time_scale)
    monitor = WardMonitor(ward)
    print(f"ward: {ward.cohort.size} patients, {len(ward.devices)} devices, seed {ward.seed}, speed {ward.speed}, "
          f"start {ward.start.isoformat()}", file=out, flush=True)
    try:
        await monitor.connect()
        runner = asyncio.create_task(ward.run(args.duration))
        with _cancel_on_signals(runner):
            await _report_while(runner, monitor, args, out)
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        print(status_line(monitor), file=out)
        print(table(monitor), file=out, flush=True)
    finally:
        await ward.aclose()
    return 0


async def _report_while(runner: asyncio.Task[WardStats], monitor: WardMonitor, args: argparse.Namespace,
                        out: TextIO) -> None:
    next_table = args.table_every if args.table_every > 0 else None
    while not runner.done():
        await asyncio.wait([runner], timeout=max(args.every, 0.05))
        if runner.done():
            return
        print(status_line(monitor), file=out, flush=True)
        if next_table is not None and monitor.ward.elapsed_s >= next_table:
            print(table(monitor), file=out, flush=True)
            while next_table <= monitor.ward.elapsed_s:
                next_table += args.table_every


@contextlib.contextmanager
def _cancel_on_signals(task: asyncio.Task[WardStats]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, task.cancel)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not on this platform / not the main thread
            break
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# ---- entry point -------------------------------------------------------------------------------------------


def _modality_cli() -> ModuleType | ImportError:
    try:
        return importlib.import_module("devices.modality.cli")
    except ImportError as exc:  # an install without the DICOM stack (pydicom, pynetdicom)
        return exc


def build_parser() -> tuple[argparse.ArgumentParser, ModuleType | ImportError]:
    """The telemed-sim argument parser, and the modality CLI module (or why it could not load)."""
    parser = argparse.ArgumentParser(prog="telemed-sim", description="telemed simulators")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_ward_parser(subparsers)
    modality = _modality_cli()
    if isinstance(modality, ModuleType):
        modality.add_parser(subparsers)
    else:
        subparsers.add_parser("modality", help="DICOM modality simulator (unavailable on this install)")
    return parser, modality


def main(argv: Sequence[str] | None = None) -> int:
    """Run `telemed-sim`; returns the process exit status."""
    parser, modality = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.command == "modality":
        if not isinstance(modality, ModuleType):
            print(f"telemed-sim: the modality simulator cannot load: {modality}", file=sys.stderr)
            return 1
        run: Callable[[argparse.Namespace], int | None] = modality.main
        return int(run(args) or 0)
    try:
        return asyncio.run(run_ward(args, sys.stdout))
    except SimulationError as exc:
        print(f"telemed-sim: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
