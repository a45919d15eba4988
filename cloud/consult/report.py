"""The expert report (pure): validation, canonical JSON, Ed25519 signature and verification.

A report carries findings, ICD-10 diagnoses (from the bundled list), recommendations, e-prescription lines
and a follow-up date. What is signed is the canonical JSON of the whole body (sorted keys, no insignificant
whitespace, UTF-8; the body holds only strings, integers, booleans and nulls, for which this is the RFC 8785
JSON Canonicalization Scheme), so any change to any field, including the patient or consultation it is
about, breaks the signature. Prescription vocabularies follow common Chinese prescription practice
(《处方管理办法》 2007: drug, dose, route, frequency and duration on every line; abbreviations as used on
Chinese prescriptions).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud.consult import icd10
from proto import keys

FORMAT = "telemed.consult-report.v1"
ALGORITHM = "Ed25519"
MAX_TEXT = 10_000
MAX_DIAGNOSES = 10
MAX_PRESCRIPTION_LINES = 20
# 《处方管理办法》 art. 19: usually at most 7 days; 《长期处方管理规范（试行）》 (2021): long-term prescriptions for
# stable chronic disease at most 12 weeks.
MAX_DURATION_DAYS = 84
MAX_FOLLOW_UP_DAYS = 366

# Route -> (zh, en).
ROUTES: Mapping[str, tuple[str, str]] = {
    "PO": ("口服", "oral"), "IV": ("静脉注射", "intravenous injection"), "IVGTT": ("静脉滴注", "intravenous infusion"),
    "IM": ("肌内注射", "intramuscular"), "SC": ("皮下注射", "subcutaneous"), "SL": ("舌下含服", "sublingual"),
    "INH": ("吸入", "inhaled"), "NEB": ("雾化吸入", "nebulised"), "TOP": ("外用", "topical"),
    "PR": ("直肠给药", "rectal"), "OPH": ("滴眼", "eye drops"), "OT": ("滴耳", "ear drops"), "NAS": ("滴鼻", "nasal"),
}
# Frequency -> (administrations per day or None when not regular, zh, en).
FREQUENCIES: Mapping[str, tuple[float | None, str, str]] = {
    "QD": (1, "每日一次", "once daily"), "BID": (2, "每日两次", "twice daily"),
    "TID": (3, "每日三次", "three times daily"),
    "QID": (4, "每日四次", "four times daily"), "Q4H": (6, "每4小时一次", "every 4 hours"),
    "Q6H": (4, "每6小时一次", "every 6 hours"), "Q8H": (3, "每8小时一次", "every 8 hours"),
    "Q12H": (2, "每12小时一次", "every 12 hours"), "QN": (1, "每晚一次", "every night"),
    "QOD": (0.5, "隔日一次", "every other day"), "QW": (1 / 7, "每周一次", "once weekly"),
    "PRN": (None, "必要时", "as needed"), "STAT": (None, "立即", "immediately, once"),
}
DOSE_UNITS: frozenset[str] = frozenset({
    "mg", "g", "ug", "ng", "mL", "L", "IU", "U", "mmol", "mg/kg", "tablet", "capsule", "sachet", "puff", "drop",
    "patch", "suppository", "ampoule", "vial",
})
_UNIT_ALIASES = {"µg": "ug", "μg": "ug", "mcg": "ug", "ml": "mL", "l": "L", "iu": "IU", "tab": "tablet",
                 "tabs": "tablet", "tablets": "tablet", "cap": "capsule", "caps": "capsule", "capsules": "capsule"}
_DECIMAL = re.compile(r"^\d{1,6}(\.\d{1,4})?$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ReportError(ValueError):
    """A report field is invalid; `field` is its path (e.g. "prescriptions.0.route")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SignatureError(ValueError):
    """A signature or public key is malformed (a well-formed wrong signature just fails verification)."""


@dataclass(frozen=True, slots=True)
class DiagnosisInput:
    code: str
    primary: bool = False


@dataclass(frozen=True, slots=True)
class PrescriptionInput:
    drug: str
    dose: str  # decimal text: "500", "0.25"
    unit: str
    route: str
    frequency: str
    duration_days: int
    notes: str = ""


@dataclass(frozen=True, slots=True)
class ReportInput:
    """A report as the expert submits it (unvalidated)."""

    findings: str
    diagnoses: Sequence[DiagnosisInput]
    recommendations: str = ""
    prescriptions: Sequence[PrescriptionInput] = ()
    follow_up_date: dt.date | None = None


@dataclass(frozen=True, slots=True)
class Signed:
    """A signed report body and its signature."""

    body: Mapping[str, Any]
    signature: str  # base64 of the 64-byte Ed25519 signature
    key_fingerprint: str


def _text(value: str, field: str, *, required: bool, limit: int = MAX_TEXT) -> str:
    text = value.strip()
    if required and not text:
        raise ReportError(field, "must not be empty")
    if len(text) > limit:
        raise ReportError(field, f"at most {limit} characters")
    if _CONTROL.search(text):
        raise ReportError(field, "contains control characters")
    return text


