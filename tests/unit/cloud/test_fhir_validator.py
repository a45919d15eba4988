"""A small structural validator for the FHIR R4 resources we export, and tests that it catches errors.

Checks, per FHIR R4 (4.0.1): the elements each resource may carry, cardinalities, primitive formats
(id, uri, code, dateTime, instant, decimal), datatype shapes (Coding, CodeableConcept, Quantity, Reference,
Identifier, Annotation), invariants qty-3, obs-6, bdl-1, bdl-2, bdl-7, vs-1, vs-2, and the vital-signs
profiles' required elements and fixed values (http://hl7.org/fhir/R4/observation-vitalsigns.html).
Used by the integration tests on live API output (tests/integration/test_api_fhir.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_CODE = re.compile(r"^[^\s]+( [^\s]+)*$")
_URI = re.compile(r"^\S+$")
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TZ = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_DATETIME = re.compile(rf"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_TZ})?)?)?$")
_INSTANT = re.compile(rf"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_TZ}$")

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
VS_CATEGORY = ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
_RESOURCE_BASE = {"resourceType", "id", "meta", "implicitRules", "language", "text", "contained", "extension",
                  "modifierExtension"}
_OBSERVATION = _RESOURCE_BASE | {
    "identifier", "basedOn", "partOf", "status", "category", "code", "subject", "focus", "encounter",
    "effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant", "issued", "performer",
    "valueQuantity", "valueCodeableConcept", "valueString", "valueBoolean", "valueInteger", "valueRange",
    "valueRatio", "valueSampledData", "valueTime", "valueDateTime", "valuePeriod", "dataAbsentReason",
    "interpretation", "note", "bodySite", "method", "specimen", "device", "referenceRange", "hasMember",
    "derivedFrom", "component",
}
_OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                       "entered-in-error", "unknown"}
_PATIENT = _RESOURCE_BASE | {
    "identifier", "active", "name", "telecom", "gender", "birthDate", "deceasedBoolean", "deceasedDateTime",
    "address", "maritalStatus", "multipleBirthBoolean", "multipleBirthInteger", "photo", "contact",
    "communication", "generalPractitioner", "managingOrganization", "link",
}
_DEVICE = _RESOURCE_BASE | {
    "identifier", "definition", "udiCarrier", "status", "statusReason", "distinctIdentifier", "manufacturer",
    "manufactureDate", "expirationDate", "lotNumber", "serialNumber", "deviceName", "modelNumber", "partNumber",
    "type", "specialization", "version", "property", "patient", "owner", "contact", "location", "url", "note",
    "safety", "parent",
}
_DEVICE_NAME_TYPES = {"udi-label-name", "user-friendly-name", "patient-reported-name", "manufacturer-name",
                      "model-name", "other"}
_BUNDLE = _RESOURCE_BASE - {"text", "contained", "extension", "modifierExtension"} | {
    "identifier", "type", "timestamp", "total", "link", "entry", "signature",
}
_BUNDLE_TYPES = {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                 "history", "searchset", "collection"}
# Fixed code and allowed UCUM units of each specific R4 vital-signs profile.
_VS_PROFILES: dict[str, tuple[str, frozenset[str]]] = {
    "heartrate": ("8867-4", frozenset({"/min"})),
    "oxygensat": ("2708-6", frozenset({"%"})),
    "resprate": ("9279-1", frozenset({"/min"})),
    "bodytemp": ("8310-5", frozenset({"Cel", "[degF]"})),
    "bodyweight": ("29463-7", frozenset({"kg", "[lb_av]", "g"})),
    "bodyheight": ("8302-2", frozenset({"cm", "[in_i]"})),
    "bmi": ("39156-5", frozenset({"kg/m2"})),
}
_PROFILE_BASE = "http://hl7.org/fhir/StructureDefinition/"


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def check(self, ok: bool, path: str, message: str) -> bool:
        if not ok:
            self.add(path, message)
        return ok


def _string(e: _Errors, value: Any, path: str) -> bool:
    return e.check(isinstance(value, str) and value != "", path, "must be a non-empty string")


def _list(e: _Errors, value: Any, path: str, *, minimum: int = 0) -> list[Any]:
    if not e.check(isinstance(value, list), path, "must be an array"):
        return []
    e.check(len(value) >= minimum, path, f"needs at least {minimum} item(s)")
    e.check(len(value) > 0, path, "arrays must not be empty in FHIR JSON")
    return list(value)


def _object(e: _Errors, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if not e.check(isinstance(value, dict), path, "must be an object"):
        return {}
    for key in value:
        e.check(key in allowed, f"{path}.{key}", "unknown element")
    for key, item in value.items():
        e.check(item is not None and item != "" and item != {} and item != [], f"{path}.{key}", "empty value")
    return dict(value)


def _coding(e: _Errors, value: Any, path: str) -> None:
    c = _object(e, value, path, {"system", "version", "code", "display", "userSelected"})
    if "system" in c:
        e.check(isinstance(c["system"], str) and bool(_URI.match(c["system"])), f"{path}.system", "must be a uri")
    if "code" in c:
        e.check(isinstance(c["code"], str) and bool(_CODE.match(c["code"])), f"{path}.code", "must be a code")
    if "display" in c:
        _string(e, c["display"], f"{path}.display")


def _codeable(e: _Errors, value: Any, path: str) -> dict[str, Any]:
    cc = _object(e, value, path, {"coding", "text"})
    if "coding" in cc:
        for i, coding in enumerate(_list(e, cc["coding"], f"{path}.coding")):
            _coding(e, coding, f"{path}.coding[{i}]")
    if "text" in cc:
        _string(e, cc["text"], f"{path}.text")
    return cc


def _quantity(e: _Errors, value: Any, path: str) -> dict[str, Any]:
    q = _object(e, value, path, {"value", "comparator", "unit", "system", "code"})
    if "value" in q:
        e.check(isinstance(q["value"], int | float) and not isinstance(q["value"], bool),
                f"{path}.value", "must be a decimal number")
    if "unit" in q:
        _string(e, q["unit"], f"{path}.unit")
    if "system" in q:
        e.check(isinstance(q["system"], str) and bool(_URI.match(q["system"])), f"{path}.system", "must be a uri")
    if "code" in q:
        e.check(isinstance(q["code"], str) and bool(_CODE.match(q["code"])), f"{path}.code", "must be a code")
        e.check("system" in q, path, "qty-3: a coded unit needs a system")
    return q


def _reference(e: _Errors, value: Any, path: str, target: str | None = None) -> None:
    r = _object(e, value, path, {"reference", "type", "identifier", "display"})
    e.check(bool(r.keys() & {"reference", "identifier", "display"}), path, "ref-1: reference, identifier or display")
    if "reference" in r:
        ref = r["reference"]
        if _string(e, ref, f"{path}.reference") and target is not None:
            parts = ref.split("/")
            e.check(len(parts) >= 2 and parts[-2] == target and bool(_ID.match(parts[-1])),
                    f"{path}.reference", f"must reference a {target}")
    if "display" in r:
        _string(e, r["display"], f"{path}.display")


def _identifier(e: _Errors, value: Any, path: str) -> None:
    ident = _object(e, value, path, {"use", "type", "system", "value", "period", "assigner"})
    if "use" in ident:
        e.check(ident["use"] in {"usual", "official", "temp", "secondary", "old"}, f"{path}.use", "bad code")
    if "type" in ident:
        _codeable(e, ident["type"], f"{path}.type")
    if "system" in ident:
        e.check(isinstance(ident["system"], str) and bool(_URI.match(ident["system"])), f"{path}.system", "uri")
    if "value" in ident:
        _string(e, ident["value"], f"{path}.value")


def _resource_base(e: _Errors, r: dict[str, Any], kind: str) -> None:
    e.check(r.get("resourceType") == kind, "resourceType", f"must be {kind}")
    if "id" in r:
        e.check(isinstance(r["id"], str) and bool(_ID.match(r["id"])), "id", "must match [A-Za-z0-9-.]{1,64}")
    if "meta" in r:
        meta = _object(e, r["meta"], "meta", {"versionId", "lastUpdated", "source", "profile", "security", "tag"})
        for i, profile in enumerate(_list(e, meta.get("profile", ["x"]), "meta.profile")):
            e.check(isinstance(profile, str) and bool(_URI.match(profile)), f"meta.profile[{i}]", "must be canonical")


def validate_observation(resource: Any) -> list[str]:
    """Problems with an R4 Observation (and with the vital-signs profiles it claims)."""
    e = _Errors()
    r = _object(e, resource, "Observation", _OBSERVATION)
    _resource_base(e, r, "Observation")
    e.check(r.get("status") in _OBSERVATION_STATUS, "status", "required, an ObservationStatus code")
    if e.check("code" in r, "code", "required (1..1)"):
        _codeable(e, r["code"], "code")
    for i, category in enumerate(_list(e, r["category"], "category") if "category" in r else []):
        _codeable(e, category, f"category[{i}]")
    if "subject" in r:
        _reference(e, r["subject"], "subject")
    if "device" in r:
        _reference(e, r["device"], "device", "Device")
    effective = [k for k in r if k.startswith("effective")]
    e.check(len(effective) <= 1, "effective[x]", "at most one effective[x]")
    if "effectiveDateTime" in r:
        value = r["effectiveDateTime"]
        e.check(isinstance(value, str) and bool(_DATETIME.match(value)), "effectiveDateTime", "must be a dateTime")
    values = [k for k in r if k.startswith("value")]
    e.check(len(values) <= 1, "value[x]", "at most one value[x]")
    if "valueQuantity" in r:
        _quantity(e, r["valueQuantity"], "valueQuantity")
    if "valueCodeableConcept" in r:
        _codeable(e, r["valueCodeableConcept"], "valueCodeableConcept")
    e.check(not (values and "dataAbsentReason" in r), "dataAbsentReason", "obs-6: only when value[x] is absent")
    for i, note in enumerate(_list(e, r["note"], "note") if "note" in r else []):
        n = _object(e, note, f"note[{i}]", {"authorReference", "authorString", "time", "text"})
        _string(e, n.get("text"), f"note[{i}].text")
    profiles = [p for p in r.get("meta", {}).get("profile", []) if isinstance(p, str)]
    for profile in profiles:
        if profile.startswith(_PROFILE_BASE):
            _vital_signs(e, r, profile.removeprefix(_PROFILE_BASE))
    return e.items


def _vital_signs(e: _Errors, r: dict[str, Any], profile: str) -> None:
    """The R4 vital-signs profile (observation-vitalsigns) and its specific profiles."""
    where = f"[{profile}]"
    categories = r.get("category", []) if isinstance(r.get("category"), list) else []
    has_vscat = any(
        isinstance(c, dict) and any(
            isinstance(cd, dict) and (cd.get("system"), cd.get("code")) == VS_CATEGORY for cd in c.get("coding", [])
        )
        for c in categories
    )
    e.check(has_vscat, f"{where} category", "needs the VSCat slice (observation-category#vital-signs)")
    codings = r.get("code", {}).get("coding", []) if isinstance(r.get("code"), dict) else []
    e.check(bool(codings), f"{where} code.coding", "required (1..*)")
    for i, coding in enumerate(codings):
        e.check(isinstance(coding, dict) and "system" in coding and "code" in coding,
                f"{where} code.coding[{i}]", "every coding needs system and code")
    subject = r.get("subject")
    e.check(isinstance(subject, dict) and str(subject.get("reference", "")).startswith("Patient/"),
            f"{where} subject", "required, a Patient reference")
    effective = [k for k in r if k.startswith("effective")]
    e.check(effective in (["effectiveDateTime"], ["effectivePeriod"]), f"{where} effective[x]",
            "required, dateTime or Period")
    if "effectiveDateTime" in r:
        e.check(bool(re.match(r"^\d{4}-\d{2}-\d{2}", str(r["effectiveDateTime"]))), f"{where} effectiveDateTime",
                "vs-1: at least a day")
    values = [k for k in r if k.startswith("value")]
    e.check(values in ([], ["valueQuantity"]), f"{where} value[x]", "only valueQuantity")
    e.check(bool(values) or "dataAbsentReason" in r or "component" in r or "hasMember" in r, where,
            "vs-2: value[x] or dataAbsentReason")
    q = r.get("valueQuantity")
    if isinstance(q, dict):
        for field in ("value", "unit", "system", "code"):
            e.check(field in q, f"{where} valueQuantity.{field}", "required (1..1)")
        e.check(q.get("system") == UCUM, f"{where} valueQuantity.system", f"fixed to {UCUM}")
    if profile in _VS_PROFILES:
        code, units = _VS_PROFILES[profile]
        e.check(any(isinstance(c, dict) and c.get("system") == LOINC and c.get("code") == code for c in codings),
                f"{where} code", f"needs LOINC {code}")
        if isinstance(q, dict):
            e.check(q.get("code") in units, f"{where} valueQuantity.code", f"must be one of {sorted(units)}")


def validate_patient(resource: Any) -> list[str]:
    """Problems with an R4 Patient."""
    e = _Errors()
    r = _object(e, resource, "Patient", _PATIENT)
    _resource_base(e, r, "Patient")
    for i, ident in enumerate(_list(e, r["identifier"], "identifier") if "identifier" in r else []):
        _identifier(e, ident, f"identifier[{i}]")
    if "active" in r:
        e.check(isinstance(r["active"], bool), "active", "must be a boolean")
    if "gender" in r:
        e.check(r["gender"] in {"male", "female", "other", "unknown"}, "gender", "bad code")
    if "managingOrganization" in r:
        _reference(e, r["managingOrganization"], "managingOrganization", "Organization")
    return e.items


def validate_device(resource: Any) -> list[str]:
    """Problems with an R4 Device."""
    e = _Errors()
    r = _object(e, resource, "Device", _DEVICE)
    _resource_base(e, r, "Device")
    for i, ident in enumerate(_list(e, r["identifier"], "identifier") if "identifier" in r else []):
        _identifier(e, ident, f"identifier[{i}]")
    if "status" in r:
        e.check(r["status"] in {"active", "inactive", "entered-in-error", "unknown"}, "status", "bad code")
    for i, name in enumerate(_list(e, r["deviceName"], "deviceName") if "deviceName" in r else []):
        n = _object(e, name, f"deviceName[{i}]", {"name", "type"})
        _string(e, n.get("name"), f"deviceName[{i}].name")
        e.check(n.get("type") in _DEVICE_NAME_TYPES, f"deviceName[{i}].type", "required DeviceNameType code")
    if "type" in r:
        _codeable(e, r["type"], "type")
    for i, prop in enumerate(_list(e, r["property"], "property") if "property" in r else []):
        p = _object(e, prop, f"property[{i}]", {"type", "valueQuantity", "valueCode"})
        if e.check("type" in p, f"property[{i}].type", "required (1..1)"):
            _codeable(e, p["type"], f"property[{i}].type")
        for j, q in enumerate(_list(e, p["valueQuantity"], "vq") if "valueQuantity" in p else []):
            _quantity(e, q, f"property[{i}].valueQuantity[{j}]")
    if "patient" in r:
        _reference(e, r["patient"], "patient", "Patient")
    if "owner" in r:
        _reference(e, r["owner"], "owner", "Organization")
    return e.items


_VALIDATORS: dict[str, Callable[[Any], list[str]]] = {
    "Observation": validate_observation, "Patient": validate_patient, "Device": validate_device,
}


def validate_bundle(resource: Any) -> list[str]:
    """Problems with an R4 Bundle and every resource in it."""
    e = _Errors()
    r = _object(e, resource, "Bundle", _BUNDLE)
    _resource_base(e, r, "Bundle")
    e.check(r.get("type") in _BUNDLE_TYPES, "type", "required, a BundleType code")
    if "timestamp" in r:
        e.check(isinstance(r["timestamp"], str) and bool(_INSTANT.match(r["timestamp"])), "timestamp", "instant")
    if "total" in r:
        e.check(r.get("type") in {"searchset", "history"}, "total", "bdl-1: only for searchset and history")
        e.check(isinstance(r["total"], int) and not isinstance(r["total"], bool) and r["total"] >= 0, "total",
                "unsignedInt")
    for i, link in enumerate(_list(e, r["link"], "link") if "link" in r else []):
        lk = _object(e, link, f"link[{i}]", {"relation", "url"})
        _string(e, lk.get("relation"), f"link[{i}].relation")
        e.check(isinstance(lk.get("url"), str) and bool(_URI.match(lk["url"])), f"link[{i}].url", "required uri")
    seen: set[str] = set()
    for i, entry in enumerate(_list(e, r["entry"], "entry") if "entry" in r else []):
        en = _object(e, entry, f"entry[{i}]", {"link", "fullUrl", "resource", "search", "request", "response"})
        e.check("resource" in en or "request" in en or "response" in en, f"entry[{i}]", "bdl-5")
        if "search" in en:
            e.check(r.get("type") == "searchset", f"entry[{i}].search", "bdl-2: only in a searchset")
            s = _object(e, en["search"], f"entry[{i}].search", {"mode", "score"})
            e.check(s.get("mode") in {"match", "include", "outcome"}, f"entry[{i}].search.mode", "bad code")
        resource_in = en.get("resource")
        if isinstance(resource_in, dict):
            kind = resource_in.get("resourceType")
            validator = _VALIDATORS.get(str(kind))
            if e.check(validator is not None, f"entry[{i}].resource", f"unexpected resource {kind!r}"):
                assert validator is not None
                for problem in validator(resource_in):
                    e.add(f"entry[{i}].resource", problem)
            full = en.get("fullUrl")
            if e.check(isinstance(full, str) and bool(_URI.match(full)), f"entry[{i}].fullUrl", "required uri"):
                assert isinstance(full, str)
                e.check(full.endswith(f"/{kind}/{resource_in.get('id')}"), f"entry[{i}].fullUrl",
                        "must end with Type/id of the resource")
                e.check(full not in seen, f"entry[{i}].fullUrl", "bdl-7: duplicate fullUrl")
                e.check("/_history/" not in full, f"entry[{i}].fullUrl", "bdl-8: not version specific")
                seen.add(full)
    return e.items


def assert_valid(resource: Any) -> None:
    """Fail the test with every problem found in `resource` (Bundle, Observation, Patient or Device)."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    validator = {"Bundle": validate_bundle, **_VALIDATORS}.get(str(kind))
    assert validator is not None, f"no validator for {kind!r}"
    problems = validator(resource)
    assert not problems, "\n".join(problems)


