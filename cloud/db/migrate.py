"""Versioned SQL migrations, the vital_kinds seed and storage upkeep (`telemed-cloud migrate`).

Migrations are files `NNNN_name.sql` in cloud/db/migrations, applied in version order, each in its own
transaction, and recorded in `schema_migrations`. A version may add mode-specific SQL, either as sibling
files `NNNN_name.plain.sql` / `NNNN_name.timescale.sql` or as sections of the main file that start with a
line `-- mode: plain`, `-- mode: timescale` or `-- mode: all`. The storage mode is "timescale" when the
database has the timescaledb extension, else "plain"; it is recorded with each migration, and the mode the
first migration used stays the database's mode (switching needs a data migration, not a re-run).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

import psycopg

from proto.vocabulary import VOCABULARY

log = logging.getLogger(__name__)

Mode = Literal["plain", "timescale"]
MODES: Final[tuple[Mode, ...]] = get_args(Mode)
MIGRATIONS_DIR: Final = Path(__file__).with_name("migrations")

# Serialises migrators (every ingest worker and API replica migrates at start-up).
_LOCK_KEY: Final = 0x7E1E_3ED0
_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+?)(?:\.(?P<mode>plain|timescale))?\.sql$")
_SECTION = re.compile(r"^--\s*mode:\s*(?P<mode>plain|timescale|all)\s*$", re.IGNORECASE)


class MigrationError(Exception):
    """The migrations cannot be loaded or applied; the message says which and why."""


@dataclass(frozen=True)
class Migration:
    """One schema version: SQL for every mode plus optional SQL per mode, applied together."""

    version: int
    name: str
    common: str
    by_mode: Mapping[str, str] = field(default_factory=dict)

    def sql_for(self, mode: Mode) -> str:
        """The SQL this version runs in `mode`: the common part first, then the mode's own."""
        parts = [self.common.strip(), self.by_mode.get(mode, "").strip()]
        return "\n\n".join(p for p in parts if p) + "\n"

    def checksum(self, mode: Mode) -> str:
        return hashlib.sha256(self.sql_for(mode).encode()).hexdigest()


@dataclass(frozen=True)
class MigrationReport:
    """What a migrate run did."""

    mode: Mode
    applied: tuple[int, ...]
    current: int
    upkeep: tuple[tuple[str, str], ...] = ()


# --- loading (pure) ---------------------------------------------------------------------------------------


def split_sections(text: str) -> dict[str, str]:
    """A file's SQL by section: 'all' (before any marker, or under `-- mode: all`), 'plain', 'timescale'."""
    sections: dict[str, list[str]] = {"all": []}
    current = "all"
    for line in text.splitlines():
        marker = _SECTION.match(line.strip())
        if marker:
            current = marker.group("mode").lower()
            sections.setdefault(current, [])
            continue
        sections.setdefault(current, []).append(line)
    return {mode: "\n".join(lines).strip() for mode, lines in sections.items() if "\n".join(lines).strip()}


def build_migrations(files: Mapping[str, str]) -> list[Migration]:
    """Migrations from `{file name: text}`; raises MigrationError for stray names or clashing versions."""
    common: dict[int, tuple[str, str]] = {}
    extra: dict[int, dict[str, list[str]]] = {}
    names: dict[int, str] = {}
    for filename in sorted(files):
        match = _FILE.match(filename)
        if match is None:
            raise MigrationError(f"migration file name {filename!r} is not NNNN_name[.plain|.timescale].sql")
        version, name, file_mode = int(match["version"]), match["name"], match["mode"]
        if names.setdefault(version, name) != name:
            raise MigrationError(f"version {version:04d} is claimed by {names[version]!r} and {name!r}")
        sections = split_sections(files[filename])
        if file_mode is not None:
            if set(sections) - {"all"}:
                raise MigrationError(f"{filename}: a mode-specific file cannot contain mode sections")
            extra.setdefault(version, {}).setdefault(file_mode, []).append(sections.get("all", ""))
            continue
        common[version] = (filename, sections.pop("all", ""))
        for mode, sql in sections.items():
            extra.setdefault(version, {}).setdefault(mode, []).append(sql)
    missing = sorted(set(extra) - set(common))
    if missing:
        raise MigrationError(f"mode-specific SQL without its main file for version(s) {missing}")
    migrations = [
        Migration(version, names[version], common[version][1],
                  {mode: "\n\n".join(parts) for mode, parts in extra.get(version, {}).items()})
        for version in sorted(common)
    ]
    return migrations


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, in version order."""
    try:
        files = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.sql")}
    except OSError as exc:
        raise MigrationError(f"cannot read migrations in {directory}: {exc}") from exc
    return build_migrations(files)


def pending(migrations: Iterable[Migration], applied: Iterable[int]) -> list[Migration]:
    """The migrations not yet applied, in order."""
    done = set(applied)
    return sorted((m for m in migrations if m.version not in done), key=lambda m: m.version)


def vital_kind_rows() -> list[tuple[int, str, str, str | None]]:
    """The vital_kinds seed: (kind_id, name, unit, loinc) for every vocabulary kind."""
    return sorted((k.wire_id, k.name, k.unit, k.loinc) for k in VOCABULARY.values())


# --- running (database) -------------------------------------------------------------------------------------

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    mode       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

_SEED = """
INSERT INTO vital_kinds (kind_id, name, unit, loinc)
SELECT * FROM unnest(%s::smallint[], %s::text[], %s::text[], %s::text[])
ON CONFLICT (kind_id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit, loinc = EXCLUDED.loinc
WHERE (vital_kinds.name, vital_kinds.unit, vital_kinds.loinc)
      IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.unit, EXCLUDED.loinc)
