"""Helpers (no tests) for the identity, users, audit and access-control integration tests: an API client whose
identity keys live in a private directory, valid national ID numbers, database copies and the CLI."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from cloud import cli
from cloud.api.app import create_app
from cloud.api.policy import ApiPolicy
from cloud.identity.national_id import check_character
from cloud.settings import CloudSettings, DatabaseSettings, DicomSettings, KeysSettings
from deploy import pgadmin
from deploy.postgres import PostgresEndpoint


def national_id(first17: str) -> str:
    """A valid 18-character ID number from its first 17 digits (the GB 11643-1999 check character appended)."""
    return first17 + check_character(first17)


# Fictitious people (valid numbers: address code, birth date, sequence, check character).
ZHANG_SAN = {"name": "张三丰", "national_id": national_id("44030519800101123"), "phone": "13800138000"}
LI_SI = {"name": "李思思", "national_id": national_id("11010119920315004"), "phone": "+86 139 1234 5678"}
WANG_WU = {"name": "王五", "national_id": national_id("51010219750620301")}


def dicom_dir_for(keys_dir: Path) -> Path:
    """Where the app of `identity_client` keeps DICOM objects (beside the keys, never in the working directory)."""
    return keys_dir.with_name(keys_dir.name + "-dicom")


def settings_for(url: str, keys_dir: Path) -> CloudSettings:
    return CloudSettings(database=DatabaseSettings(url=url, pool_min=1, pool_max=4), keys=KeysSettings(dir=keys_dir),
                         dicom=DicomSettings(store_dir=dicom_dir_for(keys_dir)))


def identity_client(url: str, keys_dir: Path) -> TestClient:
    """An in-process client of a fresh app whose identity keys live in `keys_dir` (enter it to start it)."""
    return TestClient(create_app(settings_for(url, keys_dir), policy=ApiPolicy(cookie_secure=False)))


@contextlib.contextmanager
def database_copy(postgres: PostgresEndpoint, template: str) -> Iterator[PostgresEndpoint]:
    """A copy of database `template` (nobody may be connected to it), dropped afterwards."""
    name = f"copy_{uuid.uuid4().hex[:16]}"
    admin = postgres.with_database("postgres").admin_url
    pgadmin.ensure_database(admin, name, owner=postgres.user, template=template)
    try:
        yield postgres.with_database(name)
    finally:
        pgadmin.drop_database(admin, name)


def run_cli(args: Sequence[str], *, url: str, keys_dir: Path | None = None,
            monkeypatch: Any) -> tuple[int, str, str]:
    """`telemed-cloud ARGS` in-process against `url`; (exit status, stdout, stderr)."""
    monkeypatch.setenv("TELEMED_DATABASE_URL", url)
    if keys_dir is not None:
        monkeypatch.setenv("TELEMED_KEYS__DIR", str(keys_dir))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(list(args))
    return status, out.getvalue(), err.getvalue()


def owner_execute(url: str, *statements: str) -> None:
    """Run statements as the database owner in one transaction (tampering the way an intruder with the
    owner's password could: the append-only trigger switched off first)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for statement in statements:
            conn.execute(statement.encode())
