"""`telemed-cloud serve` and `telemed-cloud user add`, registered into cloud/cli.py's parser.

    telemed-cloud serve [--host H] [--port P] [--proxy-headers]
    telemed-cloud user add --username U --role admin|county_doctor|expert|on_call [--role ...] [--site S]
                           [--display-name N] [--password-file F]

Each handler is `fn(args, settings) -> int` (cloud/cli.py's convention).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

import psycopg

from cloud.api.auth import service, store
from cloud.api.auth.models import Role, User
from cloud.db import migrate
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A user mistake a command reports in one line."""


def register_api_commands(subparsers: Any) -> None:
    """Add `serve` and `user` to the `telemed-cloud` subcommands."""
    serve = subparsers.add_parser("serve", help="run the HTTP API (migrates the database first)")
    serve.add_argument("--host", help="listen address (default: api.host)")
    serve.add_argument("--port", type=int, help="listen port (default: api.port)")
    serve.add_argument("--proxy-headers", action="store_true",
                       help="trust X-Forwarded-For/Proto from the load balancer (client addresses for throttling)")
    serve.set_defaults(handler=cmd_serve)

    user = subparsers.add_parser("user", help="manage API users")
    actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a user (password from a prompt or --password-file)")
    add.add_argument("--username", required=True)
    add.add_argument("--role", required=True, action="append", choices=[r.value for r in Role],
                     help="repeat for several roles")
    add.add_argument("--site", help="site id (required for county_doctor)")
    add.add_argument("--display-name", default="")
    add.add_argument("--password-file", type=Path, help="file whose first line is the password")
    add.set_defaults(handler=cmd_user_add)


def run_migrations(settings: CloudSettings) -> migrate.MigrationReport:
    """Bring the schema up to date (serve always starts on a current schema)."""
    with psycopg.connect(settings.require_database(), autocommit=True, application_name="telemed-api-migrate",
                         connect_timeout=max(1, round(settings.database.connect_timeout_s))) as conn:
        return migrate.migrate(conn, ahead_days=settings.partitions.ahead_days,
                               retention_days=settings.retention.raw_days)


def cmd_serve(args: argparse.Namespace, settings: CloudSettings) -> int:
    """Migrate, then serve the API with uvicorn until interrupted."""
    import uvicorn

    from cloud.api.app import create_app

    report = run_migrations(settings)
    log.info("serve.schema version=%04d mode=%s", report.current, report.mode)
    if not any(importlib.util.find_spec(lib) for lib in ("websockets", "wsproto")):
        log.warning("serve.no_websocket_library detail=WS /api/live needs the websockets or wsproto package")
    uvicorn.run(
        create_app(settings, freeze_gc=True), host=args.host or settings.api.host, port=args.port or settings.api.port,
        proxy_headers=args.proxy_headers, forwarded_allow_ips="*" if args.proxy_headers else None,
        log_level="info",
    )
    return 0


def read_password(path: Path | None) -> str:
    """The new user's password: the first line of `path`, or typed twice at a terminal."""
    if path is not None:
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0]:
            raise CommandError(f"{path}: the first line must hold the password")
        return lines[0]
    if not sys.stdin.isatty():
        raise CommandError("no terminal to prompt for the password: use --password-file")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("repeat password: "):
        raise CommandError("the passwords differ")
    return first


def cmd_user_add(args: argparse.Namespace, settings: CloudSettings) -> int:
    """Create one user."""
    roles = frozenset(Role(r) for r in args.role)
    try:
        password = read_password(args.password_file)
        user = asyncio.run(_add_user(settings, args, roles, password))
    except (CommandError, store.UserExistsError, store.UnknownSiteError, ValueError) as exc:
        print(f"telemed-cloud user add: {exc}", file=sys.stderr)
        return 1
    print(f"user {user.username} ({', '.join(sorted(r.value for r in user.roles))}) created: {user.user_id}")
    return 0


async def _add_user(
    settings: CloudSettings, args: argparse.Namespace, roles: frozenset[Role], password: str
) -> User:
    async with await psycopg.AsyncConnection.connect(settings.require_database(), autocommit=True) as conn:
        return await service.add_user(
            conn, username=args.username, password=password, roles=roles, site_id=args.site,
            display_name=args.display_name,
        )
