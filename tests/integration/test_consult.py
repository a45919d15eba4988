"""The tele-consultation workflow end to end through the HTTP API, against a real PostgreSQL, with the SLA
scheduler driven by a fake clock: triage, snapshot, matching, reminders, expiry and re-offer, the signed
report and its PDF, tampering, declines and escalation, and who may see and do what."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from cloud.api.auth.models import Role, User
from cloud.api.auth.scoping import SiteScope, access_scope
from cloud.identity.crypto import decrypt_field
from cloud.identity.keys import read_ring_file
from deploy.postgres import PostgresEndpoint
from proto import keys
from tests.integration.test_api_support import bearer, login, scratch_database
from tests.integration.test_consult_support import (
    STUDY_A1,
    STUDY_B1,
    FakeClock,
    consult_client,
    expert_login,
    seed_consult_world,
    user_id,
    wait_for,
)

pytestmark = pytest.mark.integration

START = dt.datetime.now(dt.UTC).replace(microsecond=0)
FACTORS = ("title", "experience", "response_time", "load", "language", "rating")


@pytest.fixture(scope="module")
def db(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    with scratch_database(postgres) as endpoint:
        seed_consult_world(endpoint.url, START)
        yield endpoint


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("consult-keys")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(dt.datetime.now(dt.UTC))


@pytest.fixture
def client(db: PostgresEndpoint, keys_dir: Path, clock: FakeClock) -> Iterator[TestClient]:
    with consult_client(db.url, keys_dir, clock) as test_client:
        yield test_client


@pytest.fixture
def tokens(client: TestClient) -> dict[str, str]:
    found = {name: login(client, name) for name in ("admin", "doc-a", "doc-b", "expert", "oncall-a")}
    found |= {name: expert_login(client, name) for name in ("card-chief", "card-att", "resp-chief")}
    return found


class Api:
    """Calls as one user."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = bearer(token)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self.headers, **kwargs)

    def post(self, path: str, body: Any = None) -> Any:
        return self.client.post(path, headers=self.headers, json=body if body is not None else {})

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = self.get(path) if method == "GET" else self.post(path, body)
        assert response.status_code == status, response.text
        return response.json() if response.content and response.headers.get("content-type", "").startswith(
            "application/json") else response


def as_(client: TestClient, tokens: dict[str, str], name: str) -> Api:
    return Api(client, tokens[name])


def new_consultation(doc: Api, **body: Any) -> dict[str, Any]:
    draft: dict[str, Any] = {
        "patient_id": "P-A1", "specialty": "cardiology", "icd10_codes": ["I21.4"], "language": "zh",
        "chief_complaint": "胸痛 伴 大汗 2小时", "clinical_notes": "既往高血压10年。",
        "question": "是否需要转诊行PCI？",
        "studies": [STUDY_A1],
    }
    created: dict[str, Any] = doc.ok("POST", "/api/consultations", draft | body, status=201)
    return created


def events(detail: dict[str, Any]) -> list[str]:
    return [e["event"] for e in detail["timeline"]]


