"""The identity key ring on disk: load it, create it on first start, rotate it.

Where the keys come from (`TELEMED_IDENTITY__*` variables, beside `keys.dir` of the cloud settings):
- `TELEMED_IDENTITY__KEYS`: the ring as JSON (from a secret manager); read-only, rotation happens there;
- else the file `TELEMED_IDENTITY__KEY_FILE` (default `<keys.dir>/identity_keys.json`), created with mode
  0600 on first start when the database holds no identity data yet.

File format: `{"format": "telemed.identity-keys.v1", "data": {"current": 2, "keys": {"1": "<base64>", ...}},
"index": {"current": 1, "keys": {...}}}`. Every process re-reads the file when it changes (checked at most
every `TELEMED_IDENTITY__RELOAD_S` seconds, and at once when it meets an unknown key version), so a rotation
reaches running API replicas without a restart.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cloud.identity.crypto import KeyRing, KeyRingError
from cloud.settings import CloudSettings
from proto.settings import SettingsError, load_settings

log = logging.getLogger(__name__)

FILE_FORMAT: Final = "telemed.identity-keys.v1"
DEFAULT_FILE_NAME: Final = "identity_keys.json"


class KeyFileError(Exception):
    """The key ring cannot be read, created or written; the message says which file and why."""


@dataclass(frozen=True)
class IdentitySettings:
    """`TELEMED_IDENTITY__*`: where the identity keys live."""

    key_file: Path | None = None  # default: <keys.dir>/identity_keys.json
    keys: str = ""  # the ring as JSON, instead of a file
    reload_s: float = 5.0

    def __post_init__(self) -> None:
        if self.reload_s <= 0:
            raise ValueError("reload_s must be positive")


@dataclass(frozen=True)
class _IdentityEnvironment:
    identity: IdentitySettings = field(default_factory=IdentitySettings)


def load_identity_settings(environ: Mapping[str, str] = os.environ) -> IdentitySettings:
    """The identity settings from `TELEMED_IDENTITY__*` variables over the defaults."""
    wanted = {key: value for key, value in environ.items() if key.startswith("TELEMED_IDENTITY__")}
    try:
        return load_settings(_IdentityEnvironment, environ=wanted).identity
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError("identity", str(exc)) from exc


# --- the file format (pure) ------------------------------------------------------------------------------


def ring_to_json(ring: KeyRing) -> str:
    """The ring in the file format."""
    def part(keys: Mapping[int, bytes], current: int) -> dict[str, Any]:
        return {"current": current,
                "keys": {str(v): base64.b64encode(k).decode("ascii") for v, k in sorted(keys.items())}}

    document = {"format": FILE_FORMAT, "data": part(ring.data, ring.current_data),
                "index": part(ring.index, ring.current_index)}
    return json.dumps(document, indent=2) + "\n"


def ring_from_json(text: str, *, source: str) -> KeyRing:
    """A ring from the file format; KeyFileError naming `source` when it is not one."""
    try:
        document = json.loads(text)
        if document.get("format") != FILE_FORMAT:
            raise KeyFileError(f"{source}: not a {FILE_FORMAT} document")
        parts = []
        for purpose in ("data", "index"):
            part = document[purpose]
            keys = {int(v): base64.b64decode(k, validate=True) for v, k in part["keys"].items()}
            parts.append((keys, int(part["current"])))
        (data, current_data), (index, current_index) = parts
        return KeyRing(data=data, current_data=current_data, index=index, current_index=current_index)
    except KeyFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, KeyRingError) as exc:
        raise KeyFileError(f"{source}: malformed identity key ring ({exc})") from None


# --- the file ------------------------------------------------------------------------------------------


def read_ring_file(path: Path) -> KeyRing:
    """The ring stored at `path` (warning when others may read it)."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the identity keys: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("identity.keys_file_exposed path=%s mode=%o", path, stat.S_IMODE(mode))
    return ring_from_json(text, source=str(path))


