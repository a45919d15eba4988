"""Video calls end to end: browsers (aiortc stand-ins) -> cloud WebSocket -> MQTT -> edge relay -> outbox ->
ingest -> NOTIFY -> WebSocket, with real PostgreSQL, Mosquitto, ingest worker, API (uvicorn) and edge uplink.

Media flows peer to peer between the stand-ins and the edge's relay; the timestamps burned into each
sender's frames are read on the receiving side. Non-participants are refused at the WebSocket handshake.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from cloud.api.app import create_app
from cloud.api.policy import ApiPolicy
from cloud.edges import store as edge_store
from cloud.video.ice import ice_servers
from cloud.video.settings import VideoSettings as CloudVideoSettings
from cloud.video.settings import video_settings
from deploy.mosquitto import MosquittoServer
from deploy.ports import free_loopback_port
from deploy.postgres import PostgresEndpoint
from edge.outbox import Outbox
from edge.settings import EdgeIdentity, MqttSettings
from edge.uplink import CommandRegistry, Uplink
from edge.video import VideoCalls, VideoSettings, event_sender, register_video
from proto import keys
from tests.integration.test_api_support import PATIENTS, scratch_database, seed_world
from tests.integration.test_ingest_support import cloud_public_key, running_worker, settings_for
from tests.integration.test_video_support import PEER_MID, SOURCE_MID, CallClient

pytestmark = pytest.mark.integration

SITE = "site-a"
PROTOCOL = "telemed.call.v1"
EDGE = f"edge-video-{uuid.uuid4().hex[:6]}"


@dataclass
class Rig:
    http: str
    ws: str
    db_url: str
    consultations: dict[str, uuid.UUID]
    calls: VideoCalls
    edge_loop: asyncio.AbstractEventLoop

    def token(self, username: str) -> str:
        response = httpx.post(f"{self.http}/api/auth/login",
                              json={"username": username, "password": f"pw-{username}-Secret!"})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def call_url(self, name: str) -> str:
        return f"{self.ws}/api/consultations/{self.consultations[name]}/call"


def _user_ids(url: str) -> dict[str, uuid.UUID]:
    with psycopg.connect(url) as conn:
        return {name: uid for name, uid in conn.execute("SELECT username, user_id FROM users").fetchall()}


def _consultation(conn: psycopg.Connection[Any], *, patient: str, requester: uuid.UUID, state: str,
                  expert: uuid.UUID | None) -> uuid.UUID:
    now = dt.datetime.now(dt.UTC)
    row = conn.execute(
        "INSERT INTO consultations (patient_id, site_id, requester_id, state, assigned_expert_id, created_at,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING consultation_id",
        (patient, PATIENTS[patient], requester, state, expert, now, now)).fetchone()
    assert row is not None
    consultation_id: uuid.UUID = row[0]
    return consultation_id


def _serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, int]:
    port = free_loopback_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    return server, thread, port


@pytest.fixture(scope="module")
def rig(postgres: PostgresEndpoint, mosquitto: MosquittoServer, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("video")
    with scratch_database(postgres) as db:
        seed_world(db.url)
        users = _user_ids(db.url)
        edge_key = keys.generate()
        with psycopg.connect(db.url, autocommit=True) as conn:
            consultations = {
                "in_session": _consultation(conn, patient="P-A1", requester=users["doc-a"], state="in_session",
                                            expert=users["expert"]),
                "requested": _consultation(conn, patient="P-A2", requester=users["doc-a"], state="requested",
                                           expert=None),
                "site_b": _consultation(conn, patient="P-B1", requester=users["doc-b"], state="accepted",
                                        expert=users["expert"]),
            }
            edge_store.insert_edge(conn, edge_id=EDGE, site_id=SITE, name=EDGE,
                                   public_key=keys.public_to_text(edge_key.public_key()))
        settings = settings_for(db, mosquitto, tmp / "keys")
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

            async def build() -> VideoCalls:
                return VideoCalls(VideoSettings(synthetic=True), send=send)

            calls = asyncio.run_coroutine_threadsafe(build(), loop).result(10)
            register_video(commands, calls=calls, loop=loop, send=send)
            uplink = Uplink(identity=EdgeIdentity(EDGE, SITE),
                            mqtt_settings=MqttSettings(host=mosquitto.host, port=mosquitto.port,
                                                       username=login.username, password=login.password,
                                                       backoff_initial_s=0.2),
                            outbox=outbox, signer=edge_key, cloud_key=cloud_key, commands=commands)
            uplink.start()
            try:
                yield Rig(http=f"http://127.0.0.1:{port}", ws=f"ws://127.0.0.1:{port}", db_url=db.url,
                          consultations=consultations, calls=calls, edge_loop=loop)
            finally:
                asyncio.run_coroutine_threadsafe(calls.close(), loop).result(20)
                uplink.stop()
                outbox.close()
                loop.call_soon_threadsafe(loop.stop)
                loop_thread.join(10)
                server.should_exit = True
                thread.join(15)


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 120))


async def receive(ws: ClientConnection, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    """The next message of `kind` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
        message: dict[str, Any] = json.loads(raw)
        if message["type"] == kind:
            return message
        assert message["type"] != "error", message


