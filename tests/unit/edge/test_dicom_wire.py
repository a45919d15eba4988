"""The edge-to-cloud DICOMweb wire, both ends: multipart bodies, part checks, request signatures, STOW responses,
and the forwarder's pure helpers (backoff, batching)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

import pytest

from cloud.dicomweb import auth, reasons
from cloud.dicomweb import multipart as cloud_multipart
from cloud.dicomweb.parts import Candidate, Failure, declared_sha256, examine
from cloud.dicomweb.service import Stored, StowOutcome
from cloud.dicomweb.stow import stow_response_body, stow_status
from edge.dicom import multipart
from edge.dicom.forwarder import backoff_delay, batches, parse_stow_response
from edge.dicom.models import StoredInstance
from edge.dicom.signing import RequestSigner
from proto import keys
from tests.unit.edge.test_dicom_support import minimal_instance, part10

NOW = 1_790_000_000.0


def _part(data: bytes, *, digest_of: bytes | None = None) -> multipart.Part:
    return multipart.Part(data=data, transfer_syntax_uid="1.2.840.10008.1.2.1",
                          sha256=hashlib.sha256(digest_of if digest_of is not None else data).hexdigest())


# --- multipart ----------------------------------------------------------------------------------------------------


def test_edge_bodies_parse_back_into_the_same_parts() -> None:
    files = [part10(minimal_instance()) for _ in range(3)] + [b"--", b"\r\n\r\n", b""]
    content_type, body = multipart.encode([_part(f) for f in files])
    media_type, params = cloud_multipart.parse_media_type(content_type)
    assert media_type == "multipart/related" and params["type"] == "application/dicom"
    parts = cloud_multipart.split(body, params["boundary"])
    assert [p.data for p in parts] == files
    assert parts[0].headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    assert declared_sha256(parts[0].headers) == hashlib.sha256(files[0]).hexdigest()


def test_the_boundary_never_occurs_in_a_part() -> None:
    data = b"x--telemed-" * 1000
    boundary = multipart.new_boundary([_part(data)])
    assert ("--" + boundary).encode() not in data


def test_a_preamble_and_an_epilogue_are_ignored() -> None:
    body = b"preamble\r\n--b\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b--\r\nepilogue"
    assert [p.data for p in cloud_multipart.split(body, "b")] == [b"DATA"]


@pytest.mark.parametrize("body", [
    b"--b\r\nContent-Type: application/dicom\r\n\r\nDATA",  # never closed
    b"no boundary at all",
    b"--b\r\nbroken header line\r\n\r\nDATA\r\n--b--",
    b"--bXX\r\n\r\nDATA\r\n--b--",  # garbage after the boundary on its line
])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(cloud_multipart.MultipartError):
        cloud_multipart.split(body, "b")


def test_quoted_media_type_parameters() -> None:
    assert cloud_multipart.parse_media_type('Multipart/Related; type="application/dicom"; boundary="a;b"') == (
        "multipart/related", {"type": "application/dicom", "boundary": "a;b"})


# --- what the cloud makes of a part ---------------------------------------------------------------------------


def _cloud_part(data: bytes, *, digest_of: bytes | None = None,
                content_type: str = "application/dicom") -> cloud_multipart.BodyPart:
    digest = multipart.content_digest(hashlib.sha256(digest_of if digest_of is not None else data).hexdigest())
    return cloud_multipart.BodyPart(headers={"content-type": content_type, "content-digest": digest}, data=data)


def test_a_good_part_is_a_candidate_keyed_by_its_uids() -> None:
    ds = minimal_instance()
    data = part10(ds)
    result = examine(_cloud_part(data), study_uid=ds.StudyInstanceUID)
    assert isinstance(result, Candidate)
    assert result.key.name == f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    assert result.sha256 == hashlib.sha256(data).hexdigest()


def test_a_part_whose_bytes_changed_fails_its_digest() -> None:
    data = part10(minimal_instance())
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    result = examine(_cloud_part(tampered, digest_of=data), study_uid=None)
    assert isinstance(result, Failure)
    assert result.reason == reasons.INTEGRITY_FAILURE and result.sop_instance_uid


@pytest.mark.parametrize(("part", "reason"), [
    (cloud_multipart.BodyPart({"content-type": "application/dicom"}, b"not a dicom file"), reasons.CANNOT_UNDERSTAND),
    (cloud_multipart.BodyPart({"content-type": "image/jpeg"}, b"\xff\xd8"), reasons.CANNOT_UNDERSTAND),
])
def test_unreadable_parts_cannot_be_understood(part: cloud_multipart.BodyPart, reason: int) -> None:
    result = examine(part, study_uid=None)
    assert isinstance(result, Failure) and result.reason == reason


def test_a_part_without_a_digest_or_of_another_study_fails() -> None:
    ds = minimal_instance()
    data = part10(ds)
    undigested = examine(cloud_multipart.BodyPart({"content-type": "application/dicom"}, data), study_uid=None)
    assert isinstance(undigested, Failure) and undigested.reason == reasons.INTEGRITY_FAILURE
    elsewhere = examine(_cloud_part(data), study_uid="1.2.3.4")
    assert isinstance(elsewhere, Failure) and elsewhere.reason == reasons.DATASET_DOES_NOT_MATCH


# --- request signatures --------------------------------------------------------------------------------------------


class _Keys:
    def __init__(self) -> None:
        self.private = keys.generate()
        self.entry = auth.EdgeKey("edge-a", "site-1", self.private.public_key(), active=True)

    async def lookup(self, edge_id: str) -> auth.EdgeKey | None:
        return self.entry if edge_id == self.entry.edge_id else None


def _verify(headers: dict[str, str], body: bytes, ring: _Keys, replay: auth.ReplayCache, *,
            path: str = "/dicomweb/studies/1.2.3", now: float = NOW) -> auth.VerifiedEdge:
    lowered = {k.lower(): v for k, v in headers.items()}
    return asyncio.run(auth.verify(method="POST", path=path, body=body, headers=lowered, lookup=ring.lookup,
                                   replay=replay, now=now))


def test_an_edge_signature_verifies_at_the_cloud_once() -> None:
    ring = _Keys()
    signer = RequestSigner("edge-a", ring.private, clock=lambda: NOW)
    headers = signer.headers("POST", "/dicomweb/studies/1.2.3", b"body")
    replay = auth.ReplayCache()
    assert _verify(headers, b"body", ring, replay) == auth.VerifiedEdge("edge-a", "site-1")
    with pytest.raises(auth.EdgeAuthError, match="replayed"):
        _verify(headers, b"body", ring, replay)


@pytest.mark.parametrize(("body", "path", "now", "message"), [
    (b"other body", "/dicomweb/studies/1.2.3", NOW, "bad signature"),
    (b"body", "/dicomweb/studies/1.2.4", NOW, "bad signature"),
    (b"body", "/dicomweb/studies/1.2.3", NOW + 301, "clock window"),
    (b"body", "/dicomweb/studies/1.2.3", NOW - 301, "clock window"),
])
def test_a_changed_request_or_a_stale_one_is_refused(body: bytes, path: str, now: float, message: str) -> None:
    ring = _Keys()
    headers = RequestSigner("edge-a", ring.private, clock=lambda: NOW).headers("POST", "/dicomweb/studies/1.2.3",
                                                                              b"body")
    with pytest.raises(auth.EdgeAuthError, match=message) as caught:
        _verify(headers, body, ring, auth.ReplayCache(), path=path, now=now)
    assert caught.value.status_code == 401


def test_unknown_revoked_and_unsigned_edges() -> None:
    ring = _Keys()
    headers = RequestSigner("edge-b", ring.private, clock=lambda: NOW).headers("POST", "/p", b"")
    with pytest.raises(auth.EdgeAuthError, match="unknown edge"):
        _verify(headers, b"", ring, auth.ReplayCache(), path="/p")
    ring.entry = auth.EdgeKey("edge-a", "site-1", ring.private.public_key(), active=False)
    headers = RequestSigner("edge-a", ring.private, clock=lambda: NOW).headers("POST", "/p", b"")
    with pytest.raises(auth.EdgeAuthError) as revoked:
        _verify(headers, b"", ring, auth.ReplayCache(), path="/p")
    assert revoked.value.status_code == 403
    with pytest.raises(auth.EdgeAuthError, match="missing"):
        _verify({}, b"", ring, auth.ReplayCache(), path="/p")


def test_two_attempts_a_millisecond_apart_have_different_signatures() -> None:
    clock = [NOW]
    signer = RequestSigner("edge-a", keys.generate(), clock=lambda: clock[0])
    first = signer.headers("POST", "/p", b"x")
    clock[0] += 0.001
    assert signer.headers("POST", "/p", b"x")["X-Telemed-Signature"] != first["X-Telemed-Signature"]


def test_the_replay_cache_forgets_after_the_window_and_stays_bounded() -> None:
    cache = auth.ReplayCache(window_s=300, max_entries=3)
    assert cache.check_and_add(b"a", timestamp_s=NOW, now=NOW)
    assert not cache.check_and_add(b"a", timestamp_s=NOW, now=NOW + 299)
    assert cache.check_and_add(b"a", timestamp_s=NOW, now=NOW + 301)
    for signature in (b"b", b"c", b"d", b"e"):
        assert cache.check_and_add(signature, timestamp_s=NOW, now=NOW)
    assert len(cache._seen) <= 3


# --- STOW responses -------------------------------------------------------------------------------------------------


def test_the_edge_reads_what_the_cloud_answers() -> None:
    outcome = StowOutcome(
        stored=[Stored("1.2.840.10008.5.1.4.1.1.2", "1.2.3.1", "1.2.3", "1.2.3.9", new=True),
                Stored("1.2.840.10008.5.1.4.1.1.2", "1.2.3.2", "1.2.3", "1.2.3.9", new=False)],
        failed=[Failure("1.2.840.10008.5.1.4.1.1.2", "1.2.3.3", reasons.INTEGRITY_FAILURE, "digest"),
                Failure("", "", reasons.CANNOT_UNDERSTAND, "junk")],
    )
    body = stow_response_body(outcome, base_url="https://cloud.example/", study_uid="1.2.3")
    assert body["00081190"]["Value"] == ["https://cloud.example/dicomweb/studies/1.2.3"]
    assert body["00081199"]["Value"][0]["00081190"]["Value"] == [
        "https://cloud.example/dicomweb/studies/1.2.3/series/1.2.3.9/instances/1.2.3.1"]
    result = parse_stow_response(202, json.dumps(body).encode())
    assert result.stored == {"1.2.3.1", "1.2.3.2"}
    assert result.failed == {"1.2.3.3": reasons.INTEGRITY_FAILURE}
    assert stow_status(outcome) == 202
    assert stow_status(StowOutcome(stored=outcome.stored)) == 200
    assert stow_status(StowOutcome(failed=outcome.failed)) == 409


# --- forwarder helpers ----------------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_within_its_cap_and_jitter() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, initial=1.0, maximum=30.0, jitter=0.5, rng=rng) for n in range(1, 9)]
    for attempt, delay in enumerate(delays, start=1):
        base = min(30.0, 2.0 ** (attempt - 1))
        assert base * 0.5 <= delay <= base
    assert backoff_delay(3, initial=1.0, maximum=30.0, jitter=0.0, rng=rng) == 4.0


def _instance(uid: str, size: int) -> StoredInstance:
    return StoredInstance(uid, "1.2", "1.2.840.10008.1.2.1", "1.3", "1.4", size, "0" * 64, f"{uid}.dcm", 0.0)


def test_batches_respect_bytes_and_count() -> None:
    items = [_instance(f"1.{i}", size) for i, size in enumerate([40, 40, 40, 200, 10, 10, 10, 10])]
    grouped = [[i.sop_instance_uid for i in b] for b in batches(items, max_bytes=100, max_count=3)]
    assert grouped == [["1.0", "1.1"], ["1.2"], ["1.3"], ["1.4", "1.5", "1.6"], ["1.7"]]