def test_the_full_consultation_path_with_an_expired_offer(
    client: TestClient, tokens: dict[str, str], clock: FakeClock, db: PostgresEndpoint, keys_dir: Path,
) -> None:
    doc, chief, attending = (as_(client, tokens, n) for n in ("doc-a", "card-chief", "card-att"))
    created = new_consultation(doc)
    cid = created["consultation_id"]
    assert created["state"] == "draft" and created["actions"] == ["submit", "cancel"]
    assert [a["study_instance_uid"] for a in created["attachments"]] == [STUDY_A1]
    assert created["attachments"][0]["modalities"] == ["CT"]

    # Submission: triage, NEWS2 snapshot, urgency and the first offer to the best match.
    submitted = doc.ok("POST", f"/api/consultations/{cid}/submit")
    assert submitted["state"] == "offered"
    assert submitted["urgency"] == "emergency"  # red flag "acs" and a high NEWS2 both call for it
    assert submitted["triage"]["specialties"][0]["specialty"] == "cardiology"
    assert [f["id"] for f in submitted["triage"]["red_flags"]] == ["acs"]
    assert submitted["news2"]["risk"] == "high" and submitted["news2"]["total"] >= 7
    assert submitted["vitals_snapshot"]["vitals"]["heart_rate"]["value"] == 128.0
    first = submitted["offers"][0]
    assert first["expert_name"] == "Card Chief" and first["method"] == "rules"
    explanation = first["explanation"]
    assert sum(explanation["factors"][f]["contribution"] for f in FACTORS) == explanation["score"]
    assert submitted["deadlines"]["respond_by"] is not None
    assert events(submitted) == ["created", "study_attached", "submit", "offer"]

    # Only the expert holding the offer sees it; other sites and other experts get 404.
    assert chief.ok("GET", f"/api/consultations/{cid}")["actions"] == ["accept", "decline"]
    for name in ("card-att", "doc-b", "expert", "resp-chief"):
        assert as_(client, tokens, name).get(f"/api/consultations/{cid}").status_code == 404, name
    assert [c["consultation_id"] for c in chief.ok("GET", "/api/consultations")["consultations"]] == [cid]

    # The matches preview explains who is next (the chief holds the offer and is excluded).
    matches = doc.ok("GET", f"/api/consultations/{cid}/matches")
    assert matches["remaining"] == {"specialty": 4, "icd10": 4, "region": 3, "available": 2, "capacity": 2,
                                    "not_excluded": 1}
    assert [c["expert_id"] for c in matches["candidates"]] == [user_id(db.url, "card-att")]

    # Half the 5-minute emergency response target: a reminder. At the target: expiry and re-offer.
    clock.advance(minutes=3)
    reminded = wait_for(lambda: "reminder" in events(doc.ok("GET", f"/api/consultations/{cid}"))
                        and doc.ok("GET", f"/api/consultations/{cid}"))
    assert reminded["state"] == "offered" and reminded["offers"][0]["reminded_at"] is not None
    clock.advance(minutes=2, seconds=1)
    reoffered = wait_for(lambda: (d := doc.ok("GET", f"/api/consultations/{cid}"))["offers"][-1]["expert_name"]
                         == "Card Att" and d)
    assert reoffered["state"] == "offered"
    assert [o["outcome"] for o in reoffered["offers"]] == ["expired", "pending"]
    assert events(reoffered)[-3:] == ["reminder", "expire", "offer"]
    assert chief.get(f"/api/consultations/{cid}").status_code == 404  # the expired offer is gone from sight

    # The attending accepts, opens the session and reports.
    accepted = attending.ok("POST", f"/api/consultations/{cid}/accept")
    assert accepted["state"] == "accepted" and accepted["assigned_expert_id"] == user_id(db.url, "card-att")
    assert doc.ok("POST", f"/api/consultations/{cid}/session")["state"] == "in_session"
    follow_up = (clock.now + dt.timedelta(days=14)).date().isoformat()
    signed = attending.ok("POST", f"/api/consultations/{cid}/report", {
        "findings": "心电图 V1-V4 导联 ST 段压低，肌钙蛋白升高，考虑 NSTEMI。",
        "diagnoses": [{"code": "I21.4", "primary": True}, {"code": "i10"}],
        "recommendations": "立即转上级医院行冠状动脉造影。",
        "prescriptions": [{"drug": "阿司匹林肠溶片", "dose": "300", "unit": "mg", "route": "PO", "frequency": "STAT",
                           "duration_days": 1},
                          {"drug": "阿托伐他汀钙片", "dose": "40", "unit": "mg", "route": "PO", "frequency": "QN",
                           "duration_days": 30}],
        "follow_up_date": follow_up,
    }, status=201)
    assert signed["algorithm"] == "Ed25519" and len(signed["key_fingerprint"]) == 16
    assert signed["body"]["diagnoses"][1]["code"] == "I10" and signed["body"]["patient_id"] == "P-A1"

    verified = doc.ok("GET", f"/api/consultations/{cid}/report/verify")
    assert verified["valid"] is True and verified["key_fingerprint"] == signed["key_fingerprint"]

    pdf = doc.get(f"/api/consultations/{cid}/report.pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-")
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-", "-"], input=pdf.content, capture_output=True, check=True).stdout
        assert f"Key fingerprint: {signed['key_fingerprint']}".encode() in text

    closed = doc.ok("POST", f"/api/consultations/{cid}/close", {"rating": 5})
    assert closed["state"] == "closed" and closed["rating"] == 5
    assert events(closed) == ["created", "study_attached", "submit", "offer", "reminder", "expire", "offer",
                              "accept", "start_session", "submit_report", "close"]
    assert attending.ok("GET", f"/api/consultations/{cid}")["state"] == "closed"  # assigned: still visible

    # Every transition is in the hash-chained audit log; the private key is stored encrypted under the
    # identity key ring, bound to the expert and the key fingerprint.
    with psycopg.connect(db.url) as conn:
        audited = conn.execute(
            "SELECT detail ->> 'to' FROM access_log WHERE event = 'consultation.transition' AND entity_id = %s"
            " ORDER BY id", (cid,)).fetchall()
        key_row = conn.execute("SELECT public_key, private_key_enc FROM expert_signing_keys WHERE fingerprint = %s",
                               (signed["key_fingerprint"],)).fetchone()
    assert [r[0] for r in audited] == ["draft", "requested", "offered", "requested", "offered", "accepted",
                                       "in_session", "report_submitted", "closed"]
    assert key_row is not None
    public_text, sealed = key_row[0], bytes(key_row[1])
    ring = read_ring_file(keys_dir / "identity_keys.json")
    private_text = decrypt_field(ring, sealed, table="expert_signing_keys", column="private_key_enc",
                                 row_id=f"{user_id(db.url, 'card-att')}/{signed['key_fingerprint']}")
    assert keys.public_to_text(keys.private_from_text(private_text).public_key()) == public_text
    assert private_text.encode() not in sealed  # encrypted at rest

    # Tampering with the stored report breaks verification, and the PDF is refused.
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("UPDATE consultation_reports SET body = jsonb_set(body, '{prescriptions,0,dose}', '\"3000\"')"
                     " WHERE consultation_id = %s", (cid,))
    tampered = doc.ok("GET", f"/api/consultations/{cid}/report/verify")
    assert tampered["valid"] is False and "does not match" in tampered["reason"]
    assert doc.get(f"/api/consultations/{cid}/report.pdf").status_code == 409


