"""`python -m deploy` (telemed-stack): run the local stack under var/ until Ctrl-C or SIGTERM.

Prints the endpoints (passwords redacted; the full set is in var/endpoints.json, mode 0600) and stays up,
watching its servers. Exit status: 0 after a signal, 1 if a server died or failed to start, 2 on bad settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from deploy.errors import DeployError
from deploy.pgadmin import redact_url
from deploy.stack import Endpoints, Stack, StackSettings
from proto.settings import SettingsError, load_settings

log = logging.getLogger("deploy")


class Shutdown(BaseException):
    """Raised in the main thread by SIGINT/SIGTERM so every context manager unwinds and stops its server."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Later signals are ignored: the shutdown already under way must not be interrupted half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Shutdown(signal.Signals(signum).name)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, help="state directory (default: settings var_dir, i.e. var/)")
    parser.add_argument("--config", type=Path, help="TOML settings file (TELEMED_* variables override it)")
    parser.add_argument("--edge", action="append", default=[], help="provision an edge login (repeatable)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def describe(endpoints: Endpoints, endpoints_path: Path) -> str:
    """A human summary of the endpoints, without passwords."""
    db, mqtt = endpoints.database, endpoints.mqtt
    lines = [
        f"database  {redact_url(db.url)}  (mode: {db.mode}{'' if db.managed else ', existing server'})",
        f"mqtt      {mqtt.host}:{mqtt.port}  cloud user: {mqtt.cloud.username}"
        f"{'' if mqtt.managed else '  (existing broker)'}",
    ]
    lines += [f"edge      {edge}" for edge in sorted(mqtt.edges)]
    lines.append(f"endpoints {endpoints_path}  (with passwords, mode 0600)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(StackSettings, path=args.config)
        if args.var is not None:
            settings = dataclasses.replace(settings, var_dir=args.var)
        if args.edge:
            settings = dataclasses.replace(settings, edges=(*settings.edges, *args.edge))
    except (SettingsError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        with Stack(settings) as stack:
            path = stack.write_endpoints()
            print(describe(stack.endpoints, path), flush=True)
            print("stack up; Ctrl-C to stop", flush=True)
            while True:
                dead = stack.dead_services()
                if dead:
                    log.error("deploy.service_died services=%s", ",".join(dead))
                    return 1
                time.sleep(0.5)
    except Shutdown as stop:
        log.info("deploy.stopped signal=%s", stop)
        return 0
    except DeployError as exc:
        log.error("deploy.failed error=%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