async def join(rig: Rig, username: str, client: CallClient, consultation: str = "in_session"
               ) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(rig.call_url(consultation), subprotocols=protocols(rig.token(username)))
    assert ws.subprotocol == PROTOCOL  # the token is never echoed back
    welcome = await receive(ws, "welcome")
    offer = await client.offer()
    await ws.send(json.dumps({"type": "offer", "sdp": offer}))
    # One trickled candidate too (aiortc puts all of its own in the SDP; browsers trickle them).
    line = next(x for x in offer.splitlines() if x.startswith("a=candidate:"))
    await ws.send(json.dumps({"type": "candidate", "candidate": {"candidate": line[2:], "sdpMid": "0",
                                                                 "sdpMLineIndex": 0}}))
    answer = await receive(ws, "answer")
    await client.accept(answer["sdp"])
    return ws, welcome | {"answer": answer}


def test_participants_see_each_other_and_the_source_through_the_edge_relay(rig: Rig) -> None:
    async def scenario() -> None:
        async with CallClient() as expert, CallClient() as county:
            expert_ws, expert_join = await join(rig, "expert", expert)
            county_ws, county_join = await join(rig, "doc-a", county)
            assert (expert_join["role"], county_join["role"]) == ("expert", "requester")
            assert expert_join["answer"]["sources"] == ["synthetic"] and expert_join["answer"]["n"] == 0
            for client in (expert, county):
                await client.wait_for(client.stamped(SOURCE_MID, 10), timeout=40, what="the clinical source")
                await client.wait_for(client.stamped(PEER_MID, 5), timeout=40, what="the other participant")
            latencies = sorted(expert.received[SOURCE_MID].latencies_ms)
            assert 0 < latencies[len(latencies) // 2] < 1500
            # Leaving tells the edge, which closes that participant's connection.
            await county_ws.close()
            deadline = time.monotonic() + 30
            while len(rig.calls.participants(str(rig.consultations["in_session"]))) != 1:
                assert time.monotonic() < deadline, "the edge did not drop the participant who left"
                await asyncio.sleep(0.1)
            await expert_ws.close()
        with psycopg.connect(rig.db_url) as conn:
            joins = conn.execute(
                "SELECT username, patient_id FROM access_log WHERE event = 'video.join' ORDER BY id").fetchall()
        assert ("expert", "P-A1") in joins and ("doc-a", "P-A1") in joins

    run(scenario())


def test_a_reconnect_negotiates_again_on_the_same_socket(rig: Rig) -> None:
    async def scenario() -> None:
        async with CallClient() as first, CallClient() as second:
            ws, _ = await join(rig, "expert", first)
            await first.wait_for(first.stamped(SOURCE_MID, 3), timeout=40, what="frames")
            await ws.send(json.dumps({"type": "offer", "sdp": await second.offer()}))
            answer = await receive(ws, "answer")
            assert answer["n"] == 1
            await second.accept(answer["sdp"])
            await second.wait_for(second.stamped(SOURCE_MID, 3), timeout=40, what="frames after renegotiating")
            await ws.send(json.dumps({"type": "source", "source": "ultrasound"}))
            refusal = await receive(ws, "error")
            assert refusal["reason"] == "source_unavailable" and refusal["n"] == 1
            await ws.close()

    run(scenario())


def protocols(token: str | None = None) -> list[Subprotocol]:
    offered = [Subprotocol(PROTOCOL)]
    return offered if token is None else [*offered, Subprotocol(f"bearer.{token}")]


async def refusal(url: str, subprotocols: list[Subprotocol]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=subprotocols):
            pass
    status: int = refused.value.response.status_code
    return status


def test_only_participants_may_join(rig: Rig) -> None:
    async def scenario() -> None:
        url = rig.call_url("in_session")
        for outsider in ("doc-b", "leaver", "admin", "nobody"):  # other site, unassigned expert, admin, no role
            assert await refusal(url, protocols(rig.token(outsider))) == 403, outsider
        token = rig.token("doc-a")
        assert await refusal(f"{rig.ws}/api/consultations/{uuid.uuid4()}/call", protocols(token)) == 403
        assert await refusal(url, protocols()) == 401
        assert await refusal(f"{url}?token={token}&access_token={token}", protocols()) == 401
        assert await refusal(rig.call_url("requested"), protocols(token)) == 409
        assert await refusal(rig.call_url("site_b"), protocols(rig.token("doc-b"))) == 503  # no edge there

    run(scenario())


def test_bad_messages_are_answered_and_a_flood_is_cut_off(rig: Rig) -> None:
    async def scenario() -> None:
        async with connect(rig.call_url("in_session"), subprotocols=protocols(rig.token("doc-a"))) as ws:
            await receive(ws, "welcome")
            await ws.send("not json")
            assert json.loads(await ws.recv())["reason"] == "bad_message"
            await ws.send(json.dumps({"type": "candidate", "candidate": None}))
            assert json.loads(await ws.recv())["reason"] == "no_negotiation"
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(200):
                    await ws.send(json.dumps({"type": "bye"}))
                    await asyncio.sleep(0)
                while True:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    run(scenario())


def test_the_call_module_is_served(rig: Rig) -> None:
    response = httpx.get(f"{rig.http}/video/call.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "export function mountCallPanel" in response.text and "bearer." in response.text
    style = httpx.get(f"{rig.http}/video/call.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert '.call-recording[data-active="true"]' in style.text



# --- a real browser: headless Chromium with a fake camera and microphone --------------------------------------

_BROWSER_JOIN = """
async ([consultationId, token]) => {
  const { mountCallPanel } = await import('/video/call.js');
  const root = document.createElement('div');
  document.body.append(root);
  const panel = mountCallPanel(root, { consultationId, token, lang: 'en' });
  window.panel = panel;
  window.answers = [];
  window.quality = null;
  panel.connection.addEventListener('message', (e) => {
    if (e.detail.type === 'answer') window.answers.push(e.detail.n);
  });
  panel.connection.addEventListener('quality', (e) => { window.quality = e.detail; });
  root.querySelector('[data-role=join]').click();
}
"""


def test_a_browser_joins_with_call_js_and_renegotiates_after_the_network_drops(rig: Rig) -> None:
    from playwright.async_api import async_playwright

    consultation = str(rig.consultations["in_session"])

    async def scenario() -> None:
        async with async_playwright() as playwright, CallClient() as expert:
            # The distribution's Chromium when there is one, else Playwright's own (`playwright install chromium`).
            system = shutil.which("chromium") or shutil.which("chromium-browser")
            browser = await playwright.chromium.launch(executable_path=system, args=[
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
            try:
                page = await browser.new_page()
                await page.goto(f"{rig.http}/healthz")  # any page of the API's origin, to import the module
                expert_ws, _ = await join(rig, "expert", expert)
                await page.evaluate(_BROWSER_JOIN, [consultation, rig.token("doc-a")])
                status = page.locator("[data-role=status]")
                await page.wait_for_function("document.querySelector('[data-role=status]').dataset.state"
                                             " === 'connected'", timeout=40_000)
                # The county doctor's browser shows the clinical source; the expert receives its fake camera.
                await page.wait_for_function("document.querySelector('video.call-source').videoWidth === 640"
                                             " && window.quality !== null", timeout=40_000)
                await expert.wait_for(lambda: expert.received[PEER_MID].frames > 10, timeout=40,
                                      what="the browser's camera at the expert")
                assert await status.text_content() == "Connected"
                assert "fps" in (await page.locator("[data-role=quality]").text_content() or "")
                # The network drops for this participant: the edge loses its connection. The browser notices,
                # negotiates a new connection (n = 1) and media flows again.
                county = next(p for p in rig.calls.participants(consultation).values() if p.route.role == "requester")
                assert county.session is not None
                asyncio.run_coroutine_threadsafe(county.session.pc.close(), rig.edge_loop).result(10)
                await page.wait_for_function("window.answers.includes(1)", timeout=60_000)
                await page.wait_for_function("document.querySelector('[data-role=status]').dataset.state"
                                             " === 'connected'", timeout=40_000)
                before = expert.received[PEER_MID].frames
                await expert.wait_for(lambda: expert.received[PEER_MID].frames > before + 10, timeout=40,
                                      what="the browser's camera after renegotiating")
                await page.locator("[data-role=join]").click()  # leave
                await page.wait_for_function("document.querySelector('[data-role=status]').dataset.state"
                                             " === 'closed'", timeout=10_000)
                await expert_ws.close()
            finally:
                await browser.close()

    run(scenario())


# --- ICE servers and TURN REST credentials (pure) ---------------------------------------------------------------


def test_turn_credentials_follow_coturns_rest_scheme_as_openssl_computes_it() -> None:
    settings = CloudVideoSettings(stun_urls=("stun:turn.example.cn:3478",), turn_secret="s3cret",
                              turn_urls=("turn:turn.example.cn:3478?transport=udp", "turns:turn.example.cn:5349"),
                              turn_ttl_s=600)
    stun, turn = ice_servers(settings, user="u-1", now=1_767_225_600.7)
    assert stun == {"urls": ["stun:turn.example.cn:3478"]}
    assert turn["username"] == "1767226200:u-1"  # expiry = now + ttl, whole seconds
    # coturn checks base64(HMAC-SHA1(static-auth-secret, username)); an independent implementation agrees.
    openssl = subprocess.run(["openssl", "dgst", "-sha1", "-hmac", "s3cret", "-binary"], input=b"1767226200:u-1",
                             capture_output=True, check=True).stdout
    assert turn["credential"] == base64.b64encode(openssl).decode()
    assert turn["urls"] == ["turn:turn.example.cn:3478?transport=udp", "turns:turn.example.cn:5349"]
    assert ice_servers(CloudVideoSettings(), user="u-1", now=0) == []


def test_video_settings_refuse_turn_without_a_secret_and_read_the_environment() -> None:
    with pytest.raises(ValueError, match="turn_secret"):
        CloudVideoSettings(turn_urls=("turn:turn.example.cn:3478",))
    with pytest.raises(ValueError, match="stun"):
        CloudVideoSettings(stun_urls=("turn:wrong.example.cn",))
    loaded = video_settings(object(), environ={"TELEMED_VIDEO__STUN_URLS": "stun:a.example.cn,stun:b.example.cn",
                                               "TELEMED_VIDEO__TURN_TTL_S": "900"})
    assert loaded.stun_urls == ("stun:a.example.cn", "stun:b.example.cn") and loaded.turn_ttl_s == 900