def _diagnoses(items: Sequence[DiagnosisInput]) -> list[dict[str, Any]]:
    if not items:
        raise ReportError("diagnoses", "at least one diagnosis is required")
    if len(items) > MAX_DIAGNOSES:
        raise ReportError("diagnoses", f"at most {MAX_DIAGNOSES}")
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            entry = icd10.lookup(item.code)
        except icd10.UnknownCodeError:
            raise ReportError(f"diagnoses.{index}.code", f"{item.code!r} is not in the ICD-10 list") from None
        if entry.code in seen:
            raise ReportError(f"diagnoses.{index}.code", f"{entry.code} is listed twice")
        seen.add(entry.code)
        result.append({"code": entry.code, "name_en": entry.en, "name_zh": entry.zh, "primary": item.primary})
    primaries = sum(d["primary"] for d in result)
    if primaries > 1:
        raise ReportError("diagnoses", "only one diagnosis can be primary")
    if primaries == 0:
        result[0]["primary"] = True  # the first listed is the primary one, as on a Chinese case sheet
    return result


def _dose(text: str, field: str) -> str:
    value = text.strip()
    if not _DECIMAL.match(value):
        raise ReportError(field, "a positive decimal number such as 500 or 0.25")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ReportError(field, "not a number") from None
    if amount <= 0:
        raise ReportError(field, "must be positive")
    return format(amount.normalize(), "f")


def _prescription(item: PrescriptionInput, index: int) -> dict[str, Any]:
    at = f"prescriptions.{index}"
    unit = _UNIT_ALIASES.get(item.unit.strip(), _UNIT_ALIASES.get(item.unit.strip().lower(), item.unit.strip()))
    if unit not in DOSE_UNITS:
        raise ReportError(f"{at}.unit", f"one of {', '.join(sorted(DOSE_UNITS))}")
    route = item.route.strip().upper()
    if route not in ROUTES:
        raise ReportError(f"{at}.route", f"one of {', '.join(ROUTES)}")
    frequency = item.frequency.strip().upper()
    if frequency not in FREQUENCIES:
        raise ReportError(f"{at}.frequency", f"one of {', '.join(FREQUENCIES)}")
    if not 1 <= item.duration_days <= MAX_DURATION_DAYS:
        raise ReportError(f"{at}.duration_days", f"1..{MAX_DURATION_DAYS} days")
    if frequency == "STAT" and item.duration_days != 1:
        raise ReportError(f"{at}.duration_days", "a STAT order lasts 1 day")
    return {
        "drug": _text(item.drug, f"{at}.drug", required=True, limit=200),
        "dose": _dose(item.dose, f"{at}.dose"),
        "unit": unit,
        "route": route,
        "frequency": frequency,
        "duration_days": item.duration_days,
        "notes": _text(item.notes, f"{at}.notes", required=False, limit=500),
    }


def build_body(
    report: ReportInput, *, consultation_id: uuid.UUID, patient_id: str, expert_id: uuid.UUID, expert_name: str,
    signed_at: dt.datetime, today: dt.date,
) -> dict[str, Any]:
    """The validated report body that gets signed; ReportError naming the first bad field."""
    if len(report.prescriptions) > MAX_PRESCRIPTION_LINES:
        raise ReportError("prescriptions", f"at most {MAX_PRESCRIPTION_LINES} lines")
    follow_up = report.follow_up_date
    if follow_up is not None and not today <= follow_up <= today + dt.timedelta(days=MAX_FOLLOW_UP_DAYS):
        raise ReportError("follow_up_date", f"between today and {MAX_FOLLOW_UP_DAYS} days ahead")
    if signed_at.tzinfo is None:
        raise ValueError("signed_at must be timezone-aware")
    return {
        "format": FORMAT,
        "consultation_id": str(consultation_id),
        "patient_id": patient_id,
        "expert_id": str(expert_id),
        "expert_name": expert_name,
        "signed_at": signed_at.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "findings": _text(report.findings, "findings", required=True),
        "diagnoses": _diagnoses(report.diagnoses),
        "recommendations": _text(report.recommendations, "recommendations", required=False),
        "prescriptions": [_prescription(p, i) for i, p in enumerate(report.prescriptions)],
        "follow_up_date": follow_up.isoformat() if follow_up is not None else None,
    }


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """The exact bytes signed: sorted keys, no whitespace, UTF-8, no floats (ValueError on one)."""
    def check(value: Any) -> None:
        if isinstance(value, float):
            raise ValueError("a signed report holds no floating-point numbers")
        if isinstance(value, Mapping):
            for item in value.values():
                check(item)
        elif isinstance(value, list | tuple):
            for item in value:
                check(item)

    check(body)
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sign(body: Mapping[str, Any], key: Ed25519PrivateKey) -> Signed:
    """Sign `body` with an expert's key."""
    signature = key.sign(canonical_json(body))
    return Signed(body=body, signature=base64.b64encode(signature).decode("ascii"),
                  key_fingerprint=keys.fingerprint(key.public_key()))


def verify(body: Mapping[str, Any], signature: str, public_key: Ed25519PublicKey) -> bool:
    """Whether `signature` (base64) is `public_key`'s signature of `body`; SignatureError if malformed."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the signature is not base64") from None
    if len(raw) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes")
    try:
        public_key.verify(raw, canonical_json(body))
    except InvalidSignature:
        return False
    return True
