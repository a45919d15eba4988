"""The body of a STOW-RS request: multipart/related; type="application/dicom" (PS3.18 10.5.1, RFC 2387).

Each part is one PS3.10 file with `Content-Type: application/dicom; transfer-syntax=<uid>` and a
`Content-Digest: sha-256=:<base64>:` header (RFC 9530) carrying the hash the edge took when it received the
instance. The cloud recomputes the hash of what arrived and refuses a part that differs, which catches an
instance that changed on the edge's disk after it was received as well as damage on the way.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

DICOM_MEDIA_TYPE: Final = "application/dicom"
CRLF: Final = b"\r\n"


@dataclass(frozen=True, slots=True)
class Part:
    """One instance to upload: its file bytes, transfer syntax and the SHA-256 (hex) recorded on receipt."""

    data: bytes
    transfer_syntax_uid: str
    sha256: str


def content_digest(sha256_hex: str) -> str:
    """The RFC 9530 Content-Digest value for a SHA-256 given in hex."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256_hex)).decode("ascii") + ":"


def new_boundary(parts: Sequence[Part]) -> str:
    """A random boundary that occurs in none of the parts (RFC 2046 5.1.1)."""
    while True:
        boundary = "telemed-" + secrets.token_hex(16)
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in part.data for part in parts):
            return boundary


def encode(parts: Sequence[Part], boundary: str | None = None) -> tuple[str, bytes]:
    """(Content-Type header value, body) of a multipart/related STOW-RS request."""
    if not parts:
        raise ValueError("a STOW-RS request carries at least one instance")
    boundary = boundary or new_boundary(parts)
    delimiter = b"--" + boundary.encode("ascii")
    chunks: list[bytes] = []
    for part in parts:
        headers = (
            f"Content-Type: {DICOM_MEDIA_TYPE}; transfer-syntax={part.transfer_syntax_uid}\r\n"
            f"Content-Digest: {content_digest(part.sha256)}\r\n"
            f"Content-Length: {len(part.data)}\r\n"
        ).encode("ascii")
        chunks += [delimiter, CRLF, headers, CRLF, part.data, CRLF]
    chunks += [delimiter, b"--", CRLF]
    content_type = f'multipart/related; type="{DICOM_MEDIA_TYPE}"; boundary={boundary}'
    return content_type, b"".join(chunks)
