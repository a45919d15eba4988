"""The cloud's STOW-RS receiver (FastAPI + PostgreSQL, served by uvicorn) and the edge's forwarder against it:
signed uploads, idempotence, a forced failure and resume, hash mismatches, and the full edge-to-cloud path."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from cloud.db.migrate import migrate
from cloud.db.pool import create_async_pool
from cloud.dicomweb import reasons
from cloud.dicomweb.store import FileObjectStore, ObjectKey
from cloud.dicomweb.stow import install
from cloud.settings import DatabaseSettings
from deploy.postgres import PostgresEndpoint
from devices.modality.scu import send_study
from edge.dicom import multipart
from edge.dicom.completion import CompletionTracker
from edge.dicom.forwarder import Forwarder, ForwarderConfig, StowClient
from edge.dicom.models import UploadState
from edge.dicom.scp import ScpConfig
from edge.dicom.service import DicomService, DicomServiceConfig
from edge.dicom.signing import RequestSigner
from edge.dicom.store import InstanceStore, StoreLimits
from proto import keys
from proto.messages import DicomManifest
from tests.unit.edge.test_dicom_support import FakeClock, ct_study, minimal_instance, part10

pytestmark = pytest.mark.integration

EDGE_ID = "edge-qc-1"
SITE_ID = "site-qc"


@dataclass
class Cloud:
    url: str
    db_url: str
    objects: FileObjectStore
    edge_key: Ed25519PrivateKey

    def rows(self) -> dict[str, tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            result = conn.execute("SELECT sop_instance_uid, sha256, size_bytes, edge_id, patient_id, path "
                                  "FROM dicom_instances").fetchall()
        return {row[0]: tuple(row[1:]) for row in result}

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(sql, params)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cloud(database: PostgresEndpoint, tmp_path: Path) -> Iterator[Cloud]:
    with psycopg.connect(database.url, autocommit=True) as conn:
        migrate(conn)
        edge_key = keys.generate()
        conn.execute("INSERT INTO sites (site_id, name) VALUES (%s, %s)", (SITE_ID, "青川县人民医院"))
        conn.execute("INSERT INTO edges (edge_id, site_id, public_key, status) VALUES (%s, %s, %s, 'active')",
                     (EDGE_ID, SITE_ID, keys.public_to_text(edge_key.public_key())))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_async_pool(DatabaseSettings(url=database.url, pool_min=1, pool_max=4))
        await pool.open(wait=True)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)
    objects = FileObjectStore(tmp_path / "objects")
    install(app, store=objects)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the STOW-RS test server did not start", pytrace=False)
        time.sleep(0.05)
    try:
        yield Cloud(url=f"http://127.0.0.1:{port}", db_url=database.url, objects=objects, edge_key=edge_key)
    finally:
        server.should_exit = True
        thread.join(10)


# --- edge-side helpers -----------------------------------------------------------------------------------------


class FlakyTransport(httpx.BaseTransport):
    """Forwards to the real server, but fails chosen requests: before sending, or after (response lost)."""

    def __init__(self, *, fail_before: frozenset[int] = frozenset(), lose_response: frozenset[int] = frozenset(),
                 fail_from: int | None = None) -> None:
        self._inner = httpx.HTTPTransport()
        self._fail_before = set(fail_before)
        self._lose_response = set(lose_response)
        self._fail_from = fail_from
        self.requests = 0
        self.parts_sent: list[int] = []
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests += 1
            number = self.requests
        if number in self._fail_before or (self._fail_from is not None and number >= self._fail_from):
            raise httpx.ConnectError("simulated network failure", request=request)
        request.read()
        self.parts_sent.append(request.content.count(b"Content-Type: application/dicom"))
        response = self._inner.handle_request(request)
        response.read()
        if number in self._lose_response:
            raise httpx.ReadError("simulated lost response", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


def _forwarder(cloud: Cloud, store: InstanceStore, *, transport: httpx.BaseTransport | None = None,
               key: Ed25519PrivateKey | None = None, **config: Any) -> Forwarder:
    options: dict[str, Any] = {"base_url": cloud.url, "concurrency": 2, "max_attempts": 3,
                               "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    options.update(config)
    client = StowClient(ForwarderConfig(**options), RequestSigner(EDGE_ID, key or cloud.edge_key),
                        transport=transport)
    return Forwarder(store, client, sleep=lambda seconds: False)


def _held_study(tmp_path: Path, *, instances: int = 6) -> tuple[InstanceStore, FakeClock, list[DicomManifest]]:
    """An edge store holding one completed (manifested) study."""
    clock = FakeClock()
    store = InstanceStore(tmp_path / "edge", limits=StoreLimits(min_free_bytes=0), clock=clock)
    study, series = "1.2.826.55.1", "1.2.826.55.1.1"
    for number in range(1, instances + 1):
        store.put(part10(minimal_instance(study=study, series=series, instance_number=number)))
    manifests: list[DicomManifest] = []
    clock.advance(60)
    CompletionTracker(store.index, quiet_s=30, sink=manifests.append, clock=clock).check()
    return store, clock, manifests


def _states(store: InstanceStore, study: str = "1.2.826.55.1") -> list[UploadState]:
    return [i.upload_state for i in store.index.instances(study)]


# --- the forwarder against the cloud ------------------------------------------------------------------------------


def test_a_completed_study_is_uploaded_and_recorded(cloud: Cloud, tmp_path: Path) -> None:
    store, _, [manifest] = _held_study(tmp_path)
    progress: list[tuple[int, int]] = []
    report = _forwarder(cloud, store, max_batch_instances=2).forward_pending(
        lambda p: progress.append((p.confirmed, p.total)))
    assert report.complete and report.confirmed == 6
    assert _states(store) == [UploadState.CONFIRMED] * 6
    assert sorted(progress)[-1] == (6, 6) and len(progress) == 3
    rows = cloud.rows()
    for entry in manifest.series[0].instances:
        sha256, size, edge_id, patient_id, path = rows[entry.sop_instance_uid]
        assert (sha256, size, edge_id, patient_id) == (entry.sha256, entry.size_bytes, EDGE_ID, "QC00000001")
        held = store.index.instance(entry.sop_instance_uid)
        assert held is not None
        key = ObjectKey(manifest.study_instance_uid, manifest.series[0].series_instance_uid, entry.sop_instance_uid)
        assert path == key.name
        assert cloud.objects.get(key) == store.read(held)
    assert _forwarder(cloud, store).forward_pending().confirmed == 0  # nothing left to send


def test_a_forced_failure_is_retried_and_an_interrupted_run_resumes(cloud: Cloud, tmp_path: Path) -> None:
    store, _, _ = _held_study(tmp_path)
    # Run 1: the first batch gets through, every later request fails for good (the network went down).
    broken = FlakyTransport(fail_from=2)
    first = _forwarder(cloud, store, transport=broken, concurrency=1, max_batch_instances=2).forward_pending()
    assert first.confirmed == 2 and first.still_pending == 4 and first.errors
    assert _states(store).count(UploadState.CONFIRMED) == 2
    assert all(i.upload_attempts >= 1 for i in store.index.instances("1.2.826.55.1", states=[UploadState.PENDING]))
    # Run 2 (after a restart): a connection failure and a lost response are retried, and only the four
    # pending instances travel; the one whose response was lost is confirmed as already held.
    flaky = FlakyTransport(fail_before=frozenset({1}), lose_response=frozenset({2}))
    reopened = InstanceStore(tmp_path / "edge", limits=StoreLimits(min_free_bytes=0))
    second = _forwarder(cloud, reopened, transport=flaky, concurrency=1, max_batch_instances=2).forward_pending()
    assert second.complete and second.confirmed == 4
    assert flaky.parts_sent == [2, 2, 2]  # the lost-response batch was sent twice, nothing else was resent
    assert _states(reopened) == [UploadState.CONFIRMED] * 6
    assert len(cloud.rows()) == 6


def test_an_instance_that_changed_on_the_edge_disk_is_refused_by_the_cloud(cloud: Cloud, tmp_path: Path) -> None:
    store, _, _ = _held_study(tmp_path, instances=3)
    victim = store.index.instances("1.2.826.55.1")[1]
    path = store.path_of(victim)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # bit rot in the pixel data after the hash was taken on receipt
    path.write_bytes(bytes(data))
    report = _forwarder(cloud, store).forward_pending()
    assert report.confirmed == 2
    assert report.failed == {victim.sop_instance_uid: "cloud refused: 0xC004"}
    assert store.index.instance(victim.sop_instance_uid).upload_state is UploadState.FAILED  # type: ignore[union-attr]
    assert victim.sop_instance_uid not in cloud.rows()
    assert report.still_pending == 0


def test_a_wrong_key_or_a_revoked_edge_is_refused(cloud: Cloud, tmp_path: Path) -> None:
    store, _, _ = _held_study(tmp_path, instances=1)
    forged = _forwarder(cloud, store, key=keys.generate()).forward_pending()
    assert forged.confirmed == 0 and "HTTP 401" in forged.errors[0]
    cloud.execute("UPDATE edges SET status = 'revoked', revoked_at = now() WHERE edge_id = %s", (EDGE_ID,))
    revoked = _forwarder(cloud, store).forward_pending()
    assert "HTTP 403" in revoked.errors[0]
    assert cloud.rows() == {} and _states(store) == [UploadState.PENDING]


# --- the receiver, request by request ------------------------------------------------------------------------------


def _post(cloud: Cloud, files: list[bytes], *, study: str | None = None, key: Ed25519PrivateKey | None = None,
          digests: list[bytes] | None = None, content_type: str | None = None,
          body: bytes | None = None) -> httpx.Response:
    parts = [multipart.Part(data=f, transfer_syntax_uid="1.2.840.10008.1.2.1",
                            sha256=hashlib.sha256(d).hexdigest()) for f, d in zip(files, digests or files, strict=True)]
    encoded_type, encoded = multipart.encode(parts) if parts else ("multipart/related; type=\"application/dicom\"; "
                                                                   "boundary=x", b"")
    body = encoded if body is None else body
    path = "/dicomweb/studies" + (f"/{study}" if study else "")
    headers = {"Content-Type": content_type or encoded_type, "Accept": "application/dicom+json",
               **RequestSigner(EDGE_ID, key or cloud.edge_key).headers("POST", path, body)}
    return httpx.post(cloud.url + path, content=body, headers=headers, timeout=30)


def _referenced(response: httpx.Response) -> list[str]:
    items = response.json().get("00081199", {}).get("Value", [])
    return [item["00081155"]["Value"][0] for item in items]


def _failures(response: httpx.Response) -> dict[str, int]:
    items = response.json().get("00081198", {}).get("Value", [])
    return {(item["00081155"].get("Value") or [""])[0]: item["00081197"]["Value"][0] for item in items}


def test_statuses_200_202_409_and_idempotence(cloud: Cloud) -> None:
    first, second = minimal_instance(), minimal_instance()
    ok = _post(cloud, [part10(first)])
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/dicom+json"
    assert _referenced(ok) == [first.SOPInstanceUID]
    again = _post(cloud, [part10(first)])
    assert again.status_code == 200 and _referenced(again) == [first.SOPInstanceUID]
    assert len(cloud.rows()) == 1

    changed = minimal_instance(sop=first.SOPInstanceUID, study=first.StudyInstanceUID,
                               series=first.SeriesInstanceUID, description="CHANGED")
    partly = _post(cloud, [part10(second), part10(changed)])
    assert partly.status_code == 202
    assert _referenced(partly) == [second.SOPInstanceUID]
    assert _failures(partly) == {first.SOPInstanceUID: reasons.DUPLICATE_SOP_INSTANCE}
    key = ObjectKey(first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert cloud.objects.get(key) == part10(first)  # the first content is kept

    elsewhere = _post(cloud, [part10(minimal_instance())], study="1.2.826.99")
    assert elsewhere.status_code == 409
    assert list(_failures(elsewhere).values()) == [reasons.DATASET_DOES_NOT_MATCH]
    assert elsewhere.json()["00081190"]["Value"] == [f"{cloud.url}/dicomweb/studies/1.2.826.99"]


def test_digest_and_manifest_checks(cloud: Cloud) -> None:
    good, listed = minimal_instance(), minimal_instance()
    wrong_digest = _post(cloud, [part10(good)], digests=[b"something else"])
    assert wrong_digest.status_code == 409
    assert _failures(wrong_digest) == {good.SOPInstanceUID: reasons.INTEGRITY_FAILURE}
    manifest_body = {"series": [{"instances": [{"sop_instance_uid": str(listed.SOPInstanceUID),
                                                 "sha256": "0" * 64}]}]}
    cloud.execute("INSERT INTO dicom_manifests (study_instance_uid, edge_id, patient_id, completed_at, body) "
                  "VALUES (%s, %s, 'pseudo-1', now(), %s::jsonb)",
                  (str(listed.StudyInstanceUID), EDGE_ID, json.dumps(manifest_body)))
    against_manifest = _post(cloud, [part10(listed)])
    assert _failures(against_manifest) == {listed.SOPInstanceUID: reasons.INTEGRITY_FAILURE}
    cloud.execute("UPDATE dicom_manifests SET body = %s::jsonb", (json.dumps({"series": []}),))
    accepted = _post(cloud, [part10(listed)])
    assert accepted.status_code == 200
    assert cloud.rows()[str(listed.SOPInstanceUID)][3] == "pseudo-1"  # the manifest's pseudonymous patient id


def test_malformed_requests(cloud: Cloud) -> None:
    data = part10(minimal_instance())
    assert _post(cloud, [data], content_type="application/dicom").status_code == 415
    assert _post(cloud, [data], content_type='multipart/related; type="application/dicom"').status_code == 400
    assert _post(cloud, [data], body=b"--x\r\nbroken").status_code == 400
    assert _post(cloud, [data], study="not-a-uid").status_code == 400
    unsigned = httpx.post(cloud.url + "/dicomweb/studies", content=b"x",
                          headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'})
    assert unsigned.status_code == 401
    assert cloud.rows() == {}


def test_a_replayed_request_is_refused(cloud: Cloud) -> None:
    parts = [multipart.Part(part10(minimal_instance()), "1.2.840.10008.1.2.1", "0" * 64)]
    content_type, body = multipart.encode(parts)
    headers = {"Content-Type": content_type,
               **RequestSigner(EDGE_ID, cloud.edge_key).headers("POST", "/dicomweb/studies", body)}
    assert httpx.post(cloud.url + "/dicomweb/studies", content=body, headers=headers).status_code == 409
    replay = httpx.post(cloud.url + "/dicomweb/studies", content=body, headers=headers)
    assert replay.status_code == 401 and "replayed" in replay.text


# --- the whole edge-to-cloud path -----------------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the DICOM service", pytrace=False)
        time.sleep(0.05)


def test_modality_to_edge_to_cloud(cloud: Cloud, tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    manifests: list[DicomManifest] = []
    service = DicomService(
        DicomServiceConfig(storage_dir=tmp_path / "edge", scp=ScpConfig(ae_title="EDGE", port=0),
                           limits=StoreLimits(min_free_bytes=0), study_complete_timeout_s=30),
        on_manifest=manifests.append, forwarder=ForwarderConfig(base_url=cloud.url),
        signer=RequestSigner(EDGE_ID, cloud.edge_key, clock=clock), clock=clock)
    service.start()
    try:
        study = ct_study(slices=5, seed=31)
        host, port = service.server.address
        assert send_study(host, port, "EDGE", "CT_QC_01", study).all_succeeded
        uid = str(study.study_instance_uid)
        assert manifests == []
        clock.advance(31)  # the study falls quiet
        service.watcher.notify()
        _wait_for(lambda: len(manifests) == 1)
        assert manifests[0].instance_count == 5
        _wait_for(lambda: _states(service.store, uid) == [UploadState.CONFIRMED] * 5)
        assert {i.sop_instance_uid for i in manifests[0].series[0].instances} <= set(cloud.rows())
        clock.advance(8 * 86_400)
        assert service.sweep_now().studies == 1
        assert service.store.index.study(uid) is None
    finally:
        service.stop()
