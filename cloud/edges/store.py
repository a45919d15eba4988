"""The `sites` and `edges` tables: registering, revoking and listing edges (psycopg, caller's transaction)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors as pg_errors

from cloud.edges.registry import EdgeRecord

_COLUMNS = "edge_id, site_id, public_key, status, name, created_at, revoked_at, last_seen_at"


class EdgeStoreError(Exception):
    """An edge operation the registry refuses."""


class EdgeExistsError(EdgeStoreError):
    """An edge with that id is already registered."""


class EdgeNotFoundError(EdgeStoreError):
    """No edge with that id."""


def _record(row: tuple[Any, ...]) -> EdgeRecord:
    return EdgeRecord(edge_id=row[0], site_id=row[1], public_key=row[2], status=row[3], name=row[4],
                      created_at=row[5], revoked_at=row[6], last_seen_at=row[7])


def ensure_site(conn: psycopg.Connection[Any], site_id: str, name: str | None = None) -> bool:
    """Create the site unless it exists; whether it was created."""
    row = conn.execute(
        "INSERT INTO sites (site_id, name) VALUES (%s, %s) ON CONFLICT (site_id) DO NOTHING RETURNING site_id",
        (site_id, name or site_id),
    ).fetchone()
    return row is not None


def insert_edge(conn: psycopg.Connection[Any], *, edge_id: str, site_id: str, name: str, public_key: str) -> EdgeRecord:
    """Register an active edge; EdgeExistsError if the id is taken (revoked ids are never reused)."""
    try:
        with conn.transaction():
            row = conn.execute(
                f"INSERT INTO edges (edge_id, site_id, name, public_key, status) VALUES (%s, %s, %s, %s, 'active') "
                f"RETURNING {_COLUMNS}",
                (edge_id, site_id, name, public_key),
            ).fetchone()
    except pg_errors.UniqueViolation as exc:
        raise EdgeExistsError(f"edge {edge_id!r} already exists") from exc
    assert row is not None
    return _record(row)


def revoke_edge(conn: psycopg.Connection[Any], edge_id: str) -> EdgeRecord:
    """Mark the edge revoked (idempotent); EdgeNotFoundError if there is no such edge."""
    row = conn.execute(
        f"UPDATE edges SET status = 'revoked', revoked_at = coalesce(revoked_at, now()) WHERE edge_id = %s "
        f"RETURNING {_COLUMNS}",
        (edge_id,),
    ).fetchone()
    if row is None:
        raise EdgeNotFoundError(f"no edge {edge_id!r}")
    return _record(row)


def get_edge(conn: psycopg.Connection[Any], edge_id: str) -> EdgeRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM edges WHERE edge_id = %s", (edge_id,)).fetchone()
    return _record(row) if row is not None else None


def list_edges(conn: psycopg.Connection[Any], *, site_id: str | None = None) -> list[EdgeRecord]:
    """Every edge (of one site if given), by site then id."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM edges WHERE %s::text IS NULL OR site_id = %s ORDER BY site_id, edge_id",
        (site_id, site_id),
    ).fetchall()
    return [_record(row) for row in rows]