"""

Connection = psycopg.Connection[Any]


def detect_mode(conn: Connection) -> Mode:
    """'timescale' when the timescaledb extension is installed in this database, else 'plain'."""
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return "timescale" if row else "plain"


def storage_mode(conn: Connection) -> Mode:
    """The mode the schema was created in (recorded with its first migration)."""
    row = conn.execute("SELECT mode FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    if row is None or row[0] not in MODES:
        raise MigrationError("the database has no telemed schema: run `telemed-cloud migrate`")
    mode: Mode = row[0]
    return mode


def migrate(
    conn: Connection,
    *,
    migrations: list[Migration] | None = None,
    now: dt.datetime | None = None,
    ahead_days: int = 7,
    retention_days: int = 30,
) -> MigrationReport:
    """Apply pending migrations, seed vital_kinds and run storage upkeep; safe to run concurrently.

    `conn` must be in autocommit mode: each migration gets its own transaction.
    """
    if not conn.autocommit:
        raise MigrationError("migrate needs an autocommit connection (each migration is its own transaction)")
    migrations = load_migrations() if migrations is None else migrations
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_CREATE_LEDGER)
            done = {int(v): (str(n), str(m), str(c)) for v, n, m, c in conn.execute(
                "SELECT version, name, mode, checksum FROM schema_migrations").fetchall()}
            detected = detect_mode(conn)
            mode: Mode = storage_mode(conn) if done else detected
            if mode != detected:
                log.warning("migrate.mode_differs recorded=%s detected=%s", mode, detected)
            _warn_on_edits(migrations, done)
            applied: list[int] = []
            for migration in pending(migrations, done):
                with conn.transaction():
                    conn.execute(migration.sql_for(mode).encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, mode, checksum) VALUES (%s, %s, %s, %s)",
                        (migration.version, migration.name, mode, migration.checksum(mode)),
                    )
                applied.append(migration.version)
                log.info("migrate.applied version=%04d name=%s mode=%s", migration.version, migration.name, mode)
            with conn.transaction():
                seed_vital_kinds(conn)
            upkeep = maintain(conn, now=now, ahead_days=ahead_days, retention_days=retention_days)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    except psycopg.Error as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    current = max([*done, *applied], default=0)
    log.info("migrate.done mode=%s applied=%d current=%04d", mode, len(applied), current)
    return MigrationReport(mode=mode, applied=tuple(applied), current=current, upkeep=tuple(upkeep))


def seed_vital_kinds(conn: Connection) -> None:
    """Upsert vital_kinds from proto.vocabulary (idempotent)."""
    rows = vital_kind_rows()
    conn.execute(_SEED, [list(col) for col in zip(*rows, strict=True)])


def maintain(
    conn: Connection,
    *,
    now: dt.datetime | None = None,
    ahead_days: int,
    retention_days: int,
    dedupe_days: int | None = None,
) -> list[tuple[str, str]]:
    """Storage upkeep for `now` (default: the database's clock): partitions ahead and expired, retention policy.

    Also forgets ingested message ids older than `dedupe_days` when given. Returns (action, object) pairs.
    """
    with conn.transaction():
        rows = conn.execute(
            "SELECT action, partition_name FROM telemed_maintain_vitals(coalesce(%s, now()), %s, %s)",
            (now, ahead_days, retention_days),
        ).fetchall()
        actions = [(str(a), str(p)) for a, p in rows]
        if dedupe_days is not None:
            expired = conn.execute(
                "SELECT telemed_expire_ingested(coalesce(%s, now()) - make_interval(days => %s))",
                (now, dedupe_days),
            ).fetchone()
            if expired and expired[0]:
                actions.append(("expired_message_ids", str(expired[0])))
    for action, name in actions:
        log.info("maintain.%s object=%s", action, name)
    return actions


def _warn_on_edits(migrations: list[Migration], done: Mapping[int, tuple[str, str, str]]) -> None:
    for migration in migrations:
        recorded = done.get(migration.version)
        if recorded is None:
            continue
        name, mode, checksum = recorded
        if mode in MODES and checksum != migration.checksum(mode):
            log.warning("migrate.edited_after_apply version=%04d name=%s", migration.version, name)
