"""Serving the dashboard: the single-page app at `/` and its files under `/static/`.

There is no build step: static/ holds plain ES modules, the message catalogues and vendored uPlot, read once
at start-up. Every response carries a strict Content-Security-Policy (scripts, styles, images and
connections from this origin only, plus blob: images the DICOM viewer creates; no inline script or style, no
framing) and the usual hardening headers. Files are revalidated on every load (`no-cache` with a strong
ETag): file names are not content-hashed, and a 304 costs one round trip.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request, Response

STATIC_DIR: Final = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY: Final = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
_TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".json": "application/json; charset=utf-8", ".html": "text/html; charset=utf-8",
                 ".svg": "image/svg+xml"}

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file in memory."""

    body: bytes
    media_type: str
    etag: str


def load_assets(root: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every file under `root` by its relative POSIX path."""
    assets: dict[str, Asset] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        body = path.read_bytes()
        media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        assets[path.relative_to(root).as_posix()] = Asset(body, media_type,
                                                          '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return assets


_ASSETS: Final = load_assets()


def _serve(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": asset.etag}
    if asset.etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get("/")
async def index(request: Request) -> Response:
    """The single-page app (every view is a #/ route inside it)."""
    return _serve(request, _ASSETS["index.html"])


@router.get("/static/{path:path}")
async def static(request: Request, path: str) -> Response:
    """A file of the app (only files that existed at start-up: no path is ever joined to the file system)."""
    asset = _ASSETS.get(path)
    if asset is None or path == "index.html":
        return Response(status_code=404, headers=SECURITY_HEADERS)
    return _serve(request, asset)
