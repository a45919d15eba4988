"""The access rule of every route of the cloud app, in one table (no tests here).

tests/integration/test_access_control.py walks every route of `create_app(...)` (every method, HTTP and
WebSocket) as every actor below, on resources of both sites, and checks each answer against this table:
anonymous calls must answer 401, a role outside `roles` 403 (or 404), a resource the actor does not reach
401/403/404 (or, for searches declaring `hidden`, a 2xx that shows nothing), and an allowed call 2xx (or one
of the rule's `also` statuses). Nothing may answer 5xx. A route without a rule here fails the walker, and so
does a rule for a route that no longer exists: **add your route's rule when you add a route.**

A rule names who may call the route (`roles`), which resources each actor reaches (`reach`: by site, from
cloud/api/auth/scoping.py and the identity rules of docs/security.md), how to fill path parameters, query and
body for a resource of a given site (`params`, `query`, `body`, from the seeded `World`), and which non-2xx
answers still count as allowed (`also`: 404 for a resource that may be missing, 409 for workflow states).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import httpx

SITES: Final = ("site-a", "site-b")
ANONYMOUS: Final = "anonymous"
# The logged-in actors are users of tests/integration/test_api_support.py's USERS.
ACTOR_ROLES: Final[Mapping[str, frozenset[str]]] = {
    "admin": frozenset({"admin"}),
    "doc-a": frozenset({"county_doctor"}),
    "doc-b": frozenset({"county_doctor"}),
    "expert": frozenset({"expert"}),
    "oncall-a": frozenset({"on_call"}),
    "nobody": frozenset(),
}
ACTORS: Final = (ANONYMOUS, *ACTOR_ROLES)

# Which sites' patients each actor sees (cloud/api/auth/scoping.py). The walker's expert has no consultation
# offered or assigned, so no patient at all.
PATIENT_SITES: Final[Mapping[str, frozenset[str]]] = {
    "admin": frozenset(SITES), "doc-a": frozenset({"site-a"}), "doc-b": frozenset({"site-b"}),
    "oncall-a": frozenset({"site-a"}),
}
# Whose identity (names, ID numbers, phones): doctors bound to the patient's own site (docs/security.md).
IDENTITY_SITES: Final[Mapping[str, frozenset[str]]] = {
    "doc-a": frozenset({"site-a"}), "doc-b": frozenset({"site-b"}), "oncall-a": frozenset({"site-a"}),
}
# Consultations: admins all, county doctors their site's; experts only offered/assigned ones (none here).
CONSULTATION_SITES: Final[Mapping[str, frozenset[str]]] = {
    "admin": frozenset(SITES), "doc-a": frozenset({"site-a"}), "doc-b": frozenset({"site-b"}),
}

PUBLIC: Final = None
ANY_USER: Final = frozenset[str]()
ADMIN: Final = frozenset({"admin"})
READ_VITALS: Final = frozenset({"admin", "county_doctor", "expert", "on_call"})
EXPORT_FHIR: Final = frozenset({"admin", "county_doctor", "expert"})
COUNTY_DOCTOR: Final = frozenset({"county_doctor"})
IDENTITY_READERS: Final = frozenset({"county_doctor", "on_call"})
EXPERT: Final = frozenset({"expert"})
CONSULT_READERS: Final = frozenset({"admin", "county_doctor", "expert"})
REQUESTERS_AND_ADMINS: Final = frozenset({"county_doctor", "admin"})
SESSION_PARTIES: Final = frozenset({"county_doctor", "expert"})
ICD10_USERS: Final = frozenset({"admin", "county_doctor", "expert", "on_call"})
HANDLE_INCIDENTS: Final = frozenset({"admin", "county_doctor", "on_call"})
# Edges authenticate with request signatures, never with user sessions: every user is refused.
EDGES_ONLY: Final = frozenset({"edge"})


@dataclass(frozen=True)
class DicomIds:
    study: str
    series: str
    instance: str


class World(Protocol):
    """What the walker seeded: for each site a patient with identity, vitals, a device, a DICOM study and a
    draft consultation; users to administer; a counter for unique names."""

    victim_user_id: str  # a user admins may change (never one of the actors)
    victim_expert_id: str  # an expert with a profile, for the profile routes

    def patient(self, site: str) -> str: ...
    def device(self, site: str) -> str: ...
    def national_id(self, site: str) -> str: ...
    def dicom(self, site: str) -> DicomIds: ...
    def consultation(self, site: str) -> str: ...


Reach = Callable[[str, str], bool]  # (actor, site of the resource) -> whether the actor may reach it
Build = Callable[[World, str], Any]  # (world, site) -> a path parameter, query or body


def everywhere(actor: str, site: str) -> bool:
    return True


def nowhere(actor: str, site: str) -> bool:
    return False


def within(table: Mapping[str, frozenset[str]]) -> Reach:
    def reach(actor: str, site: str) -> bool:
        return site in table.get(actor, frozenset())
    return reach


PATIENTS: Final = within(PATIENT_SITES)
IDENTITY: Final = within(IDENTITY_SITES)
CONSULTATIONS: Final = within(CONSULTATION_SITES)

_unique = itertools.count(1)
MISSING: Final = uuid.UUID("00000000-0000-4000-8000-00000000dead")


def unique(prefix: str) -> str:
    """A fresh name for each call of a route that creates something."""
    return f"{prefix}{next(_unique)}"


DEFAULT_PARAMS: Final[Mapping[str, Build]] = {
    "patient_id": lambda w, s: w.patient(s),
    "fhir_id": lambda w, s: w.patient(s),
    "user_id": lambda w, s: w.victim_user_id,
    "consultation_id": lambda w, s: w.consultation(s),
    "study": lambda w, s: w.dicom(s).study,
    "series": lambda w, s: w.dicom(s).series,
    "instance": lambda w, s: w.dicom(s).instance,
    "study_instance_uid": lambda w, s: w.dicom(s).study,
    "frame_list": lambda w, s: "1",
    "frame": lambda w, s: "1",
    "tag": lambda w, s: "7FE00010",
    # Resources the walker does not create: an id that exists nowhere (allowed callers answer 404).
    "incident_id": lambda w, s: str(MISSING),
    "rotation_id": lambda w, s: str(MISSING),
    "override_id": lambda w, s: str(MISSING),
    "channel_id": lambda w, s: str(MISSING),
    "recording_id": lambda w, s: str(MISSING),
    "site_id": lambda w, s: s,
    "department_id": lambda w, s: "walker-dept",
    "path": lambda w, s: "app.js",
}



@dataclass(frozen=True)
class Rule:
    """Who may call a route and how to call it (see the module docstring)."""

    roles: frozenset[str] | None  # None: public; empty: any logged-in user
    reach: Reach = everywhere
    params: Mapping[str, Build] = field(default_factory=dict)
    query: Build | None = None
    body: Build | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    also: frozenset[int] = frozenset()  # non-2xx statuses that still mean "allowed"
    hidden: Callable[[httpx.Response], bool] | None = None  # a 2xx refusal must satisfy this (shows nothing)

    @property
    def per_site(self) -> bool:
        """Whether to call it for a resource of each site (the answer depends on the site)."""
        return self.reach is not everywhere

    def param(self, name: str) -> Build:
        return self.params.get(name) or DEFAULT_PARAMS[name]


def empty_list(key: str | None = None) -> Callable[[httpx.Response], bool]:
    """A search that answers 200 with nothing found."""
    def shows_nothing(response: httpx.Response) -> bool:
        data = response.json()
        return bool((data if key is None else data.get(key, [])) == [])
    return shows_nothing


def empty_bundle(response: httpx.Response) -> bool:
    return not response.json().get("entry")


DICOM_JSON = {"Accept": "application/dicom+json"}
STOW = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=walker', **DICOM_JSON}
PROFILE = {"specialties": ["cardiology"], "icd10_prefixes": ["I2"], "title": "attending", "years_practice": 6,
           "licence_region": "440000"}
AVAILABILITY = {"languages": ["zh"], "max_concurrent": 2, "on_duty": False, "online": False}
REPORT = {"findings": "walker", "diagnoses": [{"code": "I21.9", "primary": True}]}

RULES: Final[Mapping[tuple[str, str], Rule]] = {
    # --- framework and public ---------------------------------------------------------------------------
    ("GET", "/openapi.json"): Rule(PUBLIC),
    ("GET", "/docs"): Rule(PUBLIC),
    ("GET", "/docs/oauth2-redirect"): Rule(PUBLIC),
    ("GET", "/redoc"): Rule(PUBLIC),
    ("GET", "/healthz"): Rule(PUBLIC),
    ("GET", "/video/call.js"): Rule(PUBLIC),
    ("GET", "/video/call.css"): Rule(PUBLIC),
    ("GET", "/"): Rule(PUBLIC),  # the dashboard's page and files hold no data (cloud/web/routes.py)
    ("GET", "/static/{path:path}"): Rule(PUBLIC),
    ("POST", "/api/auth/login"): Rule(PUBLIC, body=lambda w, s: {"username": "nobody",
                                                                 "password": "pw-nobody-Secret!"}),
    # --- any logged-in user -----------------------------------------------------------------------------
    ("POST", "/api/auth/logout"): Rule(ANY_USER),
    ("GET", "/api/me"): Rule(ANY_USER),
    ("GET", "/api/specialties"): Rule(ANY_USER),
    # --- vitals and live (cloud/api) ----------------------------------------------------------------------
    ("GET", "/api/patients"): Rule(READ_VITALS),
    ("GET", "/api/patients/{patient_id}/vitals/latest"): Rule(READ_VITALS, PATIENTS),
    ("GET", "/api/patients/{patient_id}/vitals"): Rule(READ_VITALS, PATIENTS,
                                                       query=lambda w, s: {"kind": "heart_rate"}),
    ("GET", "/api/patients/{patient_id}/news2"): Rule(READ_VITALS, PATIENTS),
    ("WS", "/api/live"): Rule(READ_VITALS),
    # --- dashboard views (cloud/web) ---------------------------------------------------------------------------
    ("GET", "/api/ward/overview"): Rule(READ_VITALS, PATIENTS, query=lambda w, s: {"site": s},
                                        hidden=empty_list("patients")),
    ("GET", "/api/admin/edges"): Rule(ADMIN),
    ("GET", "/api/admin/devices"): Rule(ADMIN),
    ("GET", "/api/admin/stats"): Rule(ADMIN),
    # --- FHIR export --------------------------------------------------------------------------------------
    ("GET", "/fhir/Observation"): Rule(EXPORT_FHIR, PATIENTS, query=lambda w, s: {"patient": w.patient(s)},
                                       hidden=empty_bundle),
    ("GET", "/fhir/Patient/{fhir_id}"): Rule(EXPORT_FHIR, PATIENTS),
    ("GET", "/fhir/Device/{fhir_id}"): Rule(EXPORT_FHIR, PATIENTS, params={"fhir_id": lambda w, s: w.device(s)}),
    # --- patient identity (cloud/identity) ------------------------------------------------------------------
    ("POST", "/api/patients"): Rule(COUNTY_DOCTOR, body=lambda w, s: {"name": unique("病人")}),
    ("GET", "/api/patients/lookup"): Rule(IDENTITY_READERS, IDENTITY,
                                          query=lambda w, s: {"national_id": w.national_id(s)},
                                          hidden=empty_list("patients")),
    ("GET", "/api/patients/{patient_id}/identity"): Rule(IDENTITY_READERS, IDENTITY),
    ("PATCH", "/api/patients/{patient_id}/identity"): Rule(COUNTY_DOCTOR, IDENTITY,
                                                           body=lambda w, s: {"phone": "13800000001"}),
    # --- users and expert profiles (cloud/users) -------------------------------------------------------------
    ("GET", "/api/admin/users"): Rule(ADMIN),
    ("POST", "/api/admin/users"): Rule(ADMIN, body=lambda w, s: {
        "username": unique("walker"), "password": "walker passphrase", "roles": ["expert"]}),
    ("GET", "/api/admin/users/{user_id}"): Rule(ADMIN),
    ("PATCH", "/api/admin/users/{user_id}"): Rule(ADMIN, body=lambda w, s: {"display_name": unique("Victim ")}),
    ("POST", "/api/admin/users/{user_id}/password"): Rule(ADMIN, body=lambda w, s: {"password": "walker passphrase"}),
    ("DELETE", "/api/admin/users/{user_id}/sessions"): Rule(ADMIN),
    ("GET", "/api/admin/users/{user_id}/profile"): Rule(ADMIN, params={"user_id": lambda w, s: w.victim_expert_id}),
    ("PUT", "/api/admin/users/{user_id}/profile"): Rule(ADMIN, params={"user_id": lambda w, s: w.victim_expert_id},
                                                        body=lambda w, s: PROFILE),
    ("GET", "/api/me/profile"): Rule(EXPERT),
    ("PUT", "/api/me/profile"): Rule(EXPERT, body=lambda w, s: AVAILABILITY),
    # --- audit (cloud/audit) -----------------------------------------------------------------------------------
    ("GET", "/api/audit"): Rule(ADMIN),
    ("GET", "/api/audit/head"): Rule(ADMIN),
    # --- DICOMweb (cloud/dicomweb): site-scoped like vitals -------------------------------------------------------
    ("GET", "/dicomweb/studies"): Rule(READ_VITALS, PATIENTS, headers=DICOM_JSON, hidden=empty_list(),
                                       query=lambda w, s: {"StudyInstanceUID": w.dicom(s).study}),
    ("GET", "/dicomweb/studies/{study}/series"): Rule(READ_VITALS, PATIENTS, headers=DICOM_JSON,
                                                      hidden=empty_list()),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances"): Rule(READ_VITALS, PATIENTS, headers=DICOM_JSON,
                                                                         hidden=empty_list()),
    ("GET", "/dicomweb/studies/{study}/metadata"): Rule(READ_VITALS, PATIENTS, headers=DICOM_JSON),
    ("GET", "/dicomweb/studies/{study}/series/{series}/metadata"): Rule(READ_VITALS, PATIENTS, headers=DICOM_JSON),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata"): Rule(
        READ_VITALS, PATIENTS, headers=DICOM_JSON),
    ("GET", "/dicomweb/studies/{study}"): Rule(READ_VITALS, PATIENTS),
    ("GET", "/dicomweb/studies/{study}/series/{series}"): Rule(READ_VITALS, PATIENTS),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}"): Rule(READ_VITALS, PATIENTS),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame_list}"): Rule(
        READ_VITALS, PATIENTS),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}"): Rule(
        READ_VITALS, PATIENTS, also=frozenset({404})),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered"): Rule(READ_VITALS, PATIENTS),
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered"): Rule(
        READ_VITALS, PATIENTS),
    ("GET", "/dicomweb/studies/{study}/series/{series}/thumbnail"): Rule(READ_VITALS, PATIENTS),
    # --- consultations (cloud/consult): the walker's consultations are drafts, one per site --------------------------
    ("POST", "/api/consultations"): Rule(COUNTY_DOCTOR, PATIENTS, body=lambda w, s: {
        "patient_id": w.patient(s), "specialty": "cardiology", "chief_complaint": "胸痛 2小时"}),
    ("GET", "/api/consultations"): Rule(CONSULT_READERS),
    ("GET", "/api/consultations/{consultation_id}"): Rule(CONSULT_READERS, CONSULTATIONS),
    ("PATCH", "/api/consultations/{consultation_id}"): Rule(COUNTY_DOCTOR, CONSULTATIONS, also=frozenset({409}),
                                                            body=lambda w, s: {"chief_complaint": "胸痛 3小时"}),
    ("POST", "/api/consultations/{consultation_id}/attachments"): Rule(
        COUNTY_DOCTOR, CONSULTATIONS, also=frozenset({409}),
        body=lambda w, s: {"study_instance_uid": w.dicom(s).study}),
    ("DELETE", "/api/consultations/{consultation_id}/attachments/{study_instance_uid}"): Rule(
        COUNTY_DOCTOR, CONSULTATIONS, also=frozenset({404, 409})),
    ("POST", "/api/consultations/{consultation_id}/submit"): Rule(COUNTY_DOCTOR, CONSULTATIONS,
                                                                  also=frozenset({409, 422})),
    ("GET", "/api/consultations/{consultation_id}/matches"): Rule(REQUESTERS_AND_ADMINS, CONSULTATIONS,
                                                                  also=frozenset({409})),
    ("POST", "/api/consultations/{consultation_id}/accept"): Rule(EXPERT, nowhere),
    ("POST", "/api/consultations/{consultation_id}/decline"): Rule(EXPERT, nowhere, body=lambda w, s: {}),
    ("POST", "/api/consultations/{consultation_id}/offer"): Rule(
        ADMIN, CONSULTATIONS, also=frozenset({409, 422}), body=lambda w, s: {"expert_id": w.victim_expert_id}),
    ("POST", "/api/consultations/{consultation_id}/session"): Rule(SESSION_PARTIES, CONSULTATIONS,
                                                                   also=frozenset({409})),
    ("POST", "/api/consultations/{consultation_id}/report"): Rule(EXPERT, nowhere, body=lambda w, s: REPORT),
    ("GET", "/api/consultations/{consultation_id}/report"): Rule(CONSULT_READERS, CONSULTATIONS,
                                                                 also=frozenset({404})),
    ("GET", "/api/consultations/{consultation_id}/report/verify"): Rule(CONSULT_READERS, CONSULTATIONS,
                                                                        also=frozenset({404})),
    ("GET", "/api/consultations/{consultation_id}/report.pdf"): Rule(CONSULT_READERS, CONSULTATIONS,
                                                                     also=frozenset({404})),
    ("POST", "/api/consultations/{consultation_id}/close"): Rule(REQUESTERS_AND_ADMINS, CONSULTATIONS,
                                                                 also=frozenset({409}), body=lambda w, s: {}),
    ("POST", "/api/consultations/{consultation_id}/cancel"): Rule(REQUESTERS_AND_ADMINS, CONSULTATIONS,
                                                                  also=frozenset({409}),
                                                                  body=lambda w, s: {"reason": "walker"}),
    ("GET", "/api/icd10"): Rule(ICD10_USERS, query=lambda w, s: {"q": "I21"}),
    ("POST", "/api/triage"): Rule(CONSULT_READERS, body=lambda w, s: {"text": "胸痛 伴 大汗 2小时"}),
    # A call needs an accepted consultation: the walker's drafts refuse everyone, participants included.
    ("WS", "/api/consultations/{consultation_id}/call"): Rule(SESSION_PARTIES, nowhere),
    # Recording consent and recordings (cloud/video/consent_routes.py, cloud/recordings): the participants only
    # (admins included in nothing: 404). Consent is recorded by the county doctor, for calls that can run (409
    # for the walker's drafts); the walker seeds no recording (404).
    ("GET", "/api/consultations/{consultation_id}/recording-consent"): Rule(SESSION_PARTIES, CONSULTATIONS),
    ("POST", "/api/consultations/{consultation_id}/recording-consent"): Rule(
        COUNTY_DOCTOR, CONSULTATIONS, also=frozenset({409}), body=lambda w, s: {"given_by": "patient"}),
    ("POST", "/api/consultations/{consultation_id}/recording-consent/revoke"): Rule(
        SESSION_PARTIES, CONSULTATIONS, also=frozenset({409})),
    ("GET", "/api/consultations/{consultation_id}/recordings"): Rule(SESSION_PARTIES, CONSULTATIONS),
    ("GET", "/api/consultations/{consultation_id}/recordings/{recording_id}"): Rule(
        SESSION_PARTIES, CONSULTATIONS, also=frozenset({404})),
    # --- STOW-RS from edges (cloud/dicomweb/stow.py): signed by the edge's key, no user session -------------------
    ("POST", "/dicomweb/studies"): Rule(EDGES_ONLY, headers=STOW),
    ("POST", "/dicomweb/studies/{study}"): Rule(EDGES_ONLY, headers=STOW),
    ("PUT", "/api/edge/recordings/{recording_id}"): Rule(EDGES_ONLY),
    # --- incidents, on-call and alerting configuration (cloud/alerting) -----------------------------------------
    # The walker seeds no incident, rotation, override or channel: allowed callers answer 404 for them, and
    # configuration bodies are left to cloud/alerting's own tests (allowed callers may answer 422).
    ("GET", "/api/incidents"): Rule(READ_VITALS),
    ("GET", "/api/incidents/{incident_id}"): Rule(READ_VITALS, PATIENTS, also=frozenset({404})),
    ("POST", "/api/incidents/{incident_id}/acknowledge"): Rule(HANDLE_INCIDENTS, PATIENTS, also=frozenset({404})),
    ("POST", "/api/incidents/{incident_id}/resolve"): Rule(HANDLE_INCIDENTS, PATIENTS, also=frozenset({404})),
    ("GET", "/api/oncall/now"): Rule(READ_VITALS, PATIENTS, query=lambda w, s: {"site": s}),
    ("GET", "/api/oncall/departments"): Rule(ADMIN),
    ("PUT", "/api/oncall/departments/{site_id}/{department_id}"): Rule(ADMIN, also=frozenset({422})),
    ("DELETE", "/api/oncall/departments/{site_id}/{department_id}"): Rule(ADMIN, also=frozenset({404})),
    ("GET", "/api/oncall/rotations"): Rule(ADMIN),
    ("PUT", "/api/oncall/rotations"): Rule(ADMIN, also=frozenset({422})),
    ("DELETE", "/api/oncall/rotations/{rotation_id}"): Rule(ADMIN, also=frozenset({404})),
    ("GET", "/api/oncall/overrides"): Rule(ADMIN),
    ("POST", "/api/oncall/overrides"): Rule(ADMIN, also=frozenset({422})),
    ("DELETE", "/api/oncall/overrides/{override_id}"): Rule(ADMIN, also=frozenset({404})),
    ("GET", "/api/alerting/policies"): Rule(ADMIN),
    ("PUT", "/api/alerting/policies/{site_id}"): Rule(ADMIN, also=frozenset({422})),
    ("DELETE", "/api/alerting/policies/{site_id}"): Rule(ADMIN, also=frozenset({404})),
    ("GET", "/api/alerting/channels"): Rule(ADMIN),
    ("PUT", "/api/alerting/channels/{channel_id}"): Rule(ADMIN, also=frozenset({422})),
    ("DELETE", "/api/alerting/channels/{channel_id}"): Rule(ADMIN, also=frozenset({404})),
    ("GET", "/api/alerting/contacts/{user_id}"): Rule(ADMIN),
    ("PUT", "/api/alerting/contacts/{user_id}/{channel_id}"): Rule(ADMIN, also=frozenset({404, 422})),
    ("DELETE", "/api/alerting/contacts/{user_id}/{channel_id}"): Rule(ADMIN, also=frozenset({404})),
    ("GET", "/api/alerting/deliveries"): Rule(ADMIN),
    ("GET", "/api/alerting/deliveries/failed"): Rule(ADMIN),
}
