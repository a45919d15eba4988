"""FHIR R4 resources built from our rows (pure): vital-signs Observations, Patient, Device, Bundle.

Mapping (FHIR R4 4.0.1, "Vital Signs" profiles, http://hl7.org/fhir/R4/observation-vitalsigns.html):
code = the vocabulary's LOINC code (system http://loinc.org) plus the English name as text; value as
valueQuantity in UCUM (system http://unitsofmeasure.org), status final, category vital-signs, subject the
Patient, device the Device, effectiveDateTime the sample time. Kinds without a LOINC code, and on_oxygen,
are not exported. Quality flags become a note.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloud.api.fhir_ids import to_fhir_id
from proto.quality import Quality
from proto.vocabulary import CONSCIOUSNESS_CODES, VOCABULARY, VitalKind, kind_by_wire_id

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PROFILE_BASE = "http://hl7.org/fhir/StructureDefinition/"
FHIR_JSON = "application/fhir+json"
Resource = dict[str, Any]

# Observation ids are name-based UUIDs (RFC 4122 section 4.3) of the sample's natural key, so the same
# sample always exports under the same id; this namespace is ours (a fixed random UUID).
_OBSERVATION_NAMESPACE = uuid.UUID("6f1c3b52-1d0e-4f5b-9a43-0c7f2b9e8d11")
# SI prefix: exact.
_CM_PER_M = 100.0
_CONSCIOUSNESS_TEXT = {
    "A": "Alert", "C": "New confusion", "V": "Responds to voice", "P": "Responds to pain", "U": "Unresponsive",
}
_PRINTABLE_UNITS = {"mm[Hg]": "mmHg", "Cel": "°C"}


@dataclass(frozen=True, slots=True)
class KindMapping:
    """How one vocabulary kind is exported: category, profile, extra codings and unit."""

    category: str
    profile: str | None
    extra_loinc: tuple[str, ...] = ()
    unit: str | None = None  # the exported UCUM unit when it differs from the vocabulary's
    scale: float = 1.0  # vocabulary unit -> exported unit


# R4 vital-signs profiles per LOINC code (http://hl7.org/fhir/R4/observation-vitalsigns.html, table
# "Vital Signs"). Individual systolic/diastolic/mean pressures only fit the generic profile (the `bp`
# profile is the 85354-9 panel). Oxygen saturation's profile fixes 2708-6; our pulse-oximetry code
# 59408-5 stays first. Body height's profile binds cm or [in_i]. Glucose is a laboratory result and
# consciousness an exam finding (coded, so outside the Quantity-valued vital-signs profile).
KIND_MAPPINGS: Mapping[str, KindMapping] = {
    "heart_rate": KindMapping("vital-signs", "heartrate"),
    "spo2": KindMapping("vital-signs", "oxygensat", extra_loinc=("2708-6",)),
    "respiratory_rate": KindMapping("vital-signs", "resprate"),
    "systolic_bp": KindMapping("vital-signs", "vitalsigns"),
    "diastolic_bp": KindMapping("vital-signs", "vitalsigns"),
    "mean_bp": KindMapping("vital-signs", "vitalsigns"),
    "body_temperature": KindMapping("vital-signs", "bodytemp"),
    "body_weight": KindMapping("vital-signs", "bodyweight"),
    "body_height": KindMapping("vital-signs", "bodyheight", unit="cm", scale=_CM_PER_M),
    "bmi": KindMapping("vital-signs", "bmi"),
    "glucose": KindMapping("laboratory", None),
    "consciousness": KindMapping("exam", None),
}
_CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "laboratory": "Laboratory", "exam": "Exam"}


def exported_kinds() -> tuple[VitalKind, ...]:
    """The vocabulary kinds that have a FHIR mapping."""
    return tuple(VOCABULARY[name] for name in KIND_MAPPINGS)


def loinc_index() -> dict[str, str]:
    """Every LOINC code an exported Observation carries -> its kind name (for `code` searches)."""
    index: dict[str, str] = {}
    for vital in exported_kinds():
        assert vital.loinc is not None
        index[vital.loinc] = vital.name
        for extra in KIND_MAPPINGS[vital.name].extra_loinc:
            index[extra] = vital.name
    return index


@dataclass(frozen=True, slots=True)
class SampleRow:
    """One stored sample, as read for export."""

    patient_id: str
    kind_id: int
    time: dt.datetime
    value: float
    device_id: str | None
    quality: int


@dataclass(frozen=True, slots=True)
class PatientRow:
    """A patient and their site."""

    patient_id: str
    site_id: str
    site_name: str
    ward: str | None
    bed: str | None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device, its site and its current patient."""

    device_id: str
    site_name: str | None
    device_type: str | None
    model: str | None
    battery_pct: float | None
    state: str | None
    patient_id: str | None


