"""The cloud's own Ed25519 signing key (acks and commands to edges), created on first start.

Stored as `keys.dir/cloud_ed25519.key` in proto.keys format, mode 0600. Creation is atomic (written to a
temporary file, then hard-linked into place, which fails if another process got there first), so several
workers starting together end up with one key.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proto import keys

log = logging.getLogger(__name__)


class CloudKeyError(Exception):
    """The cloud key file is unusable (unreadable, malformed, or readable by others)."""


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The cloud key at `path`, generated there (0600) if missing."""
    if not path.exists():
        _create(path)
    return load(path)


def load(path: Path) -> Ed25519PrivateKey:
    """The existing cloud key; refuses a key file that group or others may read."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CloudKeyError(f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        return keys.read_private(path)
    except OSError as exc:
        raise CloudKeyError(f"cannot read the cloud key {path}: {exc.strerror}") from exc
    except keys.KeyFormatError as exc:
        raise CloudKeyError(f"{path} is not a cloud key: {exc}") from exc


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    key = keys.generate()
    keys.write_private(temporary, key)
    try:
        os.link(temporary, path)
        log.info("keys.cloud_key_created path=%s fingerprint=%s", path, keys.fingerprint(key.public_key()))
    except FileExistsError:
        pass  # another process created it first; theirs is the key
    finally:
        temporary.unlink(missing_ok=True)