def test_declines_go_to_the_next_match_until_nobody_is_left(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint,
) -> None:
    doc, chief, attending, admin = (as_(client, tokens, n) for n in ("doc-a", "card-chief", "card-att", "admin"))
    cid = new_consultation(doc, chief_complaint="心悸 3天", icd10_codes=[])["consultation_id"]
    assert doc.ok("POST", f"/api/consultations/{cid}/submit")["offers"][0]["expert_name"] == "Card Chief"

    assert chief.post(f"/api/consultations/{cid}/decline", {"reason": "在手术中"}).status_code == 204
    after_first = doc.ok("GET", f"/api/consultations/{cid}")
    assert after_first["state"] == "offered" and after_first["offers"][-1]["expert_name"] == "Card Att"
    assert after_first["offers"][0]["decline_reason"] == "在手术中"
    assert attending.post(f"/api/consultations/{cid}/decline").status_code == 204

    escalated = doc.ok("GET", f"/api/consultations/{cid}")
    assert escalated["state"] == "escalated" and escalated["escalated_at"] is not None
    assert escalated["timeline"][-1]["detail"]["remaining"]["not_excluded"] == 0
    assert escalated["actions"] == ["cancel"]

    # An admin offers it by hand (to the chief again); the requester then cancels and the offer is withdrawn.
    offered = admin.ok("POST", f"/api/consultations/{cid}/offer", {"expert_id": user_id(db.url, "card-chief")})
    assert offered["state"] == "offered" and offered["offers"][-1]["method"] == "admin"
    cancelled = doc.ok("POST", f"/api/consultations/{cid}/cancel", {"reason": "患者已转院"})
    assert cancelled["state"] == "cancelled" and cancelled["offers"][-1]["outcome"] == "withdrawn"
    assert chief.get(f"/api/consultations/{cid}").status_code == 404


