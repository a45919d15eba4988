"""Recording a video call with consent, end to end with real PostgreSQL, Mosquitto, ingest worker, API and edge.

Without consent nothing is recorded. With the patient's consent recorded by the county doctor, the edge
records the call, seals it (AES-256-GCM, the key wrapped for the cloud) and uploads it signed; the cloud
keeps it encrypted at rest and serves it decrypted to participants only. Revoking consent stops it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect

from cloud.api.app import create_app
from cloud.api.policy import ApiPolicy
from cloud.edges import store as edge_store
from cloud.settings import DicomSettings
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresEndpoint
from edge.dicom.signing import RequestSigner
from edge.outbox import Outbox
from edge.settings import EdgeIdentity, MqttSettings
from edge.uplink import CommandRegistry, Uplink
from edge.video import VideoCalls, VideoSettings, event_sender, register_video
from edge.video.spool import RecordingSpool
from edge.video.uploader import RecordingUploader, UploadConfig
from proto import keys
from tests.integration.test_api_support import scratch_database, seed_world
from tests.integration.test_ingest_support import cloud_public_key, running_worker, settings_for
from tests.integration.test_video_signalling import _consultation, _serve, _user_ids, protocols, receive, run
from tests.integration.test_video_support import SOURCE_MID, CallClient

pytestmark = pytest.mark.integration

SITE = "site-a"
EDGE = f"edge-rec-{uuid.uuid4().hex[:6]}"


@dataclass
class Rig:
    http: str
    ws: str
    db_url: str
    consultations: dict[str, uuid.UUID]
    calls: VideoCalls
    edge_loop: asyncio.AbstractEventLoop
    cloud_store: Path
    edge_spool: Path
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)

    def token(self, username: str) -> str:
        if username not in self.tokens:
            response = httpx.post(f"{self.http}/api/auth/login",
                                  json={"username": username, "password": f"pw-{username}-Secret!"})
            assert response.status_code == 200, response.text
            self.tokens[username] = response.json()["token"]
        return self.tokens[username]

    def api(self, method: str, username: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(username)}"}
        return httpx.request(method, f"{self.http}{path}", headers=headers, timeout=30, **kwargs)

    def on_edge(self, work: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.edge_loop).result(20)


@pytest.fixture(scope="module")
def rig(postgres: PostgresEndpoint, mosquitto: MosquittoServer, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("video-record")
    with scratch_database(postgres) as db:
        seed_world(db.url)
        users = _user_ids(db.url)
        edge_key = keys.generate()
        with psycopg.connect(db.url, autocommit=True) as conn:
            consultations = {name: _consultation(conn, patient=patient, requester=users["doc-a"], state="in_session",
                                                 expert=users["expert"])
                             for name, patient in (("unconsented", "P-A1"), ("consented", "P-A2"),
                                                   ("browser", "P-A1"))}
            edge_store.insert_edge(conn, edge_id=EDGE, site_id=SITE, name=EDGE,
                                   public_key=keys.public_to_text(edge_key.public_key()))
        settings = dataclasses.replace(settings_for(db, mosquitto, tmp / "keys"),
                                       dicom=DicomSettings(store_dir=tmp / "cloud" / "dicom"))
        login = mosquitto.add_edge(EDGE)
        cloud_key = keys.public_from_text(cloud_public_key(settings))
        with running_worker(settings):
            server, thread, port = _serve(create_app(settings, policy=ApiPolicy(cookie_secure=False)))
            loop = asyncio.new_event_loop()
            loop_thread = threading.Thread(target=loop.run_forever, name="edge-loop", daemon=True)
            loop_thread.start()
            outbox = Outbox(tmp / "outbox.sqlite3", edge_id=EDGE, signer=edge_key)
            commands = CommandRegistry()
            send = event_sender(outbox.enqueue)
            spool = RecordingSpool(tmp / "edge" / "recordings", edge_id=EDGE, cloud_key=cloud_key)
            uploader = RecordingUploader(spool, RequestSigner(EDGE, edge_key),
                                         UploadConfig(base_url=f"http://127.0.0.1:{port}", backoff_initial_s=0.2))

            async def build() -> VideoCalls:
                return VideoCalls(VideoSettings(synthetic=True), send=send, spool=spool, on_sealed=uploader.wake)

            calls = asyncio.run_coroutine_threadsafe(build(), loop).result(10)
            register_video(commands, calls=calls, loop=loop, send=send)
            uplink = Uplink(identity=EdgeIdentity(EDGE, SITE),
                            mqtt_settings=MqttSettings(host=mosquitto.host, port=mosquitto.port,
                                                       username=login.username, password=login.password,
                                                       backoff_initial_s=0.2),
                            outbox=outbox, signer=edge_key, cloud_key=cloud_key, commands=commands)
            uplink.start()
            uploader.start()
            try:
                yield Rig(http=f"http://127.0.0.1:{port}", ws=f"ws://127.0.0.1:{port}", db_url=db.url,
                          consultations=consultations, calls=calls, edge_loop=loop,
                          cloud_store=tmp / "cloud" / "recordings", edge_spool=spool.directory)
            finally:
                asyncio.run_coroutine_threadsafe(calls.close(), loop).result(20)
                uploader.stop()
                uplink.stop()
                outbox.close()
                loop.call_soon_threadsafe(loop.stop)
                loop_thread.join(10)
                server.should_exit = True
                thread.join(15)


async def join(rig: Rig, username: str, client: CallClient, consultation: str
               ) -> tuple[ClientConnection, dict[str, Any]]:
    url = f"{rig.ws}/api/consultations/{rig.consultations[consultation]}/call"
    ws = await connect(url, subprotocols=protocols(rig.token(username)))
    welcome = await receive(ws, "welcome")
    await ws.send(json.dumps({"type": "offer", "sdp": await client.offer()}))
    answer = await receive(ws, "answer")
    await client.accept(answer["sdp"])
    return ws, welcome


async def until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def test_without_consent_a_call_is_not_recorded(rig: Rig) -> None:
    cid = rig.consultations["unconsented"]

    async def scenario() -> None:
        async with CallClient() as expert:
            ws, welcome = await join(rig, "expert", expert, "unconsented")
            assert welcome["consent"] is False
            await expert.wait_for(expert.stamped(SOURCE_MID, 5), timeout=40, what="the clinical source")
            assert rig.calls.recording(str(cid)) is None
            await ws.close()

    run(scenario())
    consent = rig.api("GET", "doc-a", f"/api/consultations/{cid}/recording-consent")
    assert consent.status_code == 200 and consent.json()["standing"] is False
    assert rig.api("GET", "expert", f"/api/consultations/{cid}/recordings").json() == {"recordings": []}
    assert not any(rig.edge_spool.iterdir())


def test_consent_records_the_call_encrypted_at_rest_for_participants_only_until_revoked(rig: Rig) -> None:
    cid = rig.consultations["consented"]
    base = f"/api/consultations/{cid}"
    # Only the county doctor with the patient records consent; outsiders do not learn the consultation exists.
    assert rig.api("POST", "expert", f"{base}/recording-consent", json={}).status_code == 403
    assert rig.api("GET", "doc-b", f"{base}/recording-consent").status_code == 404
    granted = rig.api("POST", "doc-a", f"{base}/recording-consent", json={"given_by": "patient", "note": "verbal"})
    assert granted.status_code == 201, granted.text
    assert granted.json()["standing"] is True and granted.json()["edge_notified"] is True
    consent_id = granted.json()["consent"]["consent_id"]
    assert rig.api("POST", "doc-a", f"{base}/recording-consent", json={}).status_code == 200  # already stands

    async def scenario() -> None:
        async with CallClient() as expert, CallClient() as county:
            expert_ws, welcome = await join(rig, "expert", expert, "consented")
            assert welcome["consent"] is True
            assert (await receive(expert_ws, "recording"))["active"] is True
            county_ws, _ = await join(rig, "doc-a", county, "consented")
            await expert.wait_for(expert.stamped(SOURCE_MID, 5), timeout=40, what="the clinical source")
            recording = rig.calls.recording(str(cid))
            assert recording is not None and recording.info.consent_id == consent_id
            await until(lambda: recording.writer is not None and recording.writer.frames >= 15, "recorded frames")
            revoked = await asyncio.to_thread(rig.api, "POST", "expert", f"{base}/recording-consent/revoke")
            assert revoked.status_code == 200 and revoked.json()["standing"] is False
            assert (await receive(expert_ws, "recording"))["active"] is False
            assert rig.calls.recording(str(cid)) is None
            await expert_ws.close()
            await county_ws.close()

    run(scenario())

    deadline = time.monotonic() + 30
    while not (listed := rig.api("GET", "expert", f"{base}/recordings").json()["recordings"]):
        assert time.monotonic() < deadline, "the recording did not reach the cloud"
        time.sleep(0.2)
    assert len(listed) == 1 and listed[0]["consent_id"] == consent_id and listed[0]["media_type"] == "video/webm"
    recording_id = listed[0]["recording_id"]
    assert not any(rig.edge_spool.iterdir())  # no plaintext left, the sealed file deleted once confirmed

    media = rig.api("GET", "doc-a", f"{base}/recordings/{recording_id}")
    assert media.status_code == 200 and len(media.content) == listed[0]["bytes"]
    with av.open(io.BytesIO(media.content), mode="r") as container:
        assert [s.type for s in container.streams] == ["video", "audio", "audio"]
        assert len(list(container.decode(video=0))) >= 10
    stored = (rig.cloud_store / str(cid) / f"{recording_id}.tmrec").read_bytes()
    assert stored.startswith(b"TMREC") and media.content[:4] == b"\x1aE\xdf\xa3"  # EBML (WebM) magic
    assert b"\x1aE\xdf\xa3" not in stored and media.content[64:4096] not in stored

    assert rig.api("GET", "doc-b", f"{base}/recordings").status_code == 404
    assert rig.api("GET", "doc-b", f"{base}/recordings/{recording_id}").status_code == 404
    assert rig.api("GET", "admin", f"{base}/recordings/{recording_id}").status_code == 404
    unsigned = httpx.put(f"{rig.http}/api/edge/recordings/{uuid.uuid4()}", content=stored)
    assert unsigned.status_code == 401
    with psycopg.connect(rig.db_url) as conn:
        events = {row[0] for row in conn.execute(
            "SELECT event FROM access_log WHERE patient_id = 'P-A2'").fetchall()}
    assert {"video.consent_grant", "video.consent_revoke", "video.recording_list", "video.recording_download",
            "video_recording.transition"} <= events


_BROWSER_PANEL = """
async ([consultationId, token]) => {
  const { mountCallPanel } = await import('/video/call.js');
  const root = document.createElement('div');
  document.body.append(root);
  window.panel = mountCallPanel(root, { consultationId, token, lang: 'en' });
}
"""


def test_the_call_panel_records_consent_and_shows_the_edge_recording(rig: Rig) -> None:
    from playwright.async_api import async_playwright

    cid = rig.consultations["browser"]

    async def scenario() -> None:
        async with async_playwright() as playwright:
            system = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = await playwright.chromium.launch(executable_path=system, args=[
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
            try:
                page = await browser.new_page()
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await page.goto(f"{rig.http}/healthz")
                await page.evaluate(_BROWSER_PANEL, [str(cid), rig.token("doc-a")])
                indicator = page.locator("[data-role=recording]")
                consent = page.locator("[data-role=consent-state]")
                await page.wait_for_function("document.querySelector('[data-role=consent-state]').textContent"
                                             ".includes('not consented')", timeout=10_000)
                assert await indicator.text_content() == "Not recording"
                await page.locator("[data-role=join]").click()
                await page.wait_for_function("document.querySelector('[data-role=status]').dataset.state"
                                             " === 'connected'", timeout=40_000)
                await page.locator("[data-role=consent-grant]").click()
                await page.wait_for_function("document.querySelector('[data-role=recording]').dataset.active"
                                             " === 'true'", timeout=20_000)
                assert await indicator.text_content() == "Recording"
                assert await consent.text_content() == "The patient consented to recording"
                assert await page.locator("[data-role=consent-grant]").is_hidden()
                await page.locator("[data-role=consent-revoke]").click()
                await page.wait_for_function("document.querySelector('[data-role=recording]').dataset.active"
                                             " === 'false'", timeout=20_000)
                assert rig.calls.recording(str(cid)) is None
                await page.locator("[data-role=join]").click()  # leave
            finally:
                await browser.close()

    run(scenario())
    history = rig.api("GET", "doc-a", f"/api/consultations/{cid}/recording-consent").json()["history"]
    assert [(c["given_by"], c["revoked_at"] is not None) for c in history] == [("patient", True)]
