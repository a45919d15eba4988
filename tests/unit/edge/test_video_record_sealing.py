"""Sealed recordings: the edge seals (edge/video/sealing.py), the cloud opens (cloud/recordings/sealed.py).

Round trips across chunk boundaries, the key usable only with the cloud's key, and every kind of tampering
(a changed header, a flipped bit, chunks swapped, dropped or cut off) detected.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.recordings.sealed import SealError, cloud_agreement_key, decrypt_chunks, read_header, unwrap_key
from edge.video import sealing

HEADER = {"recording_id": "0f0e0d0c-0000-4000-8000-000000000001", "consultation_id": "c-1", "edge_id": "edge-a",
          "media_type": "video/webm"}
CHUNK = 64


def open_sealed(data: bytes, cloud: Ed25519PrivateKey) -> bytes:
    source = io.BytesIO(data)
    header = read_header(source)
    return b"".join(decrypt_chunks(source, header, unwrap_key(header, cloud)))


def seal(tmp_path: Path, media: bytes, cloud: Ed25519PrivateKey) -> tuple[bytes, sealing.SealedFile]:
    plain = tmp_path / "media.webm"
    plain.write_bytes(media)
    result = sealing.seal_file(plain, tmp_path / "media.tmrec", header=HEADER, recipient=cloud.public_key(),
                               chunk_bytes=CHUNK)
    return result.path.read_bytes(), result


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17])
def test_a_sealed_recording_opens_to_the_same_media_across_chunk_boundaries(tmp_path: Path, size: int) -> None:
    cloud = Ed25519PrivateKey.generate()
    media = bytes(i % 251 for i in range(size))

    data, result = seal(tmp_path, media, cloud)

    assert open_sealed(data, cloud) == media
    assert (result.bytes, result.media_bytes) == (len(data), size)
    assert media[:CHUNK] not in data or size < 8  # the media is not in the clear
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_header_describes_the_recording_without_the_key(tmp_path: Path) -> None:
    cloud = Ed25519PrivateKey.generate()
    _, result = seal(tmp_path, b"x" * 100, cloud)

    header = sealing.read_header(result.path)

    assert {k: header[k] for k in HEADER} == HEADER
    assert header["chunk_bytes"] == CHUNK and header["key"]["alg"] == "X25519-HKDF-SHA256-A256GCM"
    assert set(header["key"]) == {"alg", "epk", "nonce", "sealed"}


def test_the_montgomery_form_of_the_cloud_key_matches_the_clouds_agreement_key() -> None:
    for _ in range(4):
        cloud = Ed25519PrivateKey.generate()
        assert sealing.montgomery_public(cloud.public_key()).public_bytes_raw() == \
            cloud_agreement_key(cloud).public_key().public_bytes_raw()


def test_only_the_clouds_key_unwraps_the_recording_key(tmp_path: Path) -> None:
    data, _ = seal(tmp_path, b"media" * 50, Ed25519PrivateKey.generate())

    with pytest.raises(SealError, match="not wrapped for this cloud key"):
        open_sealed(data, Ed25519PrivateKey.generate())


def _tampered_header(data: bytes, change: dict[str, object]) -> bytes:
    _, _, length = struct.unpack_from(">5sBI", data)
    start = struct.calcsize(">5sBI")
    header = json.loads(data[start:start + length]) | change
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack(">5sBI", b"TMREC", 1, len(text)) + text + data[start + length:]


def test_tampering_is_detected(tmp_path: Path) -> None:
    cloud = Ed25519PrivateKey.generate()
    data, _ = seal(tmp_path, bytes(range(200)) * 2, cloud)  # 400 bytes: 7 chunks of 64
    head = read_header(io.BytesIO(data)).size
    block = CHUNK + 16
    chunks = [data[head + i * block:head + (i + 1) * block] for i in range(7)]
    assert b"".join(chunks) == data[head:]

    flipped = bytearray(data)
    flipped[head + 5] ^= 0x01
    cases = {
        "a flipped bit": bytes(flipped),
        "another consultation in the header": _tampered_header(data, {"consultation_id": "c-2"}),
        "another recording id (the key is bound to it)": _tampered_header(data, {"recording_id": "other"}),
        "two chunks swapped": data[:head] + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "a chunk dropped": data[:head] + chunks[0] + b"".join(chunks[2:]),
        "cut after a full chunk": data[:head] + b"".join(chunks[:3]),
        "cut inside a chunk": data[:-5],
        "not a recording": b"RIFF" + data[4:],
    }
    for what, bad in cases.items():
        with pytest.raises(SealError):
            open_sealed(bad, cloud)
            pytest.fail(f"{what} went unnoticed")
