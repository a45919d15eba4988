"""The edge's recording spool and uploader: no plaintext left behind, sealed files kept until the cloud confirms.

The uploader talks to an httpx MockTransport standing in for the cloud; the signature it sends is checked
with the cloud's own verification (cloud/recordings/upload.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.dicomweb.auth import EdgeKey, ReplayCache, check_sender, check_signature
from cloud.recordings.sealed import decrypt_chunks, read_header, unwrap_key
from edge.dicom.signing import RequestSigner
from edge.video.errors import SignalError
from edge.video.signals import parse_record, parse_signal
from edge.video.spool import RecordingSpool
from edge.video.uploader import RecordingUploader, UploadConfig

CLOUD = Ed25519PrivateKey.generate()
EDGE = Ed25519PrivateKey.generate()


def spool_in(tmp_path: Path) -> RecordingSpool:
    return RecordingSpool(tmp_path / "recordings", edge_id="edge-a", cloud_key=CLOUD.public_key())


def opened(path: Path) -> tuple[dict[str, object], bytes]:
    source = io.BytesIO(path.read_bytes())
    header = read_header(source)
    return header.fields, b"".join(decrypt_chunks(source, header, unwrap_key(header, CLOUD)))


def test_finishing_seals_the_media_and_removes_the_plaintext(tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    info, plain = spool.begin("c-1", "consent-1")
    plain.write_bytes(b"media" * 1000)

    sealed = spool.finish(info)

    assert sealed is not None and spool.pending() == [sealed.path]
    assert sorted(p.name for p in spool.directory.iterdir()) == [sealed.path.name]
    fields, media = opened(sealed.path)
    assert media == b"media" * 1000
    assert (fields["consultation_id"], fields["consent_id"], fields["edge_id"]) == ("c-1", "consent-1", "edge-a")
    assert spool.directory.stat().st_mode & 0o077 == 0


def test_a_recording_interrupted_by_a_crash_is_sealed_at_the_next_start(tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    info, plain = spool.begin("c-1", None)
    plain.write_bytes(b"partial media")
    (spool.directory / "00000000-0000-4000-8000-000000000000.webm.part").write_bytes(b"undescribed")

    restarted = spool_in(tmp_path)

    assert restarted.recover() == 1
    [sealed] = restarted.pending()
    fields, media = opened(sealed)
    assert media == b"partial media" and fields["recording_id"] == info.recording_id
    assert not list(restarted.directory.glob("*.part")) and not list(restarted.directory.glob("*.json"))


def test_an_empty_recording_leaves_nothing(tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    info, _ = spool.begin("c-1", None)

    assert spool.finish(info) is None and not list(spool.directory.iterdir())


def cloud(answers: list[int], received: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(answers.pop(0), json={})

    return httpx.MockTransport(handle)


def test_uploads_are_signed_kept_through_failures_and_deleted_once_confirmed(tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    info, plain = spool.begin("c-1", None)
    plain.write_bytes(b"media")
    sealed = spool.finish(info)
    assert sealed is not None
    received: list[httpx.Request] = []
    uploader = RecordingUploader(spool, RequestSigner("edge-a", EDGE),
                                 UploadConfig(base_url="https://cloud.example/api-root"),
                                 transport=cloud([503, 429, 201], received))

    assert [uploader.upload(sealed.path) for _ in range(3)] == [False, False, True]

    assert not sealed.path.exists() and uploader.uploaded == 1
    request = received[-1]
    assert request.method == "PUT" and request.url.path == f"/api-root/api/edge/recordings/{info.recording_id}"
    assert hashlib.sha256(request.content).hexdigest() == sealed.sha256

    async def lookup(edge_id: str) -> EdgeKey:
        return EdgeKey(edge_id=edge_id, site_id="site-a", public_key=EDGE.public_key(), active=True)

    headers = {k.lower(): v for k, v in request.headers.items()}
    claim = asyncio.run(check_sender(headers, lookup=lookup, now=time.time()))
    verified = check_signature(claim, method="PUT", path=request.url.path, body_sha256=sealed.sha256,
                               replay=ReplayCache(), now=time.time())
    assert verified.edge_id == "edge-a"


def test_a_recording_the_cloud_refuses_for_good_is_kept_aside_not_deleted(tmp_path: Path) -> None:
    spool = spool_in(tmp_path)
    info, plain = spool.begin("c-1", None)
    plain.write_bytes(b"media")
    sealed = spool.finish(info)
    assert sealed is not None
    uploader = RecordingUploader(spool, RequestSigner("edge-a", EDGE), UploadConfig(base_url="https://cloud.example"),
                                 transport=cloud([400], []))

    assert uploader.upload(sealed.path) is True

    assert spool.pending() == [] and sealed.path.with_suffix(".rejected").exists()


def test_record_signals_parse_and_a_consent_travels_only_with_record() -> None:
    route = {"consultation_id": "c-1", "user_id": "u-1", "role": "expert", "session": "s", "n": 0}

    offer = parse_signal(route | {"type": "offer", "sdp": "v=0\r\n", "record": True, "consent_id": "k-1"})
    plain_offer = parse_signal(route | {"type": "offer", "sdp": "v=0\r\n", "consent_id": "k-1"})

    assert offer.record is True and offer.consent_id == "k-1"  # type: ignore[union-attr]
    assert plain_offer.record is False and plain_offer.consent_id is None  # type: ignore[union-attr]
    assert parse_record({"type": "record", "consultation_id": "c-1", "record": False}).record is False
    with pytest.raises(SignalError):
        parse_record({"type": "record", "consultation_id": "c-1", "record": "yes"})
