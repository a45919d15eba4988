"""FHIR R4 resources from our rows: structurally valid, with exact LOINC codes and UCUM units."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.api.fhir_ids import FhirIdError, from_fhir_id, to_fhir_id
from cloud.api.fhir_resources import (
    KIND_MAPPINGS,
    DeviceRow,
    PatientRow,
    SampleRow,
    device,
    exportable,
    loinc_index,
    observation,
    observation_id,
    operation_outcome,
    patient,
    searchset,
)
from proto.quality import Quality
from proto.vocabulary import VOCABULARY, kind
from tests.unit.cloud.test_fhir_validator import LOINC, UCUM, assert_valid

T = dt.datetime(2024, 5, 1, 8, 30, 15, 250000, tzinfo=dt.UTC)


def sample(name: str, value: float, *, quality: int = 0, device_id: str | None = "hrm-7") -> SampleRow:
    return SampleRow("P-001", kind(name).wire_id, T, value, device_id, quality)


@pytest.mark.parametrize("name", sorted(n for n in KIND_MAPPINGS if n != "consciousness"))
def test_every_exported_quantity_kind_is_a_valid_observation_with_exact_loinc_and_ucum(name: str) -> None:
    resource = observation(sample(name, 1.5))
    assert_valid(resource)
    vital = kind(name)
    assert resource["code"]["coding"][0] == {"system": LOINC, "code": vital.loinc}
    assert resource["code"]["text"] == vital.display_en
    quantity = resource["valueQuantity"]
    assert quantity["system"] == UCUM
    expected_unit = "cm" if name == "body_height" else vital.unit
    assert quantity["code"] == expected_unit
    assert quantity["value"] == pytest.approx(150.0 if name == "body_height" else 1.5)
    assert resource["status"] == "final"
    assert resource["subject"] == {"reference": "Patient/P-001"}
    assert resource["device"] == {"reference": "Device/hrm-7"}
    assert resource["effectiveDateTime"] == "2024-05-01T08:30:15.250000Z"


def test_heart_rate_claims_the_heartrate_profile() -> None:
    resource = observation(sample("heart_rate", 72))
    assert resource["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/heartrate"]
    assert resource["category"][0]["coding"][0]["code"] == "vital-signs"
    assert resource["valueQuantity"] == {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"}


def test_spo2_keeps_the_pulse_oximetry_code_first_and_adds_the_profile_code() -> None:
    resource = observation(sample("spo2", 97))
    assert [c["code"] for c in resource["code"]["coding"]] == ["59408-5", "2708-6"]
    assert resource["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/oxygensat"]


def test_glucose_is_a_laboratory_result_without_a_vital_signs_profile() -> None:
    resource = observation(sample("glucose", 5.4))
    assert "meta" not in resource
    assert resource["category"][0]["coding"][0]["code"] == "laboratory"
    assert resource["valueQuantity"]["code"] == "mmol/L"


def test_consciousness_is_coded_text() -> None:
    resource = observation(sample("consciousness", 2))
    assert_valid(resource)
    assert resource["valueCodeableConcept"] == {"text": "V (Responds to voice)"}
    assert not exportable(sample("consciousness", 2.5))


def test_quality_flags_become_a_note_and_no_device_means_no_reference() -> None:
    flags = int(Quality.MOTION | Quality.LOW_PERFUSION)
    resource = observation(sample("heart_rate", 72, quality=flags, device_id=None))
    assert resource["note"] == [{"text": "quality: motion, low_perfusion"}]
    assert "device" not in resource
    assert_valid(resource)
    from_newer_edge = observation(sample("heart_rate", 72, quality=1 << 14))  # a bit this version cannot name
    assert "note" not in from_newer_edge


def test_kinds_without_loinc_are_not_exported_and_codes_index_back_to_kinds() -> None:
    assert not exportable(sample("rr_interval", 0.8))
    assert not exportable(sample("on_oxygen", 1))
    index = loinc_index()
    assert index["8867-4"] == "heart_rate" and index["2708-6"] == "spo2" and index["59408-5"] == "spo2"
    assert set(index.values()) == set(KIND_MAPPINGS)
    assert all(VOCABULARY[name].loinc for name in KIND_MAPPINGS)


def test_observation_ids_are_stable_and_distinct() -> None:
    a = sample("heart_rate", 72)
    assert observation_id(a) == observation_id(dataclasses.replace(a, value=73, quality=1))
    other_device = sample("heart_rate", 72, device_id="hrm-8")
    assert observation_id(a) != observation_id(other_device)
    assert observation_id(a) != observation_id(sample("spo2", 72))


def test_patient_and_device_resources_are_valid() -> None:
    p = patient(PatientRow("P_001:x", "site-a", "County A", "W1", "3"))
    assert_valid(p)
    assert p["id"] == "P.5F001.3Ax" and p["identifier"][0]["value"] == "P_001:x"
    d = device(DeviceRow("hrm-7", "County A", "heart_rate_monitor", "HRM Pro", 81.0, "connected", "P-001"))
    assert_valid(d)
    assert d["status"] == "active" and d["patient"] == {"reference": "Patient/P-001"}
    assert d["property"][0]["valueQuantity"][0] == {"value": 81.0, "unit": "%", "system": UCUM, "code": "%"}
    bare = device(DeviceRow("hrm-9", None, None, None, None, "weird-state", None))
    assert_valid(bare)
    assert "status" not in bare and "owner" not in bare


def test_searchset_bundle_is_valid_and_links_pages() -> None:
    resources = [observation(sample("heart_rate", 72)), observation(sample("spo2", 97))]
    base = "https://api.example/fhir"
    bundle = searchset(resources, base_url=base, self_url=f"{base}/Observation?patient=P-001",
                       next_url=f"{base}/Observation?patient=P-001&_cursor=x")
    assert_valid(bundle)
    assert [link["relation"] for link in bundle["link"]] == ["self", "next"]
    assert bundle["entry"][0]["fullUrl"] == f"https://api.example/fhir/Observation/{resources[0]['id']}"
    assert operation_outcome("not-found", "gone")["issue"][0] == {
        "severity": "error", "code": "not-found", "diagnostics": "gone",
    }


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True))
def test_fhir_ids_round_trip(opaque: str) -> None:
    fhir_id = to_fhir_id(opaque)
    assert from_fhir_id(fhir_id) == opaque


def test_fhir_ids_refuse_what_we_never_issue() -> None:
    assert to_fhir_id("P-001") == "P-001"
    with pytest.raises(FhirIdError):
        from_fhir_id("a.b")
    with pytest.raises(FhirIdError):
        from_fhir_id("x" * 65)
    with pytest.raises(FhirIdError):
        to_fhir_id("_" * 30)