def test_wrong_states_parties_and_inputs_are_refused(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint,
) -> None:
    doc, doc_b, chief, oncall = (as_(client, tokens, n) for n in ("doc-a", "doc-b", "card-chief", "oncall-a"))

    # Drafts are for own-site patients, with known codes and the patient's own studies.
    assert doc_b.post("/api/consultations", {"patient_id": "P-A1"}).status_code == 404
    assert doc.post("/api/consultations", {"patient_id": "P-A1", "icd10_codes": ["Z99.9"]}).status_code == 422
    assert doc.post("/api/consultations", {"patient_id": "P-A1", "studies": [STUDY_B1]}).status_code == 422
    assert chief.post("/api/consultations", {"patient_id": "P-A1"}).status_code == 403  # role
    assert oncall.get("/api/consultations").status_code == 403

    cid = new_consultation(doc, studies=[])["consultation_id"]
    assert doc.post(f"/api/consultations/{cid}/close").status_code == 409  # (close, draft) is not in the table
    assert doc_b.post(f"/api/consultations/{cid}/submit").status_code == 404  # another site's: not found
    assert doc.ok("POST", f"/api/consultations/{cid}/attachments", {"study_instance_uid": STUDY_A1})[
        "attachments"][0]["study_instance_uid"] == STUDY_A1
    response = client.patch(f"/api/consultations/{cid}", headers=doc.headers, json={"question": "请会诊"})
    assert response.status_code == 200 and response.json()["question"] == "请会诊"

    assert doc.ok("POST", f"/api/consultations/{cid}/submit")["state"] == "offered"
    assert doc.post(f"/api/consultations/{cid}/submit").status_code == 409  # already requested
    assert client.patch(f"/api/consultations/{cid}", headers=doc.headers, json={"question": "x"}).status_code == 409
    assert as_(client, tokens, "card-att").post(f"/api/consultations/{cid}/accept").status_code == 404
    assert chief.post(f"/api/consultations/{cid}/report", {"findings": "x", "diagnoses": [{"code": "I10"}]}
                      ).status_code == 409  # no report before the session
    assert doc.post(f"/api/consultations/{cid}/accept").status_code == 403  # county doctors do not accept

    assert chief.ok("POST", f"/api/consultations/{cid}/accept")["state"] == "accepted"
    assert doc.post(f"/api/consultations/{cid}/cancel").status_code == 409  # accepted: too late to cancel
    assert chief.ok("POST", f"/api/consultations/{cid}/session")["state"] == "in_session"
    bad = chief.post(f"/api/consultations/{cid}/report", {
        "findings": "x", "diagnoses": [{"code": "I10"}],
        "prescriptions": [{"drug": "x", "dose": "5", "unit": "mg", "route": "PO", "frequency": "QD",
                           "duration_days": 200}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "prescriptions.0.duration_days"]
    assert doc.get(f"/api/consultations/{cid}/report").status_code == 404  # nothing signed yet
    chief.ok("POST", f"/api/consultations/{cid}/report", {"findings": "稳定型心绞痛。",
                                                         "diagnoses": [{"code": "I20.9"}]}, status=201)
    assert chief.post(f"/api/consultations/{cid}/close").status_code == 403  # the requesting site closes
    assert doc.ok("POST", f"/api/consultations/{cid}/close")["state"] == "closed"


def test_an_expert_sees_only_the_patients_of_their_consultations(
    client: TestClient, tokens: dict[str, str], db: PostgresEndpoint,
) -> None:
    async def scope_of(username: str) -> SiteScope:
        expert = User(uuid.UUID(user_id(db.url, username)), username, username, frozenset({Role.EXPERT}), None)
        async with await psycopg.AsyncConnection.connect(db.url) as conn:
            return await access_scope(conn, expert)

    doc = as_(client, tokens, "doc-a")
    assert asyncio.run(scope_of("resp-chief")).is_empty  # an expert without consultations sees nobody
    cid = new_consultation(doc, patient_id="P-A2", studies=[])["consultation_id"]
    doc.ok("POST", f"/api/consultations/{cid}/submit")
    holder = doc.ok("GET", f"/api/consultations/{cid}")["offers"][-1]["expert_name"].lower().replace(" ", "-")

    scope = asyncio.run(scope_of(holder))
    assert "P-A2" in scope.patient_ids and not scope.all_sites and not scope.site_ids
    assert scope.allows_patient("site-a", "P-A2") and not scope.allows_patient("site-b", "P-B1")
    assert not scope.allows("site-a")  # never a whole site
    doc.ok("POST", f"/api/consultations/{cid}/cancel")
    assert "P-A2" not in asyncio.run(scope_of(holder)).patient_ids  # a withdrawn offer shows nothing


def test_duty_changes_reach_matching_before_the_next_refresh(db: PostgresEndpoint, keys_dir: Path) -> None:
    with consult_client(db.url, keys_dir, FakeClock(dt.datetime.now(dt.UTC)), refresh_s=3600) as client:
        doc = Api(client, login(client, "doc-a"))
        cid = new_consultation(doc, studies=[])["consultation_id"]
        chief = user_id(db.url, "card-chief")
        before = doc.ok("GET", f"/api/consultations/{cid}/matches")  # builds the matrix (kept for an hour)
        assert chief in [c["expert_id"] for c in before["candidates"]]
        set_online = "UPDATE expert_profiles SET online = %s, status_changed_at = now() WHERE user_id = %s"
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute(set_online, (False, chief))
        try:
            after = doc.ok("GET", f"/api/consultations/{cid}/matches")
            assert chief not in [c["expert_id"] for c in after["candidates"]]
            assert after["remaining"]["available"] == before["remaining"]["available"] - 1
        finally:
            with psycopg.connect(db.url, autocommit=True) as conn:
                conn.execute(set_online, (True, chief))
        doc.ok("POST", f"/api/consultations/{cid}/cancel")


def test_icd10_search_and_triage_endpoints(client: TestClient, tokens: dict[str, str]) -> None:
    doc = as_(client, tokens, "doc-a")
    zh = doc.ok("GET", "/api/icd10?q=心肌梗死&limit=3")["results"]
    assert [r["code"] for r in zh] == ["I21", "I21.0", "I21.1"] and zh[0]["name_en"] == "Acute myocardial infarction"
    assert doc.ok("GET", "/api/icd10?q=j18")["results"][0] == {
        "code": "J18", "name_en": "Pneumonia, organism unspecified", "name_zh": "肺炎，病原体未特指"}
    assert client.get("/api/icd10?q=I21").status_code == 401

    triaged = doc.ok("POST", "/api/triage", {"text": "咳嗽 发热 3天"})
    assert triaged["urgency"] == "routine" and triaged["specialties"][0]["specialty"] == "respiratory"
    english = doc.ok("POST", "/api/triage", {"text": "chest pain with sweating for 2 hours"})
    assert english["urgency"] == "emergency" and english["red_flags"][0]["id"] == "acs"
    assert as_(client, tokens, "oncall-a").post("/api/triage", {"text": "cough"}).status_code == 403
