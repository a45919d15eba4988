"""The dashboard in headless Chromium against the real service: login and role-aware navigation, live vitals
on the ward overview, the patient page's zoomable charts, an alert acknowledged from the inbox, a consultation
created, accepted and reported, a CT slice with a window preset, the admin pages, and the language switch."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from tests.browser.conftest import Session
from tests.browser.demo import Demo

OpenSession = Callable[..., Session]


def test_login_and_role_aware_navigation(session_factory: OpenSession) -> None:
    doctor = session_factory("doctor")
    doctor.page.goto(doctor.base_url + "/")
    doctor.page.fill("#username", "doc-qc")
    doctor.page.fill("#password", "wrong password")
    doctor.page.click("#login-submit")
    expect(doctor.page.locator("p.error")).to_contain_text("用户名或密码错误")
    doctor.screenshot("login-failed")
    doctor.login("doc-qc")
    expect(doctor.page).to_have_url(re.compile(r"#/ward$"))
    navs = doctor.page.locator("#nav a").evaluate_all("links => links.map(a => a.dataset.nav)")
    assert navs == ["ward", "alerts", "consult", "viewer"]
    expect(doctor.page.locator("#whoami")).to_have_text("李医生")
    doctor.screenshot("ward")
    admin = session_factory("admin")
    admin.login("admin")
    assert "admin" in admin.page.locator("#nav a").evaluate_all("links => links.map(a => a.dataset.nav)")
    oncall = session_factory("oncall")
    oncall.login("oncall-qc")
    expect(oncall.page).to_have_url(re.compile(r"#/alerts$"))
    assert oncall.page.locator("#nav a").evaluate_all("links => links.map(a => a.dataset.nav)") == [
        "ward", "alerts", "viewer"]
    oncall.page.goto(oncall.base_url + "/#/admin")
    expect(oncall.page).to_have_url(re.compile(r"#/alerts$"))  # not for this role: back home


def test_ward_overview_sorts_by_risk_and_shows_device_status(session_factory: OpenSession, demo: Demo) -> None:
    doctor = session_factory()
    doctor.login("doc-qc")
    tiles = doctor.page.locator("#ward-tiles .tile")
    expect(tiles).to_have_count(4)  # site-qc only
    order = tiles.evaluate_all("ts => ts.map(t => t.dataset.patient)")
    assert order[0] == "P-QC-001" and order[-1] == "P-QC-003"
    first = doctor.page.locator('.tile[data-patient="P-QC-001"]')
    expect(first).to_have_attribute("data-risk", "high")
    expect(first.locator(".news2")).to_have_css("background-color", "rgb(214, 47, 47)")
    expect(doctor.page.locator('.tile[data-patient="P-QC-003"]')).to_have_attribute("data-risk", "low")
    expect(doctor.page.locator('.tile[data-patient="P-QC-002"] .device')).to_have_class(re.compile("low-battery"))
    expect(doctor.page.locator('.tile[data-patient="P-QC-004"] [data-testid=technical]')).to_contain_text("信号伪差")
    doctor.screenshot("ward")


def test_live_vitals_arrive_on_the_ward_overview(session_factory: OpenSession, demo: Demo) -> None:
    doctor = session_factory()
    doctor.login("doc-qc")
    expect(doctor.page.locator("#live-state")).to_have_attribute("data-state", "open")
    tile = doctor.page.locator('.tile[data-patient="P-QC-003"]')
    expect(tile.locator('[data-kind="heart_rate"] .value')).not_to_have_text("143")
    demo.send_vitals("P-QC-003", {"heart_rate": 143, "spo2": 91, "respiratory_rate": 26})
    expect(tile.locator('[data-kind="heart_rate"] .value')).to_have_text("143")
    expect(tile.locator('[data-kind="spo2"] .value')).to_have_text("91")
    # The server's NEWS2 follows (debounced refetch): HR 143 (3), SpO2 91 (2), RR 26 (2) -> medium or worse.
    expect(doctor.page.locator('.tile[data-patient="P-QC-003"]')).not_to_have_attribute("data-risk", "low",
                                                                                       timeout=10_000)
    doctor.screenshot("live-update")
    demo.send_vitals("P-QC-003", {"heart_rate": 74, "spo2": 98, "respiratory_rate": 14})


def test_patient_page_charts_zoom_by_refetching(session_factory: OpenSession, demo: Demo) -> None:
    doctor = session_factory()
    doctor.login("doc-qc")
    doctor.page.click('.tile[data-patient="P-QC-001"]')
    expect(doctor.page).to_have_url(re.compile(r"#/patient/P-QC-001$"))
    hr = doctor.page.locator('[data-chart="hr"] .uplot')
    expect(hr).to_have_attribute("data-buckets", re.compile(r"^[1-9]\d*$"))
    expect(doctor.page.locator("#patient-studies a")).to_have_count(1)  # the CT; the ultrasound is P-QC-002's
    with doctor.page.expect_request(lambda r: "/vitals?kind=heart_rate" in r.url):
        doctor.page.click('[data-span="6h"]')  # the demo holds 3 hours: they fill the right half
    box = hr.locator(".u-over").bounding_box()
    assert box is not None
    with doctor.page.expect_request(lambda r: "/vitals?kind=heart_rate" in r.url) as request_info:
        doctor.page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
        doctor.page.mouse.down()
        doctor.page.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2, steps=8)
        doctor.page.mouse.up()
    url = request_info.value.url
    width = int(re.search(r"max_points=(\d+)", url).group(1))  # type: ignore[union-attr]
    assert abs(width - box["width"]) <= 2  # one bucket per pixel of the plot
    expect(doctor.page.locator("#reset-zoom")).to_be_visible()
    expect(hr).to_have_attribute("data-max-points", str(width))
    # 35 % of 6 hours over ~the plot's pixels: the API answers with finer (raw or 1-minute) buckets.
    doctor.page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    expect(doctor.page.locator('[data-chart="hr"] .readout')).to_have_text(re.compile(r"^\d\d:\d\d  \d+"))
    doctor.screenshot("zoomed")
    doctor.page.click("#reset-zoom")
    expect(doctor.page.locator("#reset-zoom")).to_be_hidden()


def test_alert_acknowledged_and_resolved_from_the_inbox(session_factory: OpenSession, demo: Demo) -> None:
    incident = demo.raise_alert("P-QC-001", priority="high", message="NEWS2 9: 病情恶化")
    oncall = session_factory()
    oncall.login("oncall-qc")
    card = oncall.page.locator(f'[data-incident="{incident}"]')
    expect(card).to_have_attribute("data-state", "triggered")
    expect(card).to_have_attribute("data-priority", "high")
    expect(card.locator(".prio")).to_have_css("animation-name", "flash-high")
    expect(oncall.page.locator("#alert-badge")).to_be_visible()
    expect(oncall.page.locator("#alarm-pause")).to_be_visible()  # the audible alarm is sounding
    assert oncall.page.evaluate("() => import('/static/js/alarm.js').then(m => m.stats.bursts)") >= 1
    oncall.screenshot("triggered")
    card.locator('[data-action="acknowledge"]').click()
    expect(card).to_have_attribute("data-state", "acknowledged")
    expect(card).to_contain_text("oncall-qc")
    expect(oncall.page.locator("#alarm-pause")).to_be_hidden(timeout=20_000)
    oncall.screenshot("acknowledged")
    card.locator('[data-action="resolve"]').click()
    oncall.page.locator('[data-filter="resolved"]').click()
    expect(oncall.page.locator(f'[data-incident="{incident}"]')).to_have_attribute("data-state", "resolved")


def test_consultation_created_accepted_and_reported(session_factory: OpenSession, demo: Demo) -> None:
    doctor = session_factory("doctor")
    doctor.login("doc-qc")
    doctor.page.click('#nav a[data-nav="consult"]')
    doctor.page.click("#consult-new")
    doctor.page.select_option("#c-patient", "P-QC-001")
    doctor.page.fill("#c-complaint", "发热 咳嗽 3天 伴 气促")
    doctor.page.click("#c-run-triage")
    expect(doctor.page.locator("#c-triage")).not_to_be_empty()
    expect(doctor.page.locator(f'#c-studies input[data-study="{demo.ct_study}"]')).to_be_checked()
    doctor.page.fill("#c-question", "请协助评估是否需要转诊")
    doctor.screenshot("request-form")
    doctor.page.click("#c-save")
    expect(doctor.page).to_have_url(re.compile(r"#/consult/[0-9a-f-]{36}$"))
    consultation = doctor.page.url.rsplit("/", 1)[1]
    expert_id = str(demo.users["expert-chen"])
    match = doctor.page.locator(f'#matches tr[data-expert="{expert_id}"]')
    expect(match.locator("td")).to_have_count(3 + 6)  # rank, expert, score and each factor's contribution
    expect(doctor.page.locator("#matches thead")).to_contain_text("响应速度")
    doctor.screenshot("draft-with-matches")
    doctor.page.click("#c-submit")
    expect(doctor.page.locator("#consult-detail .state").first).to_have_attribute("data-state", "offered")

    expert = session_factory("expert")
    expert.login("expert-chen")
    offer = expert.page.locator(f'[data-offer="{consultation}"]')
    expect(offer.locator("[data-testid=countdown]")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expert.screenshot("queue")
    offer.locator('[data-action="accept"]').click()
    expect(expert.page).to_have_url(re.compile(f"#/consult/{consultation}$"))
    expert.page.wait_for_selector("#c-session, #report-form")
    # Both participants get the call panel once an expert holds the consultation (docs/video.md).
    expect(expert.page.locator('#call-host [data-role="join"]')).to_be_visible()
    doctor.page.reload()
    expect(doctor.page.locator('#call-host [data-role="join"]')).to_be_visible()
    # Only the county doctor records the patient's consent to recording.
    expect(doctor.page.locator('#call-host [data-role="consent-grant"]')).to_be_visible()
    expect(expert.page.locator('#call-host [data-role="consent-grant"]')).to_be_hidden()
    expert.screenshot("call-panel")
    if expert.page.locator("#c-session").count():  # the workflow may want the session opened first
        expert.page.click("#c-session")
    expert.page.fill("#r-findings", "脓毒症可能，社区获得性肺炎。")
    expert.page.fill("#r-icd-search", "J18")
    expert.page.locator("#r-icd-results button").first.click()
    expect(expert.page.locator("#r-diagnoses li")).to_have_count(1)
    expert.page.fill("#r-recommendations", "立即血培养后经验性抗感染，监测乳酸。")
    expert.page.click("#r-add-rx")
    line = expert.page.locator("[data-rx]").first
    line.locator("[name=drug]").fill("头孢曲松")
    line.locator("[name=dose]").fill("2")
    line.locator("[name=unit]").select_option("g")
    line.locator("[name=route]").select_option("IVGTT")
    line.locator("[name=frequency]").select_option("QD")
    line.locator("[name=duration_days]").fill("7")
    expert.screenshot("report-form")
    expert.page.click("#r-submit")
    expect(expert.page.locator("#report-verify")).to_have_class(re.compile("valid"))
    expect(expert.page.locator("#signed-report")).to_contain_text("头孢曲松")
    expect(expert.page.locator("#call-host")).to_be_hidden()  # the call ends with the report
    expert.screenshot("signed-report")
    expert.page.click(f'a[href="#/viewer/{demo.ct_study}"]')  # the attached CT, in the expert's scope now
    expect(expert.page.locator("#v-image")).to_have_attribute("data-loaded", "true")

    doctor.page.reload()
    expect(doctor.page.locator("#signed-report")).to_contain_text("J18")
    with doctor.page.expect_download() as download_info:
        doctor.page.click("#report-pdf")
    path = download_info.value.path()
    assert path is not None and Path(path).read_bytes()[:5] == b"%PDF-"
    doctor.screenshot("report-for-requester")


def test_ct_slice_shown_with_a_window_preset(session_factory: OpenSession, demo: Demo) -> None:
    doctor = session_factory()
    doctor.login("doc-qc")
    doctor.page.goto(f"{doctor.base_url}/#/viewer/{demo.ct_study}")
    image = doctor.page.locator("#v-image")
    expect(image).to_have_attribute("data-loaded", "true")
    assert doctor.page.evaluate("() => document.getElementById('v-image').naturalWidth") == 512
    expect(doctor.page.locator("#v-series .series")).to_have_count(1)
    default_src = image.get_attribute("data-src")
    assert default_src is not None and "window=" not in default_src
    doctor.page.click('[data-preset="lung"]')
    expect(image).to_have_attribute("data-src", re.compile(r"/frames/1/rendered\?window=-600,1500$"))
    expect(doctor.page.locator("#v-wl")).to_contain_text("W 1500  L -600")
    # The lung window shows lung parenchyma grey instead of black: the mean brightness rises.
    brightness = """() => { const img = document.getElementById('v-image'); const c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight; const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0;
        for (let i = 0; i < d.length; i += 4) s += d[i]; return s / (d.length / 4); }"""
    lung = doctor.page.evaluate(brightness)
    doctor.screenshot("lung-window")
    doctor.page.click('[data-preset="bone"]')
    expect(image).to_have_attribute("data-src", re.compile(r"window=400,1800$"))
    bone = doctor.page.evaluate(brightness)
    assert lung > bone + 10
    doctor.page.locator("#v-canvas").focus()
    before = doctor.page.locator(".overlay.tr").inner_text()
    doctor.page.keyboard.press("ArrowDown")
    expect(doctor.page.locator(".overlay.tr")).not_to_have_text(before)
    doctor.screenshot("bone-window")


def test_ultrasound_cine_plays(session_factory: OpenSession, demo: Demo) -> None:
    doctor = session_factory()
    doctor.login("doc-qc")
    doctor.page.goto(f"{doctor.base_url}/#/viewer/{demo.us_study}")
    expect(doctor.page.locator("#v-cine")).to_be_visible()
    overlay = doctor.page.locator(".overlay.tr")
    expect(overlay).to_contain_text("/16")
    first = overlay.inner_text()
    expect(overlay).not_to_have_text(first)  # frames advance by themselves
    doctor.screenshot("cine")


def test_admin_pages(session_factory: OpenSession, demo: Demo) -> None:
    admin = session_factory()
    admin.login("admin")
    admin.page.goto(admin.base_url + "/#/admin/edges")
    expect(admin.page.locator("#edges tbody tr")).to_have_count(2)
    online = admin.page.locator('#edges tr[data-edge="edge-qc-1"]')
    expect(online.locator(".online")).to_be_visible()
    expect(online).to_contain_text("39")  # outbox depth: 0 + 37 + 2 over the lanes
    expect(admin.page.locator('#edges tr[data-edge="edge-wx-1"] .offline')).to_be_visible()
    admin.screenshot("edges")
    admin.page.click('[data-tab="devices"]')
    expect(admin.page.locator("#devices tbody tr")).to_have_count(6)
    admin.page.click('[data-tab="users"]')
    expect(admin.page.locator('#users [data-user="expert-chen"]')).to_be_visible()
    admin.page.click('[data-tab="stats"]')
    expect(admin.page.locator("#stats-alerts .uplot")).to_be_visible()
    admin.screenshot("stats")
    admin.page.click('[data-tab="oncall"]')
    expect(admin.page.locator('section[data-site="site-qc"] tr[data-tier="primary"]')).to_contain_text("赵值班")
    admin.screenshot("oncall")


def test_language_switch_persists(session_factory: OpenSession) -> None:
    doctor = session_factory()
    doctor.login("doc-qc")
    expect(doctor.page.locator('#nav a[data-nav="ward"]')).to_have_text("病区总览")
    doctor.page.select_option("#locale", "en")
    expect(doctor.page.locator('#nav a[data-nav="ward"]')).to_have_text("Ward")
    expect(doctor.page.locator("h1")).to_have_text("Ward overview")
    doctor.page.reload()
    expect(doctor.page.locator('#nav a[data-nav="ward"]')).to_have_text("Ward")
    assert doctor.page.evaluate("() => document.documentElement.lang") == "en"
    doctor.screenshot("english")
