"""The patients registry against a real PostgreSQL: registration, decrypted reads, updates, blind-index lookups,
site scoping, auditing, and names that a database dump does not reveal."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from deploy.binaries import find_postgres_bin
from deploy.postgres import PostgresEndpoint
from tests.integration.test_api_support import bearer, login, scratch_database, seed_world
from tests.integration.test_identity_support import LI_SI, WANG_WU, ZHANG_SAN, identity_client, national_id

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def db(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    with scratch_database(postgres) as endpoint:
        seed_world(endpoint.url)
        yield endpoint


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("identity-keys")


@pytest.fixture(scope="module")
def client(db: PostgresEndpoint, keys_dir: Path) -> Iterator[TestClient]:
    with identity_client(db.url, keys_dir) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def tokens(client: TestClient) -> dict[str, str]:
    return {name: login(client, name) for name in ("admin", "doc-a", "doc-b", "expert", "oncall-a")}


def register(client: TestClient, token: str, **body: Any) -> Any:
    return client.post("/api/patients", json=body, headers=bearer(token))


def audit_rows(url: str, after: int) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT username, event, patient_id, detail FROM access_log WHERE id > %s ORDER BY id",
                            (after,)).fetchall()


def last_audit_id(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM access_log").fetchone()
    assert row is not None
    return int(row[0])


def test_a_county_doctor_registers_a_patient_and_reads_the_identity_back(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint, keys_dir: Path,
) -> None:
    before = last_audit_id(db.url)
    response = register(client, tokens["doc-a"], ward="ICU", bed="7", **ZHANG_SAN)
    assert response.status_code == 201, response.text
    created = response.json()
    patient_id = created["patient_id"]
    assert patient_id.startswith("P-")
    assert created["site_id"] == "site-a"
    assert (created["sex"], created["birth_date"], created["birth_year"]) == ("male", "1980-01-01", 1980)
    assert (keys_dir / "identity_keys.json").exists()

    read = client.get(f"/api/patients/{patient_id}/identity", headers=bearer(tokens["doc-a"]))
    assert read.status_code == 200
    assert {k: read.json()[k] for k in ("name", "national_id", "phone", "ward", "bed")} == {
        "name": "张三丰", "national_id": ZHANG_SAN["national_id"], "phone": "13800138000", "ward": "ICU", "bed": "7"}

    rows = audit_rows(db.url, before)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("doc-a", "patient.register", patient_id), ("doc-a", "patient.identity.read", patient_id)]
    assert rows[0][3]["fields"] == ["birth_date", "name", "national_id", "phone", "sex"]
    assert "张三丰" not in str(rows) and ZHANG_SAN["national_id"] not in str(rows)


def test_identity_is_for_doctors_of_the_patients_own_site(client: TestClient, tokens: dict[str, str]) -> None:
    patient_id = register(client, tokens["doc-a"], **WANG_WU).json()["patient_id"]
    path = f"/api/patients/{patient_id}/identity"
    assert client.get(path, headers=bearer(tokens["oncall-a"])).status_code == 200
    assert client.get(path, headers=bearer(tokens["doc-b"])).status_code == 404  # as if it did not exist
    assert client.get(path, headers=bearer(tokens["expert"])).status_code == 403
    assert client.get(path, headers=bearer(tokens["admin"])).status_code == 403
    assert client.get(path).status_code == 401
    assert client.patch(path, json={"phone": "13700000000"}, headers=bearer(tokens["doc-b"])).status_code == 404
    assert client.patch(path, json={"phone": "13700000000"}, headers=bearer(tokens["oncall-a"])).status_code == 403
    assert register(client, tokens["oncall-a"], name="某人").status_code == 403
    assert register(client, tokens["admin"], name="某人").status_code == 403


def test_invalid_identity_is_refused_naming_the_field(client: TestClient, tokens: dict[str, str]) -> None:
    bad_check = ZHANG_SAN["national_id"][:17] + ("0" if ZHANG_SAN["national_id"][17] != "0" else "1")
    response = register(client, tokens["doc-a"], name="赵六", national_id=bad_check)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "national_id"]
    assert bad_check not in response.text
    response = register(client, tokens["doc-a"], name="赵六", national_id=WANG_WU["national_id"], sex="female")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "sex"]
    assert register(client, tokens["doc-a"], name="赵六", phone="12345").status_code == 422
    assert register(client, tokens["doc-a"], name="赵六", patient_id="bad id!").status_code == 422
    assert register(client, tokens["doc-a"], name="赵六", surname="赵").status_code == 422


def test_a_person_is_registered_once_per_site(client: TestClient, tokens: dict[str, str]) -> None:
    first = register(client, tokens["doc-a"], **LI_SI)
    assert first.status_code == 201
    again = register(client, tokens["doc-a"], **{**LI_SI, "national_id": LI_SI["national_id"].lower()})
    assert again.status_code == 409
    assert first.json()["patient_id"] in again.json()["detail"]
    elsewhere = register(client, tokens["doc-b"], **LI_SI)  # the same person at the other county hospital
    assert elsewhere.status_code == 201


def test_lookup_by_national_id_or_phone_is_exact_and_site_scoped(client: TestClient, tokens: dict[str, str]) -> None:
    person = {"name": "孙悟空", "national_id": national_id("32010219850505201"), "phone": "+86 135-0000-1111"}
    at_a = register(client, tokens["doc-a"], **person).json()["patient_id"]
    at_b = register(client, tokens["doc-b"], **person).json()["patient_id"]

    def lookup(user: str, **query: str) -> list[str]:
        response = client.get("/api/patients/lookup", params=query, headers=bearer(tokens[user]))
        assert response.status_code == 200, response.text
        return [p["patient_id"] for p in response.json()["patients"]]

    assert lookup("doc-a", national_id=person["national_id"]) == [at_a]
    assert lookup("doc-a", national_id=" " + person["national_id"].lower()) == [at_a]
    assert lookup("doc-b", national_id=person["national_id"]) == [at_b]
    assert lookup("oncall-a", phone="13500001111") == [at_a]
    assert lookup("doc-a", phone="0086 135 0000 1111") == [at_a]
    assert lookup("doc-a", phone="13500001112") == []
    assert lookup("doc-a", national_id=national_id("32010219850505211")) == []
    assert client.get("/api/patients/lookup", params={"national_id": "110105194912310021"},
                      headers=bearer(tokens["doc-a"])).status_code == 422
    assert client.get("/api/patients/lookup", headers=bearer(tokens["doc-a"])).status_code == 422
    assert client.get("/api/patients/lookup", params={"phone": "13500001111"},
                      headers=bearer(tokens["expert"])).status_code == 403


def test_updates_replace_clear_and_reindex(client: TestClient, tokens: dict[str, str], db: PostgresEndpoint) -> None:
    person = {"name": "周芷若", "national_id": national_id("33010619900101002"), "phone": "13911112222"}
    patient_id = register(client, tokens["doc-a"], **person).json()["patient_id"]
    path = f"/api/patients/{patient_id}/identity"
    before = last_audit_id(db.url)

    changed = client.patch(path, json={"phone": "13933334444", "name": " 周 芷若 "}, headers=bearer(tokens["doc-a"]))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["phone"]) == ("周 芷若", "13933334444")
    assert changed.json()["national_id"] == person["national_id"]
    found = client.get("/api/patients/lookup", params={"phone": "13933334444"}, headers=bearer(tokens["doc-a"]))
    assert [p["patient_id"] for p in found.json()["patients"]] == [patient_id]
    gone = client.get("/api/patients/lookup", params={"phone": "13911112222"}, headers=bearer(tokens["doc-a"]))
    assert gone.json()["patients"] == []

    new_id = national_id("33010619851111003")  # odd sequence digit: male, born 1985-11-11
    rederived = client.patch(path, json={"national_id": new_id, "phone": None}, headers=bearer(tokens["doc-a"]))
    assert rederived.status_code == 200
    body = rederived.json()
    assert (body["national_id"], body["sex"], body["birth_date"], body["phone"]) == (new_id, "male", "1985-11-11",
                                                                                   None)
    assert client.patch(path, json={"birth_date": "1990-01-01"}, headers=bearer(tokens["doc-a"])).status_code == 422

    events = audit_rows(db.url, before)
    updates = [r[3]["fields"] for r in events if r[1] == "patient.identity.update"]
    assert updates == [["name", "phone"], ["national_id", "phone"]]


def test_identity_can_be_attached_to_a_patient_the_edge_created(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint,
) -> None:
    attached = register(client, tokens["doc-a"], patient_id="P-A2", name="陈小春")
    assert attached.status_code == 201, attached.text
    assert (attached.json()["patient_id"], attached.json()["ward"]) == ("P-A2", "ICU")  # seeded by the edge
    assert register(client, tokens["doc-a"], patient_id="P-A2", name="别人").status_code == 409
    assert register(client, tokens["doc-a"], patient_id="P-B1", name="别人").status_code == 409  # another site's
    with psycopg.connect(db.url) as conn:
        row = conn.execute("SELECT site_id, identity_key_version FROM patients WHERE patient_id = 'P-B1'").fetchone()
    assert row == ("site-b", None)


def test_patient_names_are_unreadable_in_a_database_dump(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint,
) -> None:
    person = {"name": "欧阳娜娜", "national_id": national_id("35020319960622002"), "phone": "18612345678"}
    patient_id = register(client, tokens["doc-a"], **person).json()["patient_id"]
    assert client.get(f"/api/patients/{patient_id}/identity", headers=bearer(tokens["doc-a"])).json()["name"] == \
        "欧阳娜娜"

    bin_dir = find_postgres_bin()
    assert bin_dir is not None, "pg_dump is needed for this test"
    dump = subprocess.run([str(bin_dir / "pg_dump"), "--dbname", db.url, "--no-owner"], capture_output=True,
                          check=True, timeout=120).stdout
    assert patient_id.encode() in dump  # the dump is of the right database and holds the row...
    for secret in (person["name"], "欧阳", person["national_id"], person["phone"], ZHANG_SAN["name"],
                   ZHANG_SAN["national_id"]):
        assert secret.encode() not in dump  # ...but none of the identity in clear


def test_swapped_ciphertexts_are_detected_not_served(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint,
) -> None:
    first = register(client, tokens["doc-a"], name="甲某").json()["patient_id"]
    second = register(client, tokens["doc-a"], name="乙某").json()["patient_id"]
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("UPDATE patients SET name_enc = (SELECT name_enc FROM patients WHERE patient_id = %s)"
                     " WHERE patient_id = %s", (second, first))
    response = client.get(f"/api/patients/{first}/identity", headers=bearer(tokens["doc-a"]))
    assert response.status_code == 500
    assert "乙某" not in response.text
