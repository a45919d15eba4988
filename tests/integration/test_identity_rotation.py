"""`telemed-cloud keys rotate|status` against a real PostgreSQL: rotation re-encrypts every patient, data stays
readable (also by an API process that still holds the old ring), and mismatched key files fail loudly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.identity.crypto import KeyRing, ciphertext_version
from cloud.identity.keys import read_ring_file, write_ring_file
from deploy.postgres import PostgresEndpoint
from tests.integration.test_api_support import bearer, login, scratch_database, seed_world
from tests.integration.test_identity_support import LI_SI, WANG_WU, ZHANG_SAN, identity_client, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def db(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    with scratch_database(postgres) as endpoint:
        seed_world(endpoint.url)
        yield endpoint


def identity_columns(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT patient_id, name_enc, national_id_enc, national_id_bidx, identity_key_version,"
                            " index_key_version FROM patients WHERE identity_key_version IS NOT NULL").fetchall()
    return {row[0]: tuple(bytes(v) if isinstance(v, bytes | memoryview) else v for v in row[1:]) for row in rows}


def test_rotation_reencrypts_every_patient_and_keeps_them_readable(
    db: PostgresEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys_dir = tmp_path / "keys"
    with identity_client(db.url, keys_dir) as client:
        doctor = login(client, "doc-a")
        ids = {}
        for person in (ZHANG_SAN, LI_SI, WANG_WU):
            response = client.post("/api/patients", json=person, headers=bearer(doctor))
            assert response.status_code == 201
            ids[response.json()["patient_id"]] = person
        before = identity_columns(db.url)
        assert {row[3] for row in before.values()} == {1}

        status, out, err = run_cli(["keys", "rotate", "--index", "--batch", "2"], url=db.url, keys_dir=keys_dir,
                                   monkeypatch=monkeypatch)
        assert status == 0, err
        assert "data v2, index v2; re-encrypted 3 patients" in out

        after = identity_columns(db.url)
        assert set(after) == set(before)
        for patient_id, (name_enc, id_enc, bidx, data_version, index_version) in after.items():
            assert (data_version, index_version) == (2, 2)
            assert ciphertext_version(name_enc) == 2
            assert name_enc != before[patient_id][0]
            assert id_enc != before[patient_id][1]
            assert bidx != before[patient_id][2]
        ring = read_ring_file(keys_dir / "identity_keys.json")
        assert sorted(ring.data) == [1, 2]  # the old version stays for backups

        # The running API still holds the version-1 ring: it re-reads the file on meeting version 2.
        for patient_id, person in ids.items():
            read = client.get(f"/api/patients/{patient_id}/identity", headers=bearer(doctor))
            assert read.status_code == 200
            assert read.json()["name"] == person["name"]
        found = client.get("/api/patients/lookup", params={"national_id": LI_SI["national_id"]},
                           headers=bearer(doctor))
        assert [p["name"] for p in found.json()["patients"]] == [LI_SI["name"]]

    status, out, _ = run_cli(["keys", "status"], url=db.url, keys_dir=keys_dir, monkeypatch=monkeypatch)
    assert status == 0
    assert "data key v1: 0 patients" in out
    assert "data key v2 (current): 3 patients" in out
    assert "index key v2 (current): 3 patients" in out

    status, out, _ = run_cli(["keys", "rotate", "--resume"], url=db.url, keys_dir=keys_dir, monkeypatch=monkeypatch)
    assert status == 0
    assert "re-encrypted 0 patients" in out
    with psycopg.connect(db.url) as conn:
        events = conn.execute("SELECT username, detail->>'from', detail->>'to' FROM access_log"
                              " WHERE event = 'identity_keys.transition' ORDER BY id").fetchall()
    assert events == [("system:keys-rotate", "data:1,index:1", "data:2,index:2"),
                      ("system:keys-rotate", "data:2,index:2", "data:2,index:2")]


def test_a_process_with_another_key_file_refuses_to_touch_identity(
    db: PostgresEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with identity_client(db.url, tmp_path / "right") as client:
        doctor = login(client, "doc-a")
        patient_id = client.post("/api/patients", json=ZHANG_SAN, headers=bearer(doctor)).json()["patient_id"]

    with identity_client(db.url, tmp_path / "wrong") as client:
        doctor = login(client, "doc-a")
        read = client.get(f"/api/patients/{patient_id}/identity", headers=bearer(doctor))
        assert read.status_code == 500
        assert "identity keys" in read.json()["detail"]
        assert client.post("/api/patients", json=LI_SI, headers=bearer(doctor)).status_code == 500
    assert not (tmp_path / "wrong" / "identity_keys.json").exists()  # never created over a keyed database

    status, _, err = run_cli(["keys", "status"], url=db.url, keys_dir=tmp_path / "wrong", monkeypatch=monkeypatch)
    assert status == 1
    assert "no identity key ring" in err
    write_ring_file(tmp_path / "wrong" / "identity_keys.json", KeyRing.generate())
    status, _, err = run_cli(["keys", "rotate"], url=db.url, keys_dir=tmp_path / "wrong", monkeypatch=monkeypatch)
    assert status == 1
    assert "differs from the one the database was written with" in err
    assert sorted(read_ring_file(tmp_path / "wrong" / "identity_keys.json").data) == [1]  # nothing rotated
