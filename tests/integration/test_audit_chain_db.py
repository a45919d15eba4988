"""The hash-chained audit log in PostgreSQL: appends stay linear under concurrency, old rows are sealed, the log
is append-only, and `telemed-cloud audit verify` finds every kind of tampering."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cloud.api.audit import record_transition, record_transition_sync
from cloud.api.auth.models import Role, User
from cloud.audit import store
from cloud.audit.chain import Draft
from cloud.db.migrate import migrate
from deploy import pgadmin
from deploy.postgres import PostgresEndpoint
from tests.integration.test_identity_support import database_copy, owner_execute, run_cli

pytestmark = pytest.mark.integration

TEMPLATE_DATABASE = "telemed_template"
DOCTOR = User(user_id=uuid.uuid4(), username="doc-a", display_name="Doc A", roles=frozenset({Role.COUNTY_DOCTOR}),
              site_id="site-a")
UNLOCK = "ALTER TABLE access_log DISABLE TRIGGER access_log_append_only"


@pytest.fixture(scope="module")
def chained(postgres: PostgresEndpoint) -> Iterator[str]:
    """A migrated database holding a 12-entry chain (a template: tests tamper with copies of it)."""
    name = f"chain_{uuid.uuid4().hex[:16]}"
    admin = postgres.with_database("postgres").admin_url
    pgadmin.ensure_database(admin, name, owner=postgres.user, template=TEMPLATE_DATABASE)
    url = postgres.with_database(name).url
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        conn.execute("INSERT INTO users (user_id, username, password_hash, roles, site_id) VALUES"
                     " (%s, 'doc-a', 'x', '{}', NULL)", (DOCTOR.user_id,))
        for index in range(12):
            store.append_sync(conn, [Draft(username="doc-a", user_id=DOCTOR.user_id, event="vitals.latest",
                                           patient_id=f"P-{index % 3}", detail={"n": index}, ip="10.1.1.1")])
    try:
        yield name
    finally:
        pgadmin.drop_database(admin, name)


@pytest.fixture
def copy(postgres: PostgresEndpoint, chained: str) -> Iterator[PostgresEndpoint]:
    with database_copy(postgres, chained) as endpoint:
        yield endpoint


def verify(url: str, monkeypatch: pytest.MonkeyPatch, *extra: str) -> tuple[int, str, str]:
    return run_cli(["audit", "verify", *extra], url=url, monkeypatch=monkeypatch)


def test_an_untouched_chain_verifies(copy: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    status, out, err = verify(copy.url, monkeypatch)
    assert status == 0, err
    assert out.startswith("audit chain intact: 12 entries; head 12 ")


@pytest.mark.parametrize(("tampering", "broken_at", "problem"), [
    (["UPDATE access_log SET patient_id = 'P-9' WHERE id = 5"], 5, "content"),
    (["UPDATE access_log SET detail = '{\"n\": 40}' WHERE id = 4"], 4, "content"),
    (["UPDATE access_log SET at = at + interval '1 second' WHERE id = 9"], 9, "content"),
    (["DELETE FROM access_log WHERE id = 6"], 7, "link"),
    # Reorder: entries 3 and 4 swap places (ids exchanged through a free id).
    (["UPDATE access_log SET id = 1000 WHERE id = 3", "UPDATE access_log SET id = 3 WHERE id = 4",
      "UPDATE access_log SET id = 4 WHERE id = 1000"], 3, None),
    (["DELETE FROM access_log WHERE id >= 11"], 12, "head"),
    (["DELETE FROM audit_chain_head"], None, "head"),
    (["UPDATE access_log SET prev_hash = NULL, entry_hash = NULL WHERE id = 2"], 2, "unsealed"),
])
def test_every_tampering_is_reported_at_the_first_broken_entry(
    copy: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch, tampering: list[str], broken_at: int | None,
    problem: str | None,
) -> None:
    owner_execute(copy.url, UNLOCK, *tampering)
    status, out, err = verify(copy.url, monkeypatch, "--json")
    assert status == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["broken"]["seq"] == broken_at
    if problem is not None:
        assert report["broken"]["problem"] == problem
    status, _, err = verify(copy.url, monkeypatch)
    assert status == 1
    assert f"BROKEN at entry {broken_at}" in err


def test_an_anchor_exposes_a_consistently_rewritten_chain(copy: PostgresEndpoint,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with psycopg.connect(copy.url) as conn:
        head = store.read_head(conn)
        assert head is not None
        entry5 = conn.execute("SELECT entry_hash FROM access_log WHERE id = 5").fetchone()
    assert entry5 is not None
    anchor = f"5:{bytes(entry5[0]).hex()}"
    assert verify(copy.url, monkeypatch, "--anchor", anchor)[0] == 0
    # Rewrite everything from scratch with one entry changed, hashes recomputed: self-consistent, but not anchored.
    with psycopg.connect(copy.url, autocommit=True) as conn:
        rows = [row for row in conn.execute("SELECT id, at, username, event, patient_id, detail, ip FROM access_log"
                                            " ORDER BY id").fetchall()]
    owner_execute(copy.url, UNLOCK, "DELETE FROM access_log", "DELETE FROM audit_chain_head")
    with psycopg.connect(copy.url, autocommit=True) as conn:
        for seq, at, username, event, patient_id, detail, ip in rows:
            conn.execute("INSERT INTO access_log (id, at, username, event, patient_id, detail, ip)"
                         " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (seq, at, username, event, "P-X" if seq == 2 else patient_id, psycopg.types.json.Jsonb(detail),
                          ip))
        store.append_sync(conn, [Draft(username="intruder", event="noop")])  # seals the forged rows
    assert verify(copy.url, monkeypatch)[0] == 0
    status, _, err = verify(copy.url, monkeypatch, "--anchor", anchor)
    assert status == 1
    assert "BROKEN at entry 5 (anchor)" in err


def test_the_log_is_append_only_for_the_application(copy: PostgresEndpoint) -> None:
    for statement in ("UPDATE access_log SET event = 'x' WHERE id = 1", "DELETE FROM access_log WHERE id = 1",
                      "TRUNCATE access_log"):
        with psycopg.connect(copy.url, autocommit=True) as conn, pytest.raises(
                psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement.encode())


def test_concurrent_appenders_build_one_linear_chain(copy: PostgresEndpoint,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with psycopg.connect(copy.url, autocommit=True) as conn:
                for n in range(15):
                    record_transition_sync(conn, entity="alert", entity_id=f"A-{index}", from_state=str(n),
                                           to_state=str(n + 1), actor=f"worker-{index}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    status, out, err = verify(copy.url, monkeypatch)
    assert status == 0, err
    assert out.startswith("audit chain intact: 102 entries; head 102 ")  # 12 + 6 workers x 15, no gaps


def test_rows_written_before_the_chain_existed_are_sealed_by_the_next_append(
    postgres: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with database_copy(postgres, TEMPLATE_DATABASE) as endpoint, psycopg.connect(endpoint.url,
                                                                                   autocommit=True) as conn:
        migrate(conn)
        for n in range(3):  # what the pre-0004 API wrote: no hashes
            conn.execute("INSERT INTO access_log (username, event, patient_id, detail) VALUES ('old', 'vitals.latest',"
                         " 'P-1', %s)", (psycopg.types.json.Jsonb({"n": n}),))
        status, out, _ = verify(endpoint.url, monkeypatch)
        assert (status, out.strip()) == (0, "audit chain intact: 0 entries, 3 pending; empty")
        store.append_sync(conn, [Draft(username="new", event="vitals.latest")])
        status, out, _ = verify(endpoint.url, monkeypatch)
        assert status == 0
        assert out.startswith("audit chain intact: 4 entries; head 4 ")
        unsealed = conn.execute("SELECT count(*) FROM access_log WHERE entry_hash IS NULL").fetchone()
        assert unsealed == (0,)


def test_details_survive_jsonb_and_still_verify(copy: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    tricky: dict[str, Any] = {
        "floats": [1e16, 1.5e-7, 0.1, -0.0, 2.5e300, 0.30000000000000004, 100.0],
        "ints": [0, -1, 2**70], "text": "病人 \"quoted\" \\ \n\t\u2028 é",
        "nested": {"b": [None, True, False], "a": {}}, "empty": [],
    }
    with psycopg.connect(copy.url, autocommit=True) as conn:
        store.append_sync(conn, [Draft(username="doc-a", event="fhir.export", detail=tricky)])
    assert verify(copy.url, monkeypatch)[0] == 0


def test_transitions_are_recorded_in_the_callers_transaction(copy: PostgresEndpoint) -> None:
    async def scenario() -> list[store.AuditRow]:
        async with await psycopg.AsyncConnection.connect(copy.url, autocommit=True) as conn:
            async with conn.transaction():
                await record_transition(conn, entity="consultation", entity_id="C-1", from_state="requested",
                                        to_state="offered", actor=DOCTOR, detail={"expert": "e-1"}, patient_id="P-1")
            with pytest.raises(RuntimeError):
                async with conn.transaction():
                    await record_transition(conn, entity="consultation", entity_id="C-1", from_state="offered",
                                            to_state="accepted", actor="sla-scheduler")
                    raise RuntimeError("the change itself failed")  # so its audit entry rolls back with it
            return await store.search(conn, store.AuditQuery(entity="consultation", entity_id="C-1"))

    rows = asyncio.run(scenario())
    assert [(r.entry.draft.event, r.entry.draft.username, dict(r.entry.draft.detail)) for r in rows] == [
        ("consultation.transition", "doc-a", {"expert": "e-1", "from": "requested", "to": "offered"})]
    assert rows[0].entry.draft.patient_id == "P-1"
    assert rows[0].entry.at <= dt.datetime.now(dt.UTC)


def test_an_append_refuses_to_continue_a_chain_whose_head_was_removed(copy: PostgresEndpoint) -> None:
    owner_execute(copy.url, "DELETE FROM audit_chain_head")
    with psycopg.connect(copy.url, autocommit=True) as conn, pytest.raises(store.AuditChainError):
        store.append_sync(conn, [Draft(username="doc-a", event="vitals.latest")])
    with psycopg.connect(copy.url) as conn:
        assert store.read_head(conn) is None
        assert conn.execute("SELECT count(*) FROM access_log").fetchone() == (12,)


def test_a_writer_that_skips_the_lock_cannot_fork_the_chain(
    copy: PostgresEndpoint, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two appends that read the same head: the second to move it fails and leaves nothing behind."""
    with psycopg.connect(copy.url, autocommit=True) as first, first.transaction():
        store.append_sync(first, [Draft(username="first", event="vitals.latest")])  # head moved, not committed
        outcome: list[BaseException | None] = []

        def rogue() -> None:
            try:
                with psycopg.connect(copy.url, autocommit=True) as second:
                    monkeypatch.setattr(store, "LOCK_KEY", store.LOCK_KEY + 1)  # not the chain's lock
                    store.append_sync(second, [Draft(username="rogue", event="vitals.latest")])
                outcome.append(None)
            except BaseException as exc:  # surfaced below
                outcome.append(exc)

        thread = threading.Thread(target=rogue)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # blocked on the head row the first append holds
    thread.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], store.AuditChainError)
    status, out, _ = verify(copy.url, monkeypatch)
    assert status == 0
    assert out.startswith("audit chain intact: 13 entries; head 13 ")
    with psycopg.connect(copy.url) as conn:
        assert conn.execute("SELECT count(*) FROM access_log WHERE username = 'rogue'").fetchone() == (0,)
