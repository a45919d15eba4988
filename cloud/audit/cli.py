"""`telemed-cloud audit verify` and `telemed-cloud keys rotate|status`, registered into cloud/cli.py's parser.

    telemed-cloud audit verify [--anchor SEQ:HASH] [--json]
    telemed-cloud keys rotate [--index] [--resume] [--batch N]
    telemed-cloud keys status [--json]

`audit verify` exits 0 when the chain holds and 1 at the first broken entry. Handlers are
`fn(args, settings) -> int` (cloud/cli.py's convention).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from cloud.audit import store
from cloud.audit.chain import HASH_BYTES, Head
from cloud.identity import rotation
from cloud.identity.crypto import IdentityCryptoError
from cloud.identity.keys import KeyFileError, KeySource
from cloud.identity.keystore import KeyMismatchError, verified_ring_sync
from cloud.settings import CloudSettings


def register_audit_commands(subparsers: Any) -> None:
    """Add `audit` and `keys` to the `telemed-cloud` subcommands."""
    audit = subparsers.add_parser("audit", help="the hash-chained audit log")
    audit_actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_actions.add_parser("verify", help="walk the chain; exit 1 at the first broken entry")
    verify.add_argument("--anchor", type=parse_anchor, metavar="SEQ:HASH",
                        help="an entry's hash recorded earlier outside the database (GET /api/audit/head)")
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.set_defaults(handler=cmd_audit_verify)

    keys = subparsers.add_parser("keys", help="patient identity encryption keys")
    key_actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = key_actions.add_parser("rotate", help="new data key (and index key), then re-encrypt every patient")
    rotate.add_argument("--index", action="store_true", help="also rotate the blind-index key")
    rotate.add_argument("--resume", action="store_true", help="no new key: finish an interrupted re-encryption")
    rotate.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    rotate.set_defaults(handler=cmd_keys_rotate)
    status = key_actions.add_parser("status", help="key versions and how many patients use each")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_keys_status)


def parse_anchor(text: str) -> Head:
    """`SEQ:HEX` into a Head (argparse type)."""
    seq, _, digest = text.partition(":")
    try:
        head = Head(seq=int(seq), entry_hash=bytes.fromhex(digest))
    except ValueError:
        raise argparse.ArgumentTypeError("expected SEQ:HASH (hash in hex)") from None
    if head.seq < 1 or len(head.entry_hash) != HASH_BYTES:
        raise argparse.ArgumentTypeError("expected a positive SEQ and a 64-digit hex SHA-256")
    return head


def _connect(settings: CloudSettings) -> psycopg.Connection[Any]:
    return psycopg.connect(settings.require_database(), autocommit=True, application_name="telemed-audit",
                           connect_timeout=max(1, round(settings.database.connect_timeout_s)))


def cmd_audit_verify(args: argparse.Namespace, settings: CloudSettings) -> int:
    with _connect(settings) as conn:
        report = store.verify_log(conn, anchor=args.anchor)
    head = report.head
    if args.json:
        print(json.dumps({
            "ok": report.ok, "checked": report.checked, "pending": report.pending,
            "head": {"seq": head.seq, "entry_hash": head.entry_hash.hex()} if head else None,
            "broken": None if report.broken is None else {
                "seq": report.broken.seq, "problem": report.broken.problem, "message": report.broken.message},
        }, indent=2))
    elif report.broken is None:
        where = f"head {head.seq} {head.entry_hash.hex()}" if head else "empty"
        pending = f", {report.pending} pending" if report.pending else ""
        print(f"audit chain intact: {report.checked} entries{pending}; {where}")
    else:
        print(f"audit chain BROKEN at entry {report.broken.seq} ({report.broken.problem}): {report.broken.message}",
              file=sys.stderr)
        print(f"{report.checked} entries verified before the break", file=sys.stderr)
    return 0 if report.ok else 1


def cmd_keys_rotate(args: argparse.Namespace, settings: CloudSettings) -> int:
    if args.batch < 1:
        print("telemed-cloud keys rotate: --batch must be at least 1", file=sys.stderr)
        return 2
    source = KeySource.from_settings(settings)
    try:
        with _connect(settings) as conn:
            report = rotation.rotate(conn, source, index=args.index, resume=args.resume, batch=args.batch)
    except (KeyFileError, KeyMismatchError, IdentityCryptoError) as exc:
        print(f"telemed-cloud keys rotate: {exc}", file=sys.stderr)
        return 1
    print(f"identity keys now data v{report.data_version}, index v{report.index_version}; "
          f"re-encrypted {report.reencrypted} patients")
    if report.remaining:
        print(f"{report.remaining} rows still use older keys (locked by other writers): run "
              "`telemed-cloud keys rotate --resume`", file=sys.stderr)
        return 1
    return 0


def cmd_keys_status(args: argparse.Namespace, settings: CloudSettings) -> int:
    source = KeySource.from_settings(settings)
    try:
        with _connect(settings) as conn:
            ring = verified_ring_sync(conn, source)
            usage = rotation.key_usage(conn)
    except (KeyFileError, KeyMismatchError) as exc:
        print(f"telemed-cloud keys status: {exc}", file=sys.stderr)
        return 1
    key_file = str(source.path) if source.path else "TELEMED_IDENTITY__KEYS"
    parts = {
        "data": (ring.current_data, {v: usage["data"].get(v, 0) for v in sorted(ring.data)}),
        "index": (ring.current_index, {v: usage["index"].get(v, 0) for v in sorted(ring.index)}),
    }
    if args.json:
        print(json.dumps({"key_file": key_file, **{
            purpose: {"current": current, "versions": versions} for purpose, (current, versions) in parts.items()}},
            indent=2))
        return 0
    print(f"key file: {key_file}")
    for purpose, (current, versions) in parts.items():
        for version, count in versions.items():
            marker = " (current)" if version == current else ""
            print(f"{purpose} key v{version}{marker}: {count} patients")
    return 0