# --- the validator itself must catch what it claims to ----------------------------------------------------------

def _heart_rate() -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": "hr-1",
        "meta": {"profile": [_PROFILE_BASE + "heartrate"]},
        "status": "final",
        "category": [{"coding": [{"system": VS_CATEGORY[0], "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}], "text": "Heart rate"},
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": "2024-05-01T08:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"},
    }


def test_a_well_formed_heart_rate_passes() -> None:
    assert validate_observation(_heart_rate()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r.pop("status"), "status"),
        (lambda r: r.update(status="done"), "status"),
        (lambda r: r.pop("code"), "code"),
        (lambda r: r.pop("subject"), "subject"),
        (lambda r: r.pop("effectiveDateTime"), "effective[x]"),
        (lambda r: r.update(effectiveDateTime="2024-05-01T08:00:00"), "effectiveDateTime"),
        (lambda r: r.update(category=[{"coding": [{"system": VS_CATEGORY[0], "code": "exam"}]}]), "category"),
        (lambda r: r["valueQuantity"].pop("system"), "valueQuantity.system"),
        (lambda r: r["valueQuantity"].update(code="beats/min"), "valueQuantity.code"),
        (lambda r: r["valueQuantity"].update(value="72"), "valueQuantity.value"),
        (lambda r: r.update(code={"coding": [{"system": LOINC, "code": "8480-6"}]}), "8867-4"),
        (lambda r: r.update(id="has_underscore"), "id"),
        (lambda r: r.update(valueString="72"), "value[x]"),
        (lambda r: r.update(dataAbsentReason={"text": "x"}), "obs-6"),
        (lambda r: r.update(colour="red"), "unknown element"),
        (lambda r: r.update(note=[]), "note"),
        (lambda r: r.pop("valueQuantity"), "vs-2"),
    ],
)
def test_the_observation_validator_catches(mutate: Callable[[dict[str, Any]], object], expected: str) -> None:
    resource = _heart_rate()
    mutate(resource)
    problems = validate_observation(resource)
    assert any(expected in p for p in problems), problems


def test_the_bundle_validator_checks_entries_and_invariants() -> None:
    entry = {"fullUrl": "https://x/fhir/Observation/hr-1", "resource": _heart_rate(), "search": {"mode": "match"}}
    bundle = {"resourceType": "Bundle", "type": "searchset", "timestamp": "2024-05-01T08:00:00Z",
              "link": [{"relation": "self", "url": "https://x/fhir/Observation"}], "entry": [entry]}
    assert validate_bundle(bundle) == []
    assert any("bdl-2" in p for p in validate_bundle({**bundle, "type": "collection"}))
    assert any("bdl-7" in p for p in validate_bundle({**bundle, "entry": [entry, entry]}))
    assert any("timestamp" in p for p in validate_bundle({**bundle, "timestamp": "2024-05-01"}))
    broken = {**entry, "resource": {**_heart_rate(), "status": None}}
    assert any("status" in p for p in validate_bundle({**bundle, "entry": [broken]}))
    wrong_url = {**entry, "fullUrl": "https://x/fhir/Observation/other"}
    assert any("Type/id" in p for p in validate_bundle({**bundle, "entry": [wrong_url]}))


def test_the_patient_and_device_validators_catch_bad_codes() -> None:
    assert validate_patient({"resourceType": "Patient", "id": "p-1", "active": True}) == []
    assert any("gender" in p for p in validate_patient({"resourceType": "Patient", "gender": "f"}))
    assert any("active" in p for p in validate_patient({"resourceType": "Patient", "active": "yes"}))
    device = {"resourceType": "Device", "id": "d-1", "status": "active",
              "deviceName": [{"name": "HRM-1", "type": "model-name"}]}
    assert validate_device(device) == []
    assert any("status" in p for p in validate_device({**device, "status": "on"}))
    assert any("deviceName" in p for p in validate_device({**device, "deviceName": [{"name": "x"}]}))
