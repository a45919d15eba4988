"""FHIR R4 export against a real PostgreSQL: valid shapes, exact LOINC/UCUM, search filters, paging, scoping."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from deploy.postgres import PostgresEndpoint
from proto.quality import Quality
from tests.integration.test_api_support import (
    Row,
    bearer,
    client_for,
    insert_vitals,
    login,
    minute_floor,
    scratch_database,
    seed_world,
)
from tests.unit.cloud.test_fhir_validator import LOINC, UCUM, assert_valid

pytestmark = pytest.mark.integration

T0 = minute_floor(dt.datetime.now(dt.UTC)) - dt.timedelta(hours=2)
FHIR_JSON = "application/fhir+json"


def rows() -> list[Row]:
    hr = [(T0 + dt.timedelta(seconds=10 * i), "P-A1", "heart_rate", 70.0 + i, "hrm-a1", 0) for i in range(12)]
    return [
        *hr,
        (T0, "P-A1", "spo2", 96.0, "hrm-a1", int(Quality.LOW_PERFUSION)),
        (T0, "P-A1", "body_height", 1.72, None, int(Quality.MANUAL_ENTRY)),
        (T0, "P-A1", "rr_interval", 0.8, "hrm-a1", 0),  # no LOINC: not exported
        (T0 + dt.timedelta(seconds=5), "P-A1", "consciousness", 1.0, None, 0),
        (T0, "P-B1", "heart_rate", 66.0, "hrm-b1", 0),
    ]


@pytest.fixture(scope="module")
def client(postgres: PostgresEndpoint) -> Iterator[TestClient]:
    with scratch_database(postgres) as endpoint:
        seed_world(endpoint.url)
        insert_vitals(endpoint.url, rows())
        with client_for(endpoint.url) as test_client:
            test_client.headers.update(bearer(login(test_client, "doc-a")))
            test_client.app.state.test_url = endpoint.url  # type: ignore[attr-defined]
            yield test_client


def fhir(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.headers["content-type"].startswith(FHIR_JSON), response.text
    return response


def observations(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_observation_search_returns_a_valid_searchset_with_exact_codes(client: TestClient) -> None:
    response = fhir(client, "/fhir/Observation", patient="Patient/P-A1")
    assert response.status_code == 200
    bundle = response.json()
    assert_valid(bundle)
    assert bundle["type"] == "searchset"
    found = observations(bundle)
    assert len(found) == 12 + 3  # heart rates, SpO2, height, consciousness; the RR interval has no LOINC
    by_code = {o["code"]["coding"][0]["code"]: o for o in found}
    assert set(by_code) == {"8867-4", "59408-5", "8302-2", "67775-7"}
    spo2 = by_code["59408-5"]
    assert spo2["code"]["coding"] == [{"system": LOINC, "code": "59408-5"}, {"system": LOINC, "code": "2708-6"}]
    assert spo2["valueQuantity"] == {"value": 96.0, "unit": "%", "system": UCUM, "code": "%"}
    assert spo2["note"] == [{"text": "quality: low_perfusion"}]
    assert spo2["subject"] == {"reference": "Patient/P-A1"} and spo2["device"] == {"reference": "Device/hrm-a1"}
    assert by_code["8302-2"]["valueQuantity"]["code"] == "cm"
    assert by_code["8302-2"]["valueQuantity"]["value"] == pytest.approx(172.0)
    hr = [o for o in found if o["code"]["coding"][0]["code"] == "8867-4"]
    assert all(o["valueQuantity"]["code"] == "/min" and o["valueQuantity"]["system"] == UCUM for o in hr)
    assert [o["valueQuantity"]["value"] for o in hr] == [70.0 + i for i in range(12)]
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"http://testserver/fhir/Observation/{entry['resource']['id']}"


def test_code_and_date_filters(client: TestClient) -> None:
    def count(**params: str | list[str]) -> int:
        response = fhir(client, "/fhir/Observation", patient="P-A1", **params)
        assert response.status_code == 200, response.text
        return len(observations(response.json()))

    assert count(code="8867-4") == 12
    assert count(code=f"{LOINC}|2708-6") == 1
    assert count(code="8867-4,59408-5") == 13
    assert count(code="http://snomed.info/sct|8867-4") == 0
    start = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert count(code="8867-4", date=f"gt{start}") == 11  # strictly after the first second
    assert count(code="8867-4", date=f"ge{start}") == 12
    later = (T0 + dt.timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert count(code="8867-4", date=[f"ge{start}", f"lt{later}"]) == 6
    assert count(code="8867-4", date=f"eq{T0.strftime('%Y-%m-%dT%H:%MZ').replace('Z', '+00:00')}") == 6
    assert count(date="lt2000-01-01") == 0


def test_paging_walks_every_match_once(client: TestClient) -> None:
    seen: list[str] = []
    url: str | None = "/fhir/Observation?patient=P-A1&_count=4"
    pages = 0
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert_valid(bundle)
        assert len(bundle.get("entry", [])) <= 4
        seen += [o["id"] for o in observations(bundle)]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        url = links.get("next")
        pages += 1
    assert pages == 4 and len(seen) == len(set(seen)) == 15


def test_another_sites_patient_searches_empty_and_reads_as_not_found(client: TestClient) -> None:
    empty = fhir(client, "/fhir/Observation", patient="P-B1").json()
    assert_valid(empty)
    assert "entry" not in empty  # FHIR JSON has no empty arrays
    for path in ("/fhir/Patient/P-B1", "/fhir/Patient/P-ZZ", "/fhir/Device/hrm-b1", "/fhir/Device/nope"):
        response = fhir(client, path)
        assert response.status_code == 404
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "not-found"


def test_patient_and_device_reads_are_valid(client: TestClient) -> None:
    patient = fhir(client, "/fhir/Patient/P-A1").json()
    assert_valid(patient)
    assert patient["identifier"][0]["value"] == "P-A1"
    assert patient["managingOrganization"] == {"display": "County A Hospital"}
    device = fhir(client, "/fhir/Device/hrm-a1").json()
    assert_valid(device)
    assert device["patient"] == {"reference": "Patient/P-A1"} and device["status"] == "active"
    assert device["deviceName"] == [{"name": "HRM Pro", "type": "model-name"}]


@pytest.mark.parametrize("params", [
    {}, {"patient": "P-A1", "date": "sa2024"}, {"patient": "P-A1", "_count": "0"},
    {"patient": "P-A1", "colour": "red"}, {"patient": "P-A1", "_cursor": "!!"},
])
def test_bad_searches_are_400_operation_outcomes(client: TestClient, params: dict[str, str]) -> None:
    response = fhir(client, "/fhir/Observation", **params)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "invalid"


def test_only_json_is_offered(client: TestClient) -> None:
    assert fhir(client, "/fhir/Patient/P-A1", _format="json").status_code == 200
    refused = fhir(client, "/fhir/Patient/P-A1", _format="xml")
    assert refused.status_code == 406 and refused.json()["issue"][0]["code"] == "not-supported"


def test_fhir_reads_are_audited(client: TestClient) -> None:
    url = client.app.state.test_url  # type: ignore[attr-defined]
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT coalesce(max(id), 0) FROM access_log").fetchone()
    fhir(client, "/fhir/Patient/P-A1")
    fhir(client, "/fhir/Observation", patient="P-A1", code="8867-4", _count="2")
    with psycopg.connect(url) as conn:
        events = conn.execute("SELECT event, patient_id FROM access_log WHERE id > %s ORDER BY id", before).fetchall()
    assert events == [("fhir.patient.read", "P-A1"), ("fhir.observation.search", "P-A1")]
