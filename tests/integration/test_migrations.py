"""Migrations and storage upkeep against a real PostgreSQL (plain mode here; TimescaleDB is not installed).

Covers: the schema of the contract, idempotent and concurrent runs, the vital_kinds seed, daily
partitions created ahead and dropped after retention (with an injected "now"), rows parked in the
default partition moved into their day, and the TimescaleDB continuous-aggregate query agreeing with
the plain mode's rollup tables.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cloud.db import migrate
from cloud.db.migrate import MIGRATIONS_DIR, load_migrations
from deploy.postgres import PostgresEndpoint
from proto.vocabulary import VOCABULARY

pytestmark = pytest.mark.integration

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


@pytest.fixture
def conn(database: PostgresEndpoint) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database.url, autocommit=True) as connection:
        yield connection


def _partitions(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'vitals'::regclass ORDER BY c.relname"
    ).fetchall()
    return [r[0] for r in rows]


def _columns(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s", (table,)
    ).fetchall()
    return {name: kind for name, kind in rows}


def test_migrate_creates_the_contract_schema_in_plain_mode(conn: psycopg.Connection[Any]) -> None:
    report = migrate.migrate(conn, now=NOW, ahead_days=3, retention_days=30)

    assert report.mode == "plain"
    assert 1 in report.applied
    assert _columns(conn, "vitals") == {
        "time": "timestamp with time zone", "patient_id": "text", "kind_id": "smallint",
        "value": "double precision", "device_id": "text", "quality": "integer", "edge_id": "text",
    }
    for rollup in ("vitals_1m", "vitals_15m", "vitals_1h"):
        assert _columns(conn, rollup) == {
            "bucket": "timestamp with time zone", "patient_id": "text", "kind_id": "smallint",
            "min": "double precision", "max": "double precision", "sum": "double precision", "count": "bigint",
        }
    for table in ("sites", "edges", "patients", "devices", "device_assignments", "vital_kinds", "ingested_messages",
                  "events", "edge_alerts", "dicom_manifests", "edge_status", "dead_letters"):
        assert _columns(conn, table), f"missing table {table}"
    assert migrate.storage_mode(conn) == "plain"


def test_migrate_seeds_vital_kinds_from_the_vocabulary(conn: psycopg.Connection[Any]) -> None:
    migrate.migrate(conn, now=NOW)
    conn.execute("UPDATE vital_kinds SET unit = 'wrong' WHERE name = 'spo2'")

    migrate.migrate(conn, now=NOW)

    rows = conn.execute("SELECT kind_id, name, unit, loinc FROM vital_kinds ORDER BY kind_id").fetchall()
    assert rows == [(k.wire_id, k.name, k.unit, k.loinc) for k in sorted(VOCABULARY.values(), key=lambda k: k.wire_id)]


def test_second_run_applies_nothing(conn: psycopg.Connection[Any]) -> None:
    first = migrate.migrate(conn, now=NOW)
    second = migrate.migrate(conn, now=NOW)

    assert second.applied == ()
    assert second.current == first.current == max(m.version for m in load_migrations())


def test_concurrent_migrators_apply_each_migration_once(database: PostgresEndpoint) -> None:
    errors: list[BaseException] = []
    reports: list[migrate.MigrationReport] = []

    def run() -> None:
        try:
            with psycopg.connect(database.url, autocommit=True) as connection:
                reports.append(migrate.migrate(connection, now=NOW))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    applied = [v for r in reports for v in r.applied]
    assert sorted(applied) == sorted({m.version for m in load_migrations()})


def test_partitions_are_created_ahead_and_expired_ones_dropped(conn: psycopg.Connection[Any]) -> None:
    migrate.migrate(conn, now=NOW, ahead_days=3, retention_days=5)
    assert _partitions(conn) == ["vitals_default"] + [f"vitals_p202603{d:02d}" for d in range(8, 14)]
    conn.execute("INSERT INTO vitals (time, patient_id, kind_id, value, edge_id) VALUES "
                 "('2026-03-10 12:00Z', 'p1', 1, 70, 'e1'), ('2026-03-13 23:59:59.999999Z', 'p1', 1, 71, 'e1')")
    assert conn.execute("SELECT count(*) FROM vitals_p20260313").fetchone() == (1,)

    later = NOW + dt.timedelta(days=6)  # 2026-03-16: retention 5 days keeps 03-11 onwards
    actions = migrate.maintain(conn, now=later, ahead_days=3, retention_days=5)

    assert [a for a in actions if a[0] == "dropped"] == [("dropped", f"vitals_p202603{d:02d}") for d in (8, 9, 10)]
    assert _partitions(conn) == ["vitals_default"] + [f"vitals_p202603{d}" for d in range(11, 20)]
    assert conn.execute("SELECT count(*) FROM vitals").fetchone() == (1,)


def test_rows_without_a_partition_are_kept_and_moved_into_their_day_later(conn: psycopg.Connection[Any]) -> None:
    migrate.migrate(conn, now=NOW, ahead_days=1, retention_days=30)
    # An edge back after a long outage: its day (03-02) has no partition; and a clock far in the future.
    conn.execute("INSERT INTO vitals (time, patient_id, kind_id, value, edge_id) VALUES "
                 "('2026-03-02 08:00Z', 'p1', 1, 70, 'e1'), ('2026-04-20 08:00Z', 'p1', 1, 72, 'e1')")
    assert conn.execute("SELECT count(*) FROM vitals_default").fetchone() == (2,)

    actions = migrate.maintain(conn, now=NOW, ahead_days=1, retention_days=30)

    assert ("created", "vitals_p20260302") in actions
    assert conn.execute("SELECT count(*) FROM vitals_p20260302").fetchone() == (1,)
    # Beyond the ahead window it stays parked (still stored and queryable) until its partition is due.
    assert conn.execute("SELECT count(*) FROM vitals_default").fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM vitals").fetchone() == (2,)


def test_expired_message_ids_are_forgotten(conn: psycopg.Connection[Any]) -> None:
    migrate.migrate(conn, now=NOW)
    conn.execute("INSERT INTO ingested_messages (message_id, edge_id, stream, sequence, received_at) VALUES "
                 "(gen_random_uuid(), 'e1', 'vitals', 1, %s), (gen_random_uuid(), 'e1', 'vitals', 2, %s)",
                 (NOW - dt.timedelta(days=40), NOW - dt.timedelta(days=1)))

    actions = migrate.maintain(conn, now=NOW, ahead_days=1, retention_days=30, dedupe_days=30)

    assert ("expired_message_ids", "1") in actions
    assert conn.execute("SELECT sequence FROM ingested_messages").fetchall() == [(2,)]


ROLLUPS = {"1 minute": "vitals_1m", "15 minutes": "vitals_15m", "1 hour": "vitals_1h"}


def _cagg_query(width: str) -> str:
    """The SELECT of the timescale continuous aggregate for `width` (a key of ROLLUPS)."""
    text = "\n".join(p.read_text() for p in sorted(MIGRATIONS_DIR.glob("*.timescale.sql")))
    name = ROLLUPS[width]
    match = re.search(rf"CREATE MATERIALIZED VIEW {name}\s+WITH \([^)]*\) AS\s+(SELECT .*?)\s+WITH NO DATA;", text,
                      re.DOTALL)
    assert match, f"no continuous aggregate {name}"
    return match.group(1)


def test_timescale_continuous_aggregates_compute_what_the_plain_rollups_hold(conn: psycopg.Connection[Any]) -> None:
    """The cagg SELECTs run on plain PostgreSQL with time_bucket stood in by date_bin (same UTC-aligned buckets
    for minutes and hours); their rows must equal rollup tables maintained like the ingest writer does."""
    migrate.migrate(conn, now=NOW, ahead_days=1, retention_days=30)
    conn.execute("CREATE FUNCTION pg_temp.time_bucket(w interval, t timestamptz) RETURNS timestamptz "
                 "LANGUAGE sql IMMUTABLE AS $$ SELECT date_bin(w, t, timestamptz '2000-01-01 00:00Z') $$")
    conn.execute(
        "INSERT INTO vitals (time, patient_id, kind_id, value, edge_id) "
        "SELECT timestamptz '2026-03-10 14:00Z' + make_interval(secs => g * 7.3), 'p' || (g % 3), 1 + g % 2, "
        "       60 + (g * 37 % 41), 'e1' FROM generate_series(0, 999) AS g"
    )
    for width, table in ROLLUPS.items():
        conn.execute(f"DELETE FROM {table}")  # filled from vitals_1m by migration 0008: recompute from the rows
        conn.execute(
            f"INSERT INTO {table} SELECT date_bin(interval '{width}', time, timestamptz '2000-01-01 00:00Z'), "
            "patient_id, kind_id, min(value), max(value), sum(value), count(*) FROM vitals GROUP BY 1, 2, 3"
        )
        query = _cagg_query(width).replace("time_bucket(", "pg_temp.time_bucket(")
        cagg = conn.execute(f"SELECT bucket, patient_id, kind_id, min, max, sum, count FROM ({query}) q "
                            "ORDER BY 1, 2, 3").fetchall()
        plain = conn.execute(f"SELECT bucket, patient_id, kind_id, min, max, sum, count FROM {table} "
                             "ORDER BY 1, 2, 3").fetchall()
        assert cagg == plain
        assert len(plain) > 3


def test_cli_migrate_and_maintain(database: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from cloud import cli

    monkeypatch.setenv("TELEMED_DATABASE__URL", database.url)
    monkeypatch.setenv("TELEMED_PARTITIONS__AHEAD_DAYS", "2")

    assert cli.main(["migrate"]) == 0
    assert "(plain mode); applied: 0001" in capsys.readouterr().out
    assert cli.main(["maintain", "--now", "2030-01-01T12:00:00Z"]) == 0

    out = capsys.readouterr().out
    assert "created: vitals_p20300103" in out and "dropped: vitals_p" in out
    assert cli.main(["maintain", "--now", "2030-01-01T12:00:00Z"]) == 0
    assert capsys.readouterr().out.strip() == "nothing to do"


def test_migration_0008_fills_latest_values_and_the_quarter_hour_rollup_from_existing_data(
    conn: psycopg.Connection[Any],
) -> None:
    migrate.migrate(conn, migrations=[m for m in load_migrations() if m.version < 8], ahead_days=1)
    # Two hours of samples ending a minute ago, and one older than the latest values' 8-day backfill.
    conn.execute(
        "INSERT INTO vitals (time, patient_id, kind_id, value, quality, edge_id) "
        "SELECT now() - interval '1 minute' - make_interval(secs => g * 7.3), 'p' || (g % 3), 1 + g % 2, "
        "       60 + (g * 37 % 41), g % 5, 'e1' FROM generate_series(0, 999) AS g"
    )
    conn.execute("INSERT INTO vitals (time, patient_id, kind_id, value, edge_id) "
                 "VALUES (now() - interval '9 days', 'p-old', 1, 70, 'e1')")
    conn.execute("INSERT INTO vitals_1m SELECT date_bin('1 minute', time, 'epoch'), patient_id, kind_id, "
                 "min(value), max(value), sum(value), count(*) FROM vitals GROUP BY 1, 2, 3")

    report = migrate.migrate(conn, ahead_days=1)

    assert 8 in report.applied
    newest = conn.execute("SELECT DISTINCT ON (patient_id, kind_id) patient_id, kind_id, time, value, quality "
                          "FROM vitals WHERE patient_id <> 'p-old' ORDER BY patient_id, kind_id, time DESC").fetchall()
    assert conn.execute("SELECT patient_id, kind_id, time, value, quality FROM vitals_latest "
                        "ORDER BY 1, 2").fetchall() == newest
    assert len(newest) == 6
    quarter = conn.execute("SELECT date_bin('15 minutes', time, 'epoch'), patient_id, kind_id, min(value), "
                           "max(value), sum(value), count(*) FROM vitals GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()
    stored = conn.execute("SELECT bucket, patient_id, kind_id, min, max, sum, count FROM vitals_15m "
                          "ORDER BY 1, 2, 3").fetchall()
    assert [r[:5] + r[6:] for r in stored] == [r[:5] + r[6:] for r in quarter]
    assert [r[5] for r in stored] == pytest.approx([r[5] for r in quarter], rel=1e-12)
