"""`telemed-cloud alerting` and `telemed-cloud oncall seed-demo`, registered into cloud/cli.py's parser.

    telemed-cloud alerting                      run the alerting service until SIGTERM/SIGINT (migrates first)
    telemed-cloud oncall seed-demo [--webhook URL --webhook-secret S [--webhook-only]]
                                                departments, rotas and a policy for every site from its users

Handlers are `fn(args, settings) -> int` (cloud/cli.py's convention); the service's own knobs come from
`TELEMED_ALERTING__*` variables (cloud/alerting/config.py).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
from typing import Any

import psycopg

from cloud.alerting import config, service
from cloud.alerting.demo import seed_demo
from cloud.identity.keys import KeySource
from cloud.identity.keystore import VerifiedKeys
from cloud.ingest.supervisor import run_migrations
from cloud.settings import CloudSettings
from proto.settings import SettingsError


def register_alerting_commands(subparsers: Any) -> None:
    """Add `alerting` and `oncall` to the `telemed-cloud` subcommands."""
    alerting = subparsers.add_parser("alerting", help="run the alerting service (evaluation, incidents, paging)")
    alerting.set_defaults(handler=cmd_alerting)
    oncall = subparsers.add_parser("oncall", help="on-call schedules")
    actions = oncall.add_subparsers(dest="oncall_command", required=True, metavar="ACTION")
    seed = actions.add_parser("seed-demo", help="departments, rotas and an escalation policy for every site")
    seed.add_argument("--webhook", help="also page every rota member on this webhook URL")
    seed.add_argument("--webhook-secret", help="the webhook's HMAC secret (or TELEMED_DEMO_WEBHOOK_SECRET)")
    seed.add_argument("--webhook-only", action="store_true",
                      help="leave the rotas as they are; only point the demo pager channel at --webhook")
    seed.set_defaults(handler=cmd_seed_demo)


def cmd_alerting(args: argparse.Namespace, settings: CloudSettings) -> int:
    settings.require_database()
    run_migrations(settings)
    return service.run(settings, config.load())


def cmd_seed_demo(args: argparse.Namespace, settings: CloudSettings) -> int:
    secret = args.webhook_secret or os.environ.get("TELEMED_DEMO_WEBHOOK_SECRET")
    if args.webhook and not secret:
        raise SettingsError("--webhook-secret", "a webhook needs its HMAC secret")
    if args.webhook_only and not args.webhook:
        raise SettingsError("--webhook-only", "give the --webhook to point the demo pager at")

    async def seed() -> None:
        conninfo = settings.require_database()
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn, conn.transaction():
            ring = await VerifiedKeys(KeySource.from_settings(settings)).ring(conn) if args.webhook else None
            report = await seed_demo(conn, now=dt.datetime.now(dt.UTC), webhook_url=args.webhook,
                                     webhook_secret=secret, rotas=not args.webhook_only, ring=ring)
        for site_id, roles in sorted(report.sites.items()):
            print(f"{site_id}: " + "; ".join(f"{role} {', '.join(names)}" for role, names in roles.items()))
        if report.channel:
            print(f"webhook channel {report.channel}")

    asyncio.run(seed())
    return 0
