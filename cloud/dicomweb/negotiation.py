"""Accept-header negotiation for the DICOMweb read routes (PS3.18 8.7, RFC 9110 12.5.1) (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cloud.dicomweb.multipart import parse_media_type

DICOM_JSON: Final = "application/dicom+json"


@dataclass(frozen=True, slots=True)
class Acceptable:
    """One media range of an Accept header, with its parameters (lower-case names)."""

    media_type: str
    params: dict[str, str]

    @property
    def part_type(self) -> str:
        """The `type` parameter of a multipart/related range (lower case), "" without one."""
        return self.params.get("type", "").lower()

    @property
    def transfer_syntax(self) -> str | None:
        return self.params.get("transfer-syntax")


def _split(header: str) -> list[str]:
    """Comma-separated items, ignoring commas inside quoted strings."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_accept(header: str | None) -> list[Acceptable]:
    """The media ranges in preference order (q descending, then as given); q=0 ranges dropped.
    An absent or empty header accepts anything."""
    if header is None or not header.strip():
        return [Acceptable("*/*", {})]
    ranked: list[tuple[float, int, Acceptable]] = []
    for position, item in enumerate(_split(header)):
        media_type, params = parse_media_type(item)
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            ranked.append((-quality, position, Acceptable(media_type, params)))
    return [entry for _, _, entry in sorted(ranked, key=lambda r: (r[0], r[1]))]


def accepts_json(header: str | None) -> bool:
    """Whether DICOM JSON (or plain JSON) is acceptable."""
    return any(a.media_type in (DICOM_JSON, "application/json", "application/*", "*/*") for a in parse_accept(header))


def choose_image(header: str | None, default: str = "image/jpeg") -> str | None:
    """image/jpeg or image/png for a rendered resource (JPEG when anything goes); None if neither is acceptable."""
    for entry in parse_accept(header):
        if entry.media_type in ("image/jpeg", "image/png"):
            return entry.media_type
        if entry.media_type in ("image/*", "*/*"):
            return default
    return None


def multipart_choice(header: str | None, part_types: tuple[str, ...]) -> Acceptable | None:
    """The first acceptable multipart/related range whose `type` is one of `part_types` (or a wildcard range,
    which gets the first of them); None when none fits."""
    for entry in parse_accept(header):
        if entry.media_type == "multipart/related" and (entry.part_type in part_types or not entry.part_type):
            part_type = entry.part_type or part_types[0]
            return Acceptable(entry.media_type, {**entry.params, "type": part_type})
        if entry.media_type in ("*/*", "multipart/*"):
            return Acceptable("multipart/related", {"type": part_types[0]})
        if entry.media_type in part_types:  # the part type alone, as some clients send it
            return Acceptable("multipart/related", {**entry.params, "type": entry.media_type})
    return None
