"""Key rotation: new current keys, then every patient row re-encrypted (and re-indexed) under them.

Rows are processed in batches, each in its own transaction with `FOR UPDATE SKIP LOCKED`, so the API keeps
serving during a rotation and an interrupted run is finished by running it again with `resume`. Old key
versions stay in the ring (backups taken before the rotation still need them) until removed by hand once
`keys status` reports no row uses them.
"""

from __future__ import annotations

import getpass
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import dict_row

from cloud.api.audit import record_transition_sync
from cloud.identity.crypto import KeyRing
from cloud.identity.keys import KeySource
from cloud.identity.keystore import register_sync, verified_ring_sync
from cloud.identity.record import STORED_COLUMNS, StoredIdentity, open_identity, seal_identity

log = logging.getLogger(__name__)

SyncConn = Connection[Any]


@dataclass(frozen=True, slots=True)
class RotationReport:
    """What a rotation did: the versions now current, rows re-encrypted, rows still under old keys."""

    data_version: int
    index_version: int
    reencrypted: int
    remaining: int


def key_usage(conn: SyncConn) -> dict[str, Counter[int]]:
    """How many patient rows use each data and index key version."""
    usage: dict[str, Counter[int]] = {"data": Counter(), "index": Counter()}
    for purpose, column in (("data", "identity_key_version"), ("index", "index_key_version")):
        query = sql.SQL("SELECT {c}, count(*) FROM patients WHERE {c} IS NOT NULL GROUP BY 1").format(
            c=sql.Identifier(column))
        for version, count in conn.execute(query).fetchall():
            usage[purpose][version] = count
    return usage


_STALE = sql.SQL(
    "SELECT patient_id, site_id, {} FROM patients"
    " WHERE identity_key_version <> %(data)s OR index_key_version <> %(index)s"
    " ORDER BY patient_id LIMIT %(batch)s FOR UPDATE SKIP LOCKED"
).format(sql.SQL(", ").join(sql.Identifier(c) for c in STORED_COLUMNS))


def _update_statement() -> sql.Composed:
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in STORED_COLUMNS)
    return sql.SQL("UPDATE patients SET {} WHERE patient_id = %(patient_id)s").format(assignments)


def reencrypt(conn: SyncConn, ring: KeyRing, *, batch: int = 500) -> int:
    """Re-encrypt every row not under the ring's current keys; how many rows were rewritten."""
    done = 0
    update = _update_statement()
    while True:
        with conn.transaction():
            rows = conn.cursor(row_factory=dict_row).execute(
                _STALE, {"data": ring.current_data, "index": ring.current_index, "batch": batch}).fetchall()
            params = []
            for row in rows:
                identity = open_identity(ring, patient_id=row["patient_id"], stored=StoredIdentity.from_row(row))
                sealed = seal_identity(ring, patient_id=row["patient_id"], site_id=row["site_id"], identity=identity)
                params.append({**sealed.columns(), "patient_id": row["patient_id"]})
            if params:
                with conn.cursor() as cur:
                    cur.executemany(update, params)
        done += len(rows)
        if len(rows) < batch:
            return done
        log.info("identity.reencrypt_progress rows=%d", done)


def rotate(conn: SyncConn, source: KeySource, *, index: bool = False, resume: bool = False,
           batch: int = 500) -> RotationReport:
    """Rotate the data key (and the index key), then re-encrypt; `resume` only finishes an earlier rotation."""
    ring = verified_ring_sync(conn, source)
    before = (ring.current_data, ring.current_index)
    if not resume:
        ring = source.rotate(data=True, index=index)
        register_sync(conn, ring)
    rows = reencrypt(conn, ring, batch=batch)
    usage = key_usage(conn)
    remaining = sum(n for v, n in usage["data"].items() if v != ring.current_data) + sum(
        n for v, n in usage["index"].items() if v != ring.current_index)
    with conn.transaction():
        record_transition_sync(
            conn, entity="identity_keys", entity_id="patients", actor="keys-rotate",
            from_state=f"data:{before[0]},index:{before[1]}",
            to_state=f"data:{ring.current_data},index:{ring.current_index}",
            detail={"reencrypted": rows, "remaining": remaining, "resume": resume, "os_user": _os_user()})
    log.info("identity.rotated data_version=%d index_version=%d rows=%d remaining=%d", ring.current_data,
             ring.current_index, rows, remaining)
    return RotationReport(data_version=ring.current_data, index_version=ring.current_index, reencrypted=rows,
                          remaining=remaining)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
