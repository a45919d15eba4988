"""Administering a PostgreSQL server over SQL: readiness, roles, databases and the TimescaleDB extension.

Works on any server we hold superuser credentials for, private or not; psycopg errors become `DatabaseAdminError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import quote

import psycopg
from psycopg import sql

from deploy.errors import DeployError

Mode = Literal["timescale", "plain"]


class DatabaseAdminError(DeployError):
    """An administrative statement failed, or the server could not be reached."""


def make_url(*, host: str, port: int, user: str, password: str, database: str) -> str:
    """A libpq connection URL, with user and password percent-encoded."""
    return f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(database, safe='')}"


def wait_ready(url: str, *, timeout: float, alive: Callable[[], bool]) -> str | None:
    """Poll until a login on `url` succeeds: None when ready, else the last error (also when not `alive`)."""
    deadline = time.monotonic() + timeout
    last = "timed out"
    while time.monotonic() < deadline:
        if not alive():
            return "server process exited"
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return None
        except psycopg.OperationalError as exc:
            last = str(exc).strip()
        time.sleep(0.1)
    return f"timed out after {timeout:.0f} s ({last})"


def ensure_role(admin_url: str, name: str, password: str) -> None:
    """Create login role `name` with `password`, or reset the password of an existing one."""
    with _admin(admin_url) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                sql.SQL(verb), sql.Identifier(name), sql.Literal(password)
            )
        )


def ensure_database(admin_url: str, name: str, *, owner: str, template: str | None = None) -> bool:
    """Create database `name` owned by `owner` unless it exists; whether it was created."""
    with _admin(admin_url) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        conn.execute(statement)
        return True


def drop_database(admin_url: str, name: str) -> None:
    """Drop database `name` if it exists, disconnecting its sessions (PostgreSQL 13+ `WITH (FORCE)`)."""
    with _admin(admin_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def enable_timescaledb(admin_url: str) -> Mode:
    """`CREATE EXTENSION timescaledb` in the URL's database when the server offers it; the resulting mode."""
    with _admin(admin_url) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        if not available:
            return "plain"
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return "timescale"


def detect_mode(url: str) -> Mode:
    """'timescale' if the URL's database has the timescaledb extension installed, else 'plain'."""
    with _admin(url) as conn:
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        return "timescale" if row else "plain"


@contextmanager
def _admin(url: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """An autocommit connection whose psycopg errors surface as `DatabaseAdminError`."""
    try:
        conn = psycopg.connect(url, connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        raise DatabaseAdminError(f"cannot connect to {redact_url(url)}: {exc}") from exc
    try:
        with conn:
            yield conn
    except psycopg.Error as exc:
        raise DatabaseAdminError(f"on {redact_url(url)}: {exc}") from exc


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***`, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***{at}{hostpart}" if ":" in userinfo else url
