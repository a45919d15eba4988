"""Loading migrations (pure): file naming, mode sections and sibling files, and the shipped SQL's content.

TimescaleDB is not installed here, so its SQL is checked for the statements and column names it must carry;
its aggregate queries are also executed on plain PostgreSQL by tests/integration/test_ingest_store.py.
"""

from __future__ import annotations

import re

import pytest

from cloud.db.migrate import MIGRATIONS_DIR, MigrationError, build_migrations, load_migrations, pending, split_sections
from proto.vocabulary import VOCABULARY

ROLLUP_COLUMNS = ("bucket", "patient_id", "kind_id", "min", "max", "sum", "count")


def test_sections_split_on_mode_markers() -> None:
    text = "CREATE TABLE a ();\n-- mode: plain\nCREATE TABLE p ();\n-- mode: timescale\nSELECT 1;\n-- mode: all\nx;"

    assert split_sections(text) == {"all": "CREATE TABLE a ();\nx;", "plain": "CREATE TABLE p ();",
                                    "timescale": "SELECT 1;"}


def test_a_version_combines_its_main_file_sections_and_mode_files() -> None:
    migrations = build_migrations({
        "0002_more.sql": "ALTER x;\n-- mode: plain\nPLAIN SECTION;",
        "0001_core.sql": "COMMON;",
        "0001_core.plain.sql": "PLAIN FILE;",
        "0001_core.timescale.sql": "TS FILE;",
    })

    assert [(m.version, m.name) for m in migrations] == [(1, "core"), (2, "more")]
    assert migrations[0].sql_for("plain") == "COMMON;\n\nPLAIN FILE;\n"
    assert migrations[0].sql_for("timescale") == "COMMON;\n\nTS FILE;\n"
    assert migrations[1].sql_for("plain") == "ALTER x;\n\nPLAIN SECTION;\n"
    assert migrations[1].sql_for("timescale") == "ALTER x;\n"
    assert migrations[0].checksum("plain") != migrations[0].checksum("timescale")


@pytest.mark.parametrize("files, problem", [
    ({"1_core.sql": ""}, "is not NNNN_name"),
    ({"0001_core.sql": "", "0001_other.sql": ""}, "claimed by"),
    ({"0003_x.plain.sql": "A;"}, "without its main file"),
    ({"0001_core.sql": "", "0001_core.plain.sql": "-- mode: timescale\nX;"}, "cannot contain mode sections"),
])
def test_bad_migration_sets_are_refused(files: dict[str, str], problem: str) -> None:
    with pytest.raises(MigrationError, match=problem):
        build_migrations(files)


def test_pending_is_what_is_not_applied_in_version_order() -> None:
    migrations = build_migrations({"0003_c.sql": "", "0001_a.sql": "", "0002_b.sql": ""})

    assert [m.version for m in pending(migrations, {1, 3})] == [2]


def test_shipped_migrations_load_and_start_with_the_core_schema() -> None:
    migrations = load_migrations()

    assert migrations[0].version == 1 and migrations[0].name == "core"
    assert "PARTITION BY RANGE (time)" in migrations[0].sql_for("plain")
    assert "create_hypertable" in migrations[0].sql_for("timescale")
    assert "PARTITION BY" not in migrations[0].sql_for("timescale")


def _statement(sql: str, start: str) -> str:
    match = re.search(re.escape(start) + r".*?;", sql, re.DOTALL)
    assert match, f"no statement starting {start!r}"
    return match.group(0)


def test_timescale_sql_declares_hypertable_compression_aggregates_and_retention() -> None:
    sql = (MIGRATIONS_DIR / "0001_core.timescale.sql").read_text()

    assert re.search(r"create_hypertable\('vitals', 'time'", sql)
    compress = _statement(sql, "ALTER TABLE vitals SET (")
    assert "timescaledb.compress," in compress and "compress_segmentby = 'patient_id, kind_id'" in compress
    assert "add_compression_policy('vitals'" in sql
    assert "add_retention_policy('vitals'" in sql
    for view, width in (("vitals_1m", "1 minute"), ("vitals_1h", "1 hour")):
        create = _statement(sql, f"CREATE MATERIALIZED VIEW {view}")
        assert "timescaledb.continuous" in create and "WITH NO DATA" in create
        assert f"time_bucket(INTERVAL '{width}', time) AS bucket" in create
        aliases = re.findall(r"\bAS (\w+)", create.split("FROM vitals")[0])
        selected = [a for a in aliases if a in ROLLUP_COLUMNS] + ["patient_id", "kind_id"]
        assert sorted(set(selected)) == sorted(ROLLUP_COLUMNS)
        assert f"add_continuous_aggregate_policy('{view}'" in sql
    assert "CREATE FUNCTION telemed_maintain_vitals(p_now timestamptz, p_ahead_days integer, " \
           "p_retention_days integer)" in sql


def test_both_modes_define_the_same_upkeep_function() -> None:
    signature = re.compile(r"CREATE FUNCTION telemed_maintain_vitals\(([^)]*)\)\s*RETURNS TABLE \(([^)]*)\)")
    plain = signature.search((MIGRATIONS_DIR / "0001_core.plain.sql").read_text())
    timescale = signature.search((MIGRATIONS_DIR / "0001_core.timescale.sql").read_text())

    assert plain and timescale and plain.groups() == timescale.groups()


def test_vital_kinds_seed_covers_the_vocabulary() -> None:
    from cloud.db.migrate import vital_kind_rows

    rows = vital_kind_rows()

    assert [r[1] for r in rows] == [k.name for k in sorted(VOCABULARY.values(), key=lambda k: k.wire_id)]
    assert ("heart_rate", "/min", "8867-4") in {(name, unit, loinc) for _, name, unit, loinc in rows}
