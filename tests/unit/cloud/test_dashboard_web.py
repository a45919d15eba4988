"""The dashboard's server side without services: static serving with its security headers, the message
catalogues, the audit window, ward ordering and NEWS2 inputs, and the admin shaping of edges and SLA days."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.api import queries, vitals_service
from cloud.api.schemas import News2Out
from cloud.consult.sla import SlaPolicy
from cloud.web import admin, ward
from cloud.web.audit_window import AuditWindow
from cloud.web.routes import CONTENT_SECURITY_POLICY, STATIC_DIR
from cloud.web.routes import router as web_router
from proto.quality import Quality
from proto.vocabulary import kind

T0 = dt.datetime(2026, 3, 10, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    app.include_router(web_router)
    return TestClient(app)


def test_the_app_is_served_at_the_root_with_a_strict_csp(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"
    assert b'<script src="/static/app.js" type="module">' in response.content


def test_static_files_revalidate_with_etags(client: TestClient) -> None:
    first = client.get("/static/app.js")
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    again = client.get("/static/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200
    assert client.get("/static/vendor/uplot/LICENSE").status_code == 200


@pytest.mark.parametrize("path", ["/static/../routes.py", "/static/nope.js", "/static/index.html",
                                  "/static/%2e%2e/routes.py"])
def test_only_known_files_are_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_no_inline_script_or_style_in_the_page() -> None:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "style=" not in html and "<style" not in html
    for script in STATIC_DIR.rglob("*.js"):
        if "vendor" in script.parts:
            continue
        text = script.read_text(encoding="utf-8")
        unsafe = r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|\beval\(|setAttribute\('style'"
        assert not re.search(unsafe, text), script


def _catalogue(locale: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((STATIC_DIR / "i18n" / f"{locale}.json").read_text(encoding="utf-8"))
    return data


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    zh, en = _catalogue("zh-CN"), _catalogue("en")
    assert zh.keys() == en.keys()
    for key in zh:
        assert set(re.findall(r"\{(\w+)\}", zh[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key
        assert zh[key] and en[key], key


def _sources() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [STATIC_DIR / "app.js", *(STATIC_DIR / "js").rglob("*.js")])


def test_every_literal_message_key_in_the_code_exists() -> None:
    keys = set(_catalogue("en"))
    used = set(re.findall(r"\bt\('([a-z0-9_.-]+)'", _sources())) | set(
        re.findall(r'data-i18n="([a-z0-9_.-]+)"', (STATIC_DIR / "index.html").read_text(encoding="utf-8")))
    assert used and used <= keys, sorted(used - keys)


def test_every_templated_message_family_is_complete() -> None:
    keys = set(_catalogue("en"))
    families = {
        "kind": ["heart_rate", "spo2", "respiratory_rate", "systolic_bp", "diastolic_bp", "body_temperature",
                 "consciousness", "on_oxygen", "glucose", "blood_pressure"],
        "risk": ["low", "low-medium", "medium", "high"], "priority": ["high", "medium", "low"],
        "alerts.state": ["triggered", "acknowledged", "resolved"], "urgency": ["routine", "urgent", "emergency"],
        "consult.state": ["draft", "requested", "offered", "accepted", "in_session", "report_submitted", "closed",
                          "cancelled", "escalated"],
        "viewer.preset": ["default", "lung", "mediastinum", "bone", "brain"],
        "admin.tab": ["edges", "devices", "users", "oncall", "stats"],
        "role": ["admin", "county_doctor", "expert", "on_call"],
        "device": ["connected", "disconnected", "reconnecting", "lost"],
    }
    missing = [f"{family}.{name}" for family, names in families.items() for name in names
               if f"{family}.{name}" not in keys]
    assert not missing


def test_uplot_is_vendored_with_its_licence() -> None:
    vendor = STATIC_DIR / "vendor" / "uplot"
    assert (vendor / "uPlot.iife.min.js").read_bytes().startswith(b"/*! https://github.com/leeoniya/uPlot (v1.6.")
    assert "MIT License" in (vendor / "LICENSE").read_text(encoding="utf-8")


# --- audit window ---------------------------------------------------------------------------------------------


def test_audit_window_records_each_patient_once_per_window() -> None:
    window = AuditWindow(dt.timedelta(minutes=15))
    assert window.due(b"s1", ["P1", "P2"], T0) == ["P1", "P2"]
    window.recorded(b"s1", ["P1", "P2"], T0)
    assert window.due(b"s1", ["P1", "P2", "P3"], T0 + dt.timedelta(minutes=14)) == ["P3"]
    assert window.due(b"s2", ["P1"], T0) == ["P1"]  # another session records on its own
    assert window.due(b"s1", ["P1"], T0 + dt.timedelta(minutes=15)) == ["P1"]


def test_audit_window_forgets_the_oldest_sessions() -> None:
    window = AuditWindow(max_sessions=2)
    for session in (b"a", b"b", b"c"):
        window.recorded(session, ["P1"], T0)
    assert window.due(b"a", ["P1"], T0) == ["P1"] and window.due(b"c", ["P1"], T0) == []


# --- ward ----------------------------------------------------------------------------------------------------


def _sample(patient: str, name: str, value: float, *, minutes_ago: float = 1, quality: int = 0
            ) -> queries.LatestSample:
    return queries.LatestSample(patient, kind(name).wire_id, T0 - dt.timedelta(minutes=minutes_ago), value,
                                quality, "dev-1")


def test_news2_inputs_skip_artefacts_and_other_kinds() -> None:
    inputs = vitals_service.news2_inputs([
        _sample("P1", "heart_rate", 120), _sample("P1", "spo2", 80, quality=int(Quality.MOTION)),
        _sample("P1", "body_weight", 70), _sample("P2", "respiratory_rate", 26),
    ])
    assert set(inputs["P1"]) == {"heart_rate"} and inputs["P2"]["respiratory_rate"].value == 26


def _news2(total: int, risk: str) -> News2Out:
    return News2Out(time=T0, total=total, risk=risk, subscores={}, complete=True, missing=[])


def test_tiles_sort_by_risk_band_then_score_then_place() -> None:
    tiles: list[dict[str, Any]] = [
        {"patient_id": "A", "site_id": "s", "ward": "w", "bed": "2", "news2": _news2(3, "low-medium"), "risk_rank": 2},
        {"patient_id": "B", "site_id": "s", "ward": "w", "bed": "1", "news2": _news2(4, "low"), "risk_rank": 1},
        {"patient_id": "C", "site_id": "s", "ward": "w", "bed": "3", "news2": _news2(7, "high"), "risk_rank": 4},
        {"patient_id": "D", "site_id": "s", "ward": "w", "bed": "4", "news2": None, "risk_rank": 0},
        {"patient_id": "E", "site_id": "s", "ward": "w", "bed": "0", "news2": _news2(9, "high"), "risk_rank": 4},
    ]
    assert [t["patient_id"] for t in sorted(tiles, key=ward.sort_key)] == ["E", "C", "A", "B", "D"]
    assert ward.risk_rank(_news2(5, "medium")) == 3 and ward.risk_rank(None) == 0


# --- admin -------------------------------------------------------------------------------------------------------


def test_edge_rows_unpack_the_status_message() -> None:
    body = {"software_version": "0.1.0", "devices_connected": 3,
            "outbox": {"vitals": {"depth": 12, "bytes": 4000, "oldest_age_s": 2.5}, "dicom": {"depth": 1, "bytes": 9}}}
    edge = admin.edge_out(("e1", "s1", "Site", "站", "Edge 1", "active", T0, "online", T0, body))
    assert edge.online is True and edge.outbox_depth == 13 and edge.outbox["vitals"].oldest_age_s == 2.5
    assert edge.software_version == "0.1.0" and edge.devices_connected == 3
    never = admin.edge_out(("e2", "s1", "Site", None, None, "revoked", None, None, None, None))
    assert never.online is None and never.outbox_depth is None and never.outbox == {}


def test_response_days_count_those_within_their_urgencys_sla() -> None:
    day = dt.date(2026, 3, 10)
    sla = SlaPolicy()
    rows = [(day, "routine", 600.0), (day, "routine", 1200.0), (day, "emergency", 200.0), (day, "emergency", 400.0)]
    (out,) = admin.response_days(rows, [day], sla)
    assert out.accepted == 4 and out.within_sla == 2  # 600 <= 900 (routine) and 200 <= 300 (emergency)
    assert out.median_response_s == pytest.approx(500.0)
    (empty,) = admin.response_days([], [day], sla)
    assert empty.accepted == 0 and empty.median_response_s is None


def test_day_range_ends_today_in_the_time_zone() -> None:
    import zoneinfo

    days = admin.day_range(3, zoneinfo.ZoneInfo("Asia/Shanghai"), dt.datetime(2026, 3, 10, 17, 0, tzinfo=dt.UTC))
    assert days == [dt.date(2026, 3, 9), dt.date(2026, 3, 10), dt.date(2026, 3, 11)]
