"""`telemed-cloud` (or `python -m cloud.cli`): the cloud service's command line.

    telemed-cloud [--config FILE] migrate
    telemed-cloud [--config FILE] maintain [--now TIME]
    telemed-cloud [--config FILE] ingest [--workers N]
    telemed-cloud [--config FILE] edge add --site S --name N [--id ID] [--site-name NAME] [--out DIR]
    telemed-cloud [--config FILE] edge revoke ID
    telemed-cloud [--config FILE] edge list [--site S] [--json]

Settings come from the TOML file and `TELEMED_*` variables (cloud.settings). Other packages add commands
through `register_api_commands(subparsers)` in cloud/api/cli.py: each subcommand parser sets
`handler=fn` with `fn(args: argparse.Namespace, settings: CloudSettings) -> int` (the exit status).
Errors are reported as one line on stderr with a non-zero exit status, never as a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from cloud.db import migrate
from cloud.edges import cloud_key, provision
from cloud.edges.broker import BrokerAdmin, MosquittoAdmin
from cloud.edges.registry import EdgeRecord
from cloud.ingest import supervisor
from cloud.settings import CloudSettings, load
from proto import keys
from proto.schema import parse_time
from proto.settings import SettingsError

log = logging.getLogger("cloud.cli")

Handler = Callable[[argparse.Namespace, CloudSettings], int]

# Failures a command reports as a message (anything else is a bug and keeps its traceback).
_EXPECTED: tuple[type[BaseException], ...] = (
    SettingsError, migrate.MigrationError, provision.ProvisioningError, cloud_key.CloudKeyError, psycopg.Error,
    OSError,
)


def _connect(settings: CloudSettings, *, autocommit: bool) -> psycopg.Connection[Any]:
    return psycopg.connect(settings.require_database(), autocommit=autocommit, application_name="telemed-cli",
                           connect_timeout=max(1, round(settings.database.connect_timeout_s)))


# --- migrate / maintain / ingest ---------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: CloudSettings) -> int:
    report = supervisor.run_migrations(settings)
    applied = ", ".join(f"{v:04d}" for v in report.applied) or "none"
    print(f"schema at version {report.current:04d} ({report.mode} mode); applied: {applied}")
    for action, name in report.upkeep:
        print(f"  {action}: {name}")
    return 0


def cmd_maintain(args: argparse.Namespace, settings: CloudSettings) -> int:
    now = parse_time(args.now) if args.now else None
    with _connect(settings, autocommit=True) as conn:
        actions = migrate.maintain(conn, now=now, ahead_days=settings.partitions.ahead_days,
                                   retention_days=settings.retention.raw_days,
                                   dedupe_days=settings.retention.dedupe_days)
    for action, name in actions:
        print(f"{action}: {name}")
    if not actions:
        print("nothing to do")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: CloudSettings) -> int:
    return supervisor.run(settings, workers=args.workers)


# --- edges -----------------------------------------------------------------------------------------------


def broker_admin(settings: CloudSettings) -> BrokerAdmin:
    """The broker whose logins provisioning manages (settings `mqtt.admin_dir`)."""
    if settings.mqtt.admin_dir is None:
        raise SettingsError("mqtt.admin_dir", "required to create or remove broker logins: the private "
                            "broker's directory (TELEMED_MQTT__ADMIN_DIR)")
    return MosquittoAdmin(settings.mqtt.admin_dir)


def broker_address(settings: CloudSettings) -> provision.BrokerAddress:
    """The broker address edges are given (edges.* overrides mqtt.*)."""
    edges = settings.edges
    return provision.BrokerAddress(
        host=edges.mqtt_host or settings.mqtt.host, port=edges.mqtt_port or settings.mqtt.port,
        tls=edges.tls, cafile=edges.cafile,
    )


def cmd_edge_add(args: argparse.Namespace, settings: CloudSettings) -> int:
    signer = cloud_key.load_or_create(settings.keys.cloud_key_path)
    edge_id = args.id or provision.new_edge_id(args.site)
    with _connect(settings, autocommit=True) as conn:
        result = provision.add_edge(
            conn, broker_admin(settings), site=args.site, name=args.name, edge_id=edge_id,
            site_name=args.site_name, out_dir=args.out or Path("var") / "edges" / edge_id,
            cloud_public_key=keys.public_to_text(signer.public_key()), address=broker_address(settings),
            reserved_ids=frozenset({settings.mqtt.username}),
        )
    print(f"edge {result.record.edge_id} added to site {result.record.site_id}; bundle: {result.bundle.parent}")
    return 0


def cmd_edge_revoke(args: argparse.Namespace, settings: CloudSettings) -> int:
    with _connect(settings, autocommit=True) as conn:
        record = provision.revoke_edge(conn, broker_admin(settings), args.edge_id)
    print(f"edge {record.edge_id} revoked at {record.revoked_at:%Y-%m-%d %H:%M:%S%z}" if record.revoked_at
          else f"edge {record.edge_id} revoked")
    return 0


def _edge_json(record: EdgeRecord) -> dict[str, Any]:
    def when(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {"edge_id": record.edge_id, "site_id": record.site_id, "name": record.name, "status": record.status,
            "fingerprint": keys.fingerprint(keys.public_from_text(record.public_key)),
            "created_at": when(record.created_at), "revoked_at": when(record.revoked_at),
            "last_seen_at": when(record.last_seen_at)}


def cmd_edge_list(args: argparse.Namespace, settings: CloudSettings) -> int:
    with _connect(settings, autocommit=True) as conn:
        records = provision.list_edges(conn, site=args.site)
    rows = [_edge_json(r) for r in records]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    header = ("EDGE", "SITE", "STATUS", "LAST SEEN", "KEY", "NAME")
    table = [header] + [(r["edge_id"], r["site_id"], r["status"], r["last_seen_at"] or "-", r["fingerprint"],
                         r["name"] or "") for r in rows]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    return 0


# --- parser ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemed-cloud", description="telemed cloud service")
    parser.add_argument("--config", type=Path, help="settings file (TOML); TELEMED_* variables override it")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("migrate", help="apply database migrations and storage upkeep").set_defaults(
        handler=cmd_migrate)
    maintain = commands.add_parser("maintain", help="storage upkeep: partitions, retention, old message ids")
    maintain.add_argument("--now", help="pretend it is this RFC 3339 time (testing the partition plan)")
    maintain.set_defaults(handler=cmd_maintain)
    ingest = commands.add_parser("ingest", help="run the MQTT ingest workers until SIGINT/SIGTERM")
    ingest.add_argument("--workers", type=int, help="worker processes (default: ingest.workers)")
    ingest.set_defaults(handler=cmd_ingest)

    edge = commands.add_parser("edge", help="provision, revoke and list edge nodes")
    edge_commands = edge.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    add = edge_commands.add_parser("add", help="register an edge and write its config bundle")
    add.add_argument("--site", required=True, help="site id (created if missing)")
    add.add_argument("--name", required=True, help="display name of the edge")
    add.add_argument("--id", help="edge id (default: <site>-<random>)")
    add.add_argument("--site-name", help="display name of the site when it is created")
    add.add_argument("--out", type=Path, help="bundle directory (default: var/edges/<edge id>)")
    add.set_defaults(handler=cmd_edge_add)
    revoke = edge_commands.add_parser("revoke", help="revoke an edge: its signatures and broker login")
    revoke.add_argument("edge_id")
    revoke.set_defaults(handler=cmd_edge_revoke)
    listing = edge_commands.add_parser("list", help="list edges")
    listing.add_argument("--site")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_edge_list)

    _register_optional(commands, "cloud.api.cli", "register_api_commands")
    _register_optional(commands, "cloud.audit.cli", "register_audit_commands")
    _register_optional(commands, "cloud.alerting.cli", "register_alerting_commands")
    return parser


def _register_optional(commands: Any, module: str, function: str) -> None:
    try:
        register = getattr(importlib.import_module(module), function)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return
    register(commands)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    handler: Handler = args.handler
    try:
        settings = load(args.config)
        return handler(args, settings)
    except _EXPECTED as exc:
        print(f"telemed-cloud {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
