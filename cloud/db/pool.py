"""Database connections: psycopg pools for services, and single connections for workers and commands.

Pools are created closed; the owner opens them at start-up and waits, so a bad URL or a database that is
down fails the start instead of the first request:

    pool = create_async_pool(settings.database)
    await pool.open(wait=True)          # in the FastAPI lifespan
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from cloud.settings import DatabaseSettings
from proto.settings import SettingsError

APPLICATION_NAME = "telemed-cloud"


class DatabaseUnavailable(Exception):
    """The database could not be reached (or refused our login)."""


def _kwargs(settings: DatabaseSettings, application_name: str) -> dict[str, Any]:
    return {"connect_timeout": max(1, round(settings.connect_timeout_s)), "application_name": application_name}


def _url(settings: DatabaseSettings) -> str:
    if not settings.url:
        raise SettingsError("database.url", "required: set it in the settings file or as TELEMED_DATABASE_URL")
    return settings.url


def create_pool(
    settings: DatabaseSettings, *, name: str = "telemed", application_name: str = APPLICATION_NAME
) -> ConnectionPool[psycopg.Connection[Any]]:
    """A closed synchronous pool sized by `settings` (call `.open(wait=True)`)."""
    return ConnectionPool(
        _url(settings), min_size=settings.pool_min, max_size=settings.pool_max, open=False, name=name,
        kwargs=_kwargs(settings, application_name), timeout=settings.connect_timeout_s,
    )


def create_async_pool(
    settings: DatabaseSettings, *, name: str = "telemed", application_name: str = APPLICATION_NAME
) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    """A closed asyncio pool sized by `settings` (call `await .open(wait=True)` in the app lifespan)."""
    return AsyncConnectionPool(
        _url(settings), min_size=settings.pool_min, max_size=settings.pool_max, open=False, name=name,
        kwargs=_kwargs(settings, application_name), timeout=settings.connect_timeout_s,
    )


def connect(
    settings: DatabaseSettings, *, autocommit: bool = False, application_name: str = APPLICATION_NAME
) -> psycopg.Connection[Any]:
    """One dedicated connection (an ingest worker's, a command's); DatabaseUnavailable if it cannot."""
    try:
        return psycopg.connect(_url(settings), autocommit=autocommit, **_kwargs(settings, application_name))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc).strip()) from exc
