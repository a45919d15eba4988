"""A strict parser of multipart/related bodies (RFC 2046 5.1, RFC 2387) as STOW-RS sends them (PS3.18 8.6.1.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

CRLF: Final = b"\r\n"
MAX_HEADER_BYTES: Final = 16 * 1024


class MultipartError(ValueError):
    """The body is not a well-formed multipart body for its boundary."""


@dataclass(frozen=True, slots=True)
class BodyPart:
    headers: dict[str, str]  # lower-case names
    data: bytes


def parse_media_type(value: str) -> tuple[str, dict[str, str]]:
    """('type/subtype' in lower case, {parameter: value}) of a Content-Type header (RFC 9110 8.3.1)."""
    media_type, _, rest = value.partition(";")
    params: dict[str, str] = {}
    while rest.strip():
        item, rest = _next_parameter(rest)
        name, eq, raw = item.partition("=")
        if not eq:
            continue
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"')
        params[name.strip().lower()] = raw
    return media_type.strip().lower(), params


def _next_parameter(text: str) -> tuple[str, str]:
    """Split at the first ';' outside a quoted string."""
    quoted = False
    for i, char in enumerate(text):
        if char == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif char == ";" and not quoted:
            return text[:i], text[i + 1 :]
    return text, ""


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(CRLF):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise MultipartError(f"malformed part header line {line[:60]!r}")
        headers[name.strip().decode("ascii", "replace").lower()] = value.strip().decode("latin-1")
    return headers


def split(body: bytes, boundary: str) -> list[BodyPart]:
    """The parts of a multipart body; MultipartError if it is malformed or not closed."""
    if not 1 <= len(boundary) <= 70:  # RFC 2046 5.1.1
        raise MultipartError("boundary must be 1..70 characters")
    delimiter = b"--" + boundary.encode("ascii")
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:  # a preamble precedes the first delimiter, which then starts a line
        found = body.find(CRLF + delimiter)
        if found < 0:
            raise MultipartError("no opening boundary")
        pos = found + 2 + len(delimiter)
    parts: list[BodyPart] = []
    separator = CRLF + delimiter
    while True:
        if body.startswith(b"--", pos):
            return parts  # close delimiter; what follows is the epilogue
        line_end = body.find(CRLF, pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise MultipartError("boundary line not followed by CRLF")
        start = line_end + 2
        end = body.find(separator, start)
        if end < 0:
            raise MultipartError("a part is not closed by a boundary")
        header_end = body.find(CRLF + CRLF, start, min(end, start + MAX_HEADER_BYTES))
        if body.startswith(CRLF, start):  # no headers at all
            headers, data_start = {}, start + 2
        elif header_end < 0:
            raise MultipartError("part headers are not terminated by an empty line")
        else:
            headers, data_start = _headers(body[start:header_end]), header_end + 4
        parts.append(BodyPart(headers=headers, data=body[data_start:end]))
        pos = end + len(separator)
