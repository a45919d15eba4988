"""Expert reports: validation, canonical JSON, Ed25519 signature, and tampering detection."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import pytest

from cloud.consult import report
from cloud.consult.report import DiagnosisInput, PrescriptionInput, ReportError, ReportInput
from proto import keys

TODAY = dt.date(2026, 5, 4)
SIGNED_AT = dt.datetime(2026, 5, 4, 2, 30, tzinfo=dt.UTC)
CID = uuid.UUID("6f1c2a4e-0000-4000-8000-000000000001")
EXPERT = uuid.UUID("6f1c2a4e-0000-4000-8000-0000000000e1")
ASPIRIN = PrescriptionInput(drug="阿司匹林肠溶片", dose="100", unit="mg", route="po", frequency="qd", duration_days=30)


def content(**changes: Any) -> ReportInput:
    base = ReportInput(
        findings="胸痛2小时，心电图 V1-V4 导联 ST 段压低，肌钙蛋白升高。",
        diagnoses=[DiagnosisInput("i214"), DiagnosisInput("I10")],
        recommendations="立即转诊行冠状动脉造影。",
        prescriptions=[ASPIRIN],
        follow_up_date=TODAY + dt.timedelta(days=14),
    )
    return dataclasses.replace(base, **changes)


def body(**changes: Any) -> dict[str, Any]:
    return report.build_body(content(**changes), consultation_id=CID, patient_id="P-A1", expert_id=EXPERT,
                             expert_name="王主任", signed_at=SIGNED_AT, today=TODAY)


def test_a_valid_report_body() -> None:
    b = body()
    assert b["format"] == "telemed.consult-report.v1"
    assert b["signed_at"] == "2026-05-04T02:30:00Z"
    assert b["diagnoses"] == [
        {"code": "I21.4", "name_en": "Acute subendocardial myocardial infarction", "name_zh": "急性心内膜下心肌梗死",
         "primary": True},
        {"code": "I10", "name_en": "Essential (primary) hypertension", "name_zh": "特发性（原发性）高血压",
         "primary": False},
    ]
    assert b["prescriptions"] == [{"drug": "阿司匹林肠溶片", "dose": "100", "unit": "mg", "route": "PO",
                                   "frequency": "QD", "duration_days": 30, "notes": ""}]
    assert b["follow_up_date"] == "2026-05-18"


@pytest.mark.parametrize("changes, field", [
    ({"findings": "  "}, "findings"),
    ({"diagnoses": []}, "diagnoses"),
    ({"diagnoses": [DiagnosisInput("X99.9")]}, "diagnoses.0.code"),
    ({"diagnoses": [DiagnosisInput("I10"), DiagnosisInput("i10")]}, "diagnoses.1.code"),
    ({"diagnoses": [DiagnosisInput("I10", True), DiagnosisInput("E11", True)]}, "diagnoses"),
    ({"prescriptions": [PrescriptionInput("x", "0", "mg", "PO", "QD", 3)]}, "prescriptions.0.dose"),
    ({"prescriptions": [PrescriptionInput("x", "1e3", "mg", "PO", "QD", 3)]}, "prescriptions.0.dose"),
    ({"prescriptions": [PrescriptionInput("x", "5", "spoon", "PO", "QD", 3)]}, "prescriptions.0.unit"),
    ({"prescriptions": [PrescriptionInput("x", "5", "mg", "EAR", "QD", 3)]}, "prescriptions.0.route"),
    ({"prescriptions": [PrescriptionInput("x", "5", "mg", "PO", "5X", 3)]}, "prescriptions.0.frequency"),
    ({"prescriptions": [PrescriptionInput("x", "5", "mg", "PO", "QD", 0)]}, "prescriptions.0.duration_days"),
    ({"prescriptions": [PrescriptionInput("x", "5", "mg", "PO", "QD", 120)]}, "prescriptions.0.duration_days"),
    ({"prescriptions": [PrescriptionInput("x", "5", "mg", "IV", "STAT", 2)]}, "prescriptions.0.duration_days"),
    ({"prescriptions": [PrescriptionInput("  ", "5", "mg", "PO", "QD", 2)]}, "prescriptions.0.drug"),
    ({"follow_up_date": TODAY - dt.timedelta(days=1)}, "follow_up_date"),
    ({"follow_up_date": TODAY + dt.timedelta(days=400)}, "follow_up_date"),
    ({"recommendations": "a\x00b"}, "recommendations"),
])
def test_invalid_fields_are_named(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ReportError) as caught:
        body(**changes)
    assert caught.value.field == field


def test_units_and_doses_are_normalised() -> None:
    line = body(prescriptions=[PrescriptionInput("维生素B12", "0.50", "μg", "im", "qw", 28)])["prescriptions"][0]
    assert (line["dose"], line["unit"], line["route"], line["frequency"]) == ("0.5", "ug", "IM", "QW")


def test_canonical_json_is_sorted_compact_utf8_and_refuses_floats() -> None:
    assert report.canonical_json({"b": 1, "a": ["中", True, None]}) == '{"a":["中",true,null],"b":1}'.encode()
    with pytest.raises(ValueError):
        report.canonical_json({"dose": 0.5})


def test_a_signature_verifies_and_any_tampering_fails() -> None:
    key = keys.generate()
    b = body()
    signed = report.sign(b, key)
    assert signed.key_fingerprint == keys.fingerprint(key.public_key())
    assert report.verify(b, signed.signature, key.public_key())
    # Round trip through JSON (as through jsonb): key order does not matter, content does.
    assert report.verify(json.loads(json.dumps(b)), signed.signature, key.public_key())

    tampered = copy.deepcopy(b)
    tampered["prescriptions"][0]["dose"] = "1000"
    assert not report.verify(tampered, signed.signature, key.public_key())
    moved = copy.deepcopy(b)
    moved["patient_id"] = "P-B1"
    assert not report.verify(moved, signed.signature, key.public_key())
    assert not report.verify(b, signed.signature, keys.generate().public_key())


def test_malformed_signatures_are_errors_not_false() -> None:
    key = keys.generate()
    with pytest.raises(report.SignatureError):
        report.verify(body(), "not base64!", key.public_key())
    with pytest.raises(report.SignatureError):
        report.verify(body(), "AAAA", key.public_key())