def _write_private(path: Path, text: str) -> Path:
    """Write `text` to a fresh 0600 temporary file beside `path`, flushed to disk; the temporary path."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_ring_file(path: Path) -> KeyRing:
    """Create a new ring at `path` unless one exists (another process may win the race: its ring is used)."""
    try:
        temporary = _write_private(path, ring_to_json(KeyRing.generate()))
        try:
            os.link(temporary, path)  # atomic and never replaces an existing file
            log.info("identity.keys_created path=%s", path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
        _sync_dir(path.parent)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create the identity keys: {exc.strerror}") from None
    return read_ring_file(path)


def write_ring_file(path: Path, ring: KeyRing) -> None:
    """Replace the ring at `path` atomically (rename over it), keeping mode 0600."""
    try:
        temporary = _write_private(path, ring_to_json(ring))
        try:
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        _sync_dir(path.parent)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot write the identity keys: {exc.strerror}") from None


# --- the source every process reads keys from ----------------------------------------------------------------


class KeySource:
    """The key ring of this process: cached, re-read when its file changes, created on demand."""

    def __init__(self, settings: IdentitySettings, *, keys_dir: Path,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._path = settings.key_file or keys_dir / DEFAULT_FILE_NAME
        self._clock = clock
        self._ring: KeyRing | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")

    @classmethod
    def from_settings(cls, settings: CloudSettings, environ: Mapping[str, str] = os.environ) -> KeySource:
        """The source configured by the cloud settings (`keys.dir`) and `TELEMED_IDENTITY__*`."""
        return cls(load_identity_settings(environ), keys_dir=settings.keys.dir)

    @property
    def path(self) -> Path | None:
        """The key file, or None when the keys come from the environment."""
        return None if self._settings.keys else self._path

    @property
    def writable(self) -> bool:
        return not self._settings.keys

    def exists(self) -> bool:
        """Whether a ring is available without creating one."""
        return bool(self._settings.keys) or self._path.exists()

    def ring(self, *, create: bool = False) -> KeyRing:
        """The current ring (re-read if the file changed); with `create`, a new file when there is none."""
        if self._settings.keys:
            if self._ring is None:
                self._ring = ring_from_json(self._settings.keys, source="TELEMED_IDENTITY__KEYS")
            return self._ring
        now = self._clock()
        if self._ring is not None and now - self._checked_at < self._settings.reload_s:
            return self._ring
        self._checked_at = now
        stamp = self._file_stamp()
        if stamp is None:
            if not create:
                raise KeyFileError(f"{self._path}: no identity key ring")
            self._ring = create_ring_file(self._path)
            self._stamp = self._file_stamp()
        elif self._ring is None or stamp != self._stamp:
            previous = self._ring
            self._ring, self._stamp = read_ring_file(self._path), stamp
            if previous is not None:
                log.info("identity.keys_reloaded data_version=%d index_version=%d",
                         self._ring.current_data, self._ring.current_index)
        return self._ring

    def refresh(self) -> KeyRing:
        """Re-read now (a ciphertext named a version this process has not seen yet)."""
        self._checked_at = float("-inf")
        return self.ring()

    def rotate(self, *, data: bool = True, index: bool = False) -> KeyRing:
        """Add new current keys to the file; the new ring."""
        if not self.writable:
            raise KeyFileError("the identity keys come from TELEMED_IDENTITY__KEYS: rotate them in the secret store")
        ring = self.refresh().rotated(data=data, index=index)
        write_ring_file(self._path, ring)
        self._ring, self._stamp, self._checked_at = ring, self._file_stamp(), self._clock()
        log.info("identity.keys_rotated data_version=%d index_version=%d", ring.current_data, ring.current_index)
        return ring

    def _file_stamp(self) -> tuple[int, int] | None:
        with contextlib.suppress(FileNotFoundError):
            info = self._path.stat()
            return info.st_mtime_ns, info.st_ino
        return None