def fhir_datetime(t: dt.datetime) -> str:
    """A FHIR dateTime/instant in UTC (`Z`), with fractional seconds only when present."""
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def observation_id(row: SampleRow) -> str:
    """The stable id of a sample's Observation."""
    key = f"{row.patient_id}|{row.kind_id}|{_micros(row.time)}|{row.device_id or ''}"
    return str(uuid.uuid5(_OBSERVATION_NAMESPACE, key))


def observation(row: SampleRow) -> Resource:
    """The Observation for one sample of an exported kind (KeyError for kinds not exported)."""
    vital = kind_by_wire_id(row.kind_id)
    mapping = KIND_MAPPINGS[vital.name]
    assert vital.loinc is not None
    codings = [{"system": LOINC, "code": code} for code in (vital.loinc, *mapping.extra_loinc)]
    resource: Resource = {"resourceType": "Observation", "id": observation_id(row)}
    if mapping.profile is not None:
        resource["meta"] = {"profile": [PROFILE_BASE + mapping.profile]}
    resource |= {
        "status": "final",
        "category": [{
            "coding": [{
                "system": OBSERVATION_CATEGORY, "code": mapping.category,
                "display": _CATEGORY_DISPLAY[mapping.category],
            }],
            "text": _CATEGORY_DISPLAY[mapping.category],
        }],
        "code": {"coding": codings, "text": vital.display_en},
        "subject": {"reference": f"Patient/{to_fhir_id(row.patient_id)}"},
        "effectiveDateTime": fhir_datetime(row.time),
    }
    if vital.name == "consciousness":
        level = CONSCIOUSNESS_CODES[int(row.value)]
        resource["valueCodeableConcept"] = {"text": f"{level} ({_CONSCIOUSNESS_TEXT[level]})"}
    else:
        unit = mapping.unit or vital.unit
        resource["valueQuantity"] = {
            "value": row.value * mapping.scale, "unit": _PRINTABLE_UNITS.get(unit, unit), "system": UCUM, "code": unit,
        }
    flags = Quality(row.quality).names  # bits unknown to this version are kept by IntFlag but not named
    if flags:
        resource["note"] = [{"text": "quality: " + ", ".join(flags)}]
    if row.device_id:
        resource["device"] = {"reference": f"Device/{to_fhir_id(row.device_id)}"}
    return resource


def exportable(row: SampleRow) -> bool:
    """Whether a sample has an Observation form (an exported kind with a representable value)."""
    try:
        vital = kind_by_wire_id(row.kind_id)
    except KeyError:
        return False
    if vital.name not in KIND_MAPPINGS:
        return False
    if vital.name == "consciousness":
        return row.value == int(row.value) and 0 <= int(row.value) < len(CONSCIOUSNESS_CODES)
    return row.value == row.value and abs(row.value) != float("inf")


def patient(row: PatientRow) -> Resource:
    """The Patient resource: the pseudonymous id only (identity fields arrive with the users issue)."""
    return {
        "resourceType": "Patient",
        "id": to_fhir_id(row.patient_id),
        "identifier": [{"type": {"text": "Pseudonymous patient id"}, "value": row.patient_id}],
        "active": True,
        "managingOrganization": {"display": row.site_name},
    }


def device(row: DeviceRow) -> Resource:
    """The Device resource: identifier, type, model, battery level and current patient."""
    resource: Resource = {
        "resourceType": "Device",
        "id": to_fhir_id(row.device_id),
        "identifier": [{"value": row.device_id}],
    }
    status = _DEVICE_STATUS.get((row.state or "").lower())
    if status is not None:
        resource["status"] = status
    if row.model:
        resource["deviceName"] = [{"name": row.model, "type": "model-name"}]
    if row.device_type:
        resource["type"] = {"text": row.device_type}
    if row.battery_pct is not None:
        resource["property"] = [{
            "type": {"text": "Battery level"},
            "valueQuantity": [{"value": row.battery_pct, "unit": "%", "system": UCUM, "code": "%"}],
        }]
    if row.patient_id is not None:
        resource["patient"] = {"reference": f"Patient/{to_fhir_id(row.patient_id)}"}
    if row.site_name:
        resource["owner"] = {"display": row.site_name}
    return resource


def searchset(resources: Sequence[Resource], *, base_url: str, self_url: str, next_url: str | None) -> Resource:
    """A searchset Bundle of `resources`, with absolute fullUrls and paging links."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    bundle: Resource = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": fhir_datetime(dt.datetime.now(dt.UTC)),
        "link": links,
    }
    if resources:  # FHIR JSON forbids empty arrays: no matches, no `entry`
        bundle["entry"] = [
            {
                "fullUrl": f"{base_url.rstrip('/')}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ]
    return bundle


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error") -> Resource:
    """An OperationOutcome with one issue (`code` from the R4 IssueType value set)."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


# Device states reported by the edge (device_status events) -> R4 FHIRDeviceStatus.
_DEVICE_STATUS = {
    "connected": "active", "active": "active", "online": "active", "streaming": "active",
    "disconnected": "inactive", "inactive": "inactive", "offline": "inactive", "retired": "inactive",
}


def _micros(t: dt.datetime) -> int:
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
