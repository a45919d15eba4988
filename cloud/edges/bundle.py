"""The edge config bundle (/work/briefs/edge-bundle.md): `edge.toml` plus the edge's private key.

Layout of the bundle directory (0700): `edge.toml` (0600) with [edge], [mqtt] and [keys] tables, and
`edge_ed25519.key` (0600, proto.keys format) referenced from it by a path relative to the directory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proto import keys

BUNDLE_FILE = "edge.toml"
KEY_FILE = "edge_ed25519.key"


class BundleError(Exception):
    """The bundle cannot be written where asked."""


@dataclass(frozen=True)
class BundleSpec:
    """What goes into edge.toml."""

    edge_id: str
    site: str
    name: str
    mqtt_host: str
    mqtt_port: int
    password: str
    cloud_public_key: str  # base64 raw Ed25519 (proto.keys.public_to_text)
    tls: bool = False
    cafile: str = ""

    def __repr__(self) -> str:  # the password never lands in a log through a repr
        return f"BundleSpec(edge_id={self.edge_id!r}, site={self.site!r}, mqtt={self.mqtt_host}:{self.mqtt_port})"


def _string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes: \" \\ \b \f \n \r \t \uXXXX).
    return json.dumps(value, ensure_ascii=False)


def render_edge_toml(spec: BundleSpec) -> str:
    """The text of edge.toml."""
    return "\n".join((
        "# telemed edge configuration, written by `telemed-cloud edge add`. Keep it secret: it holds the",
        "# edge's broker password; its signing key is the file named in [keys].",
        "[edge]",
        f"id = {_string(spec.edge_id)}",
        f"site = {_string(spec.site)}",
        f"name = {_string(spec.name)}",
        "",
        "[mqtt]",
        f"host = {_string(spec.mqtt_host)}",
        f"port = {spec.mqtt_port}",
        f"username = {_string(spec.edge_id)}",
        f"password = {_string(spec.password)}",
        f"tls = {'true' if spec.tls else 'false'}",
        f"cafile = {_string(spec.cafile)}",
        "",
        "[keys]",
        f"private_key_file = {_string(KEY_FILE)}",
        f"cloud_public_key = {_string(spec.cloud_public_key)}",
        "",
    ))


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_bundle(directory: Path, spec: BundleSpec, private_key: Ed25519PrivateKey) -> Path:
    """Write the bundle into `directory` (created 0700; must not exist or be empty); the edge.toml path."""
    try:
        if directory.exists():
            if not directory.is_dir() or any(directory.iterdir()):
                raise BundleError(f"{directory} exists and is not an empty directory: choose another --out")
            directory.chmod(0o700)
        else:
            directory.mkdir(mode=0o700, parents=True)
        keys.write_private(directory / KEY_FILE, private_key)
        _write_secret(directory / BUNDLE_FILE, render_edge_toml(spec))
    except OSError as exc:
        raise BundleError(f"cannot write the bundle in {directory}: {exc.strerror}") from exc
    return directory / BUNDLE_FILE
