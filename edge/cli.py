"""`telemed-edge`: run an edge node, or manage its device registry.

    telemed-edge --config edge.toml                                   run with the configured BLE backend
    telemed-edge --config edge.toml --simulate-ward 20 [--scenario mix --speed 1 --seed 7 --time-scale 1
                                                        --devices ward|default|all|type,type]
    telemed-edge --config edge.toml devices list
    telemed-edge --config edge.toml devices assign DEVICE PATIENT [--address A --type T]
    telemed-edge --config edge.toml devices unassign DEVICE | remove DEVICE
    telemed-edge --config edge.toml devices register ADDRESS --type T [--id ID --patient P]
    telemed-edge --config edge.toml devices scan [--timeout S]                         (real adapter)

Logs are JSON lines on stderr (event name + fields). Exit status: 0 after a clean stop (SIGINT/SIGTERM),
1 when the service fails, 2 for bad arguments or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TextIO

from devices.sim.devices import DEVICE_TYPES as SIM_DEVICE_TYPES
from devices.sim.devices import WARD_DEVICES
from devices.sim.errors import SimulationError
from devices.sim.scenarios import SCENARIOS
from devices.sim.sensors import DEFAULT_DEVICES
from edge.collector.profiles import DEVICE_TYPES, device_type_for
from edge.collector.registry import DeviceRegistry, RegistryError
from edge.collector.simulation import WardOptions
from edge.settings import EdgeSettings, SettingsError, load_edge_settings

log = logging.getLogger("edge.cli")

# LogRecord attributes that are not `extra` fields.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_QUIET: Final = ("pynetdicom", "httpx", "httpcore", "bleak")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event (the message) and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exc"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def setup_logging(level: str, stream: TextIO = sys.stderr) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def _speed(text: str) -> float | str:
    if text == "max":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed is a positive number or 'max', not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be positive, not {text!r}")
    return value


def _device_types(text: str) -> tuple[str, ...]:
    named = {"ward": WARD_DEVICES, "default": DEFAULT_DEVICES, "all": SIM_DEVICE_TYPES}
    if text in named:
        return named[text]
    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    if not chosen or any(t not in SIM_DEVICE_TYPES for t in chosen):
        raise argparse.ArgumentTypeError(f"device types: ward, default, all, or a comma list of "
                                         f"{', '.join(SIM_DEVICE_TYPES)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemed-edge", description="The telemed edge node.")
    parser.add_argument("--config", type=Path, required=True, help="edge.toml of the config bundle")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sim = parser.add_argument_group("simulated ward (instead of real BLE devices)")
    sim.add_argument("--simulate-ward", type=int, metavar="N", help="run a simulated ward of N patients in-process")
    sim.add_argument("--scenario", default="mix", choices=["mix", *sorted(SCENARIOS)])
    sim.add_argument("--speed", type=_speed, default=1.0, help="simulated seconds per second, or 'max'")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--time-scale", type=float, default=1.0, help="< 1 compresses every scenario's course")
    sim.add_argument("--devices", type=_device_types, default=WARD_DEVICES, metavar="TYPES",
                     help="device types per patient: 'ward' (default: the five defaults and the chest patch), "
                          "'default' (the five), 'all', or a comma list")
    commands = parser.add_subparsers(dest="command")
    devices = commands.add_parser("devices", help="manage the device registry")
    actions = devices.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="registered devices")
    assign = actions.add_parser("assign", help="put a device on a patient")
    assign.add_argument("device", help="device id or address")
    assign.add_argument("patient", help="pseudonymous patient id")
    assign.add_argument("--address")
    assign.add_argument("--type", choices=DEVICE_TYPES)
    unassign = actions.add_parser("unassign", help="take a device off its patient")
    unassign.add_argument("device")
    remove = actions.add_parser("remove", help="forget a device")
    remove.add_argument("device")
    register = actions.add_parser("register", help="register a device (optionally on a patient)")
    register.add_argument("address")
    register.add_argument("--type", choices=DEVICE_TYPES, required=True)
    register.add_argument("--id")
    register.add_argument("--patient")
    scan = actions.add_parser("scan", help="list health devices advertising nearby (real adapter)")
    scan.add_argument("--timeout", type=float, default=10.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        settings = load_edge_settings(args.config)
        ward = _ward(args)
    except (SettingsError, SimulationError, ValueError) as exc:
        print(f"telemed-edge: {exc}", file=sys.stderr)
        return 2
    base_dir = args.config.parent.absolute()
    if args.command == "devices":
        return _devices(args, settings, base_dir)
    return _serve(settings, base_dir, ward)


def _ward(args: argparse.Namespace) -> WardOptions | None:
    if args.simulate_ward is None:
        return None
    return WardOptions(args.simulate_ward, scenario=args.scenario, seed=args.seed, speed=args.speed,
                       time_scale=args.time_scale, devices=args.devices)


def _serve(settings: EdgeSettings, base_dir: Path, ward: WardOptions | None) -> int:
    from edge.service import EdgeService  # the service's imports (pynetdicom, paho) only when serving

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await EdgeService(settings, base_dir=base_dir, ward=ward).run(stop)

    try:
        asyncio.run(run())
    except Exception as exc:
        log.exception("service.failed", extra={"error": str(exc)})
        return 1
    return 0


def _devices(args: argparse.Namespace, settings: EdgeSettings, base_dir: Path) -> int:
    if args.action == "scan":
        return _scan(settings, args.timeout)
    path = settings.ble.registry_path
    registry = DeviceRegistry(path if path.is_absolute() else base_dir / path)
    try:
        if args.action == "list":
            for r in registry.records():
                print(f"{r.device_id}\t{r.address}\t{r.device_type}\t{r.patient_id or '-'}\t{r.source}")
        elif args.action == "assign":
            r = registry.assign(args.device, args.patient, address=args.address, device_type=args.type,
                                source="local")
            print(f"{r.device_id} -> {r.patient_id}")
        elif args.action == "unassign":
            print(f"{registry.unassign(args.device).device_id} unassigned")
        elif args.action == "remove":
            if not registry.remove(args.device):
                print(f"telemed-edge: no device {args.device!r}", file=sys.stderr)
                return 1
        elif args.action == "register":
            r = registry.register(args.address, args.type, device_id=args.id, patient_id=args.patient)
            print(f"{r.device_id}\t{r.address}\t{r.device_type}\t{r.patient_id or '-'}")
    except RegistryError as exc:
        print(f"telemed-edge: {exc}", file=sys.stderr)
        return 1
    finally:
        registry.close()
    return 0


def _scan(settings: EdgeSettings, timeout: float) -> int:
    from devices.ble import BleTransportError
    from devices.ble.bleak_adapter import BleakTransport

    async def scan() -> None:
        transport = BleakTransport(adapter=settings.ble.adapter or None)
        try:
            found = await transport.scan(allowlist=settings.ble.allowlist or None, timeout=timeout)
        finally:
            await transport.close()
        for device in found:
            print(f"{device.address}\t{device.rssi} dBm\t{device_type_for(device.service_uuids) or '?'}\t"
                  f"{device.name or ''}")

    try:
        asyncio.run(scan())
    except BleTransportError as exc:
        print(f"telemed-edge: scan failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
