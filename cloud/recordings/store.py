"""Where sealed recordings live: files `<consultation>/<recording>.tmrec` under a root directory.

Uploads are written to `.staging/` first (on the same filesystem), checked, then renamed into place with
the file and directory fsynced, so a stored recording is whole. The bytes stay exactly as the edge sealed
them (AES-256-GCM under the recording's key); nothing here sees plaintext. An S3-compatible store would
implement the same four methods with the storage key as the object name.
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path
from typing import BinaryIO, Final

SUFFIX: Final = ".tmrec"


class RecordingStoreError(Exception):
    """The store cannot do what was asked (missing object, disk trouble)."""


def storage_key(consultation_id: uuid.UUID, recording_id: uuid.UUID) -> str:
    return f"{consultation_id}/{recording_id}{SUFFIX}"


class RecordingStore:
    """Sealed recordings as files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._staging = root / ".staging"

    def staging_path(self) -> Path:
        """A fresh temporary file name for an upload in progress (the directory is made on first use)."""
        self._staging.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self._staging / f"{secrets.token_hex(8)}.part"

    def commit(self, staged: Path, key: str) -> None:
        """Move a checked upload into place (atomic rename, fsynced)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            with staged.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(staged, target)
            directory = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            raise RecordingStoreError(f"cannot store {key}: {exc.strerror}") from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise RecordingStoreError(f"no recording stored under {key}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _path(self, key: str) -> Path:
        consultation, _, name = key.partition("/")
        uuid.UUID(consultation)  # keys are built from UUIDs: never a path outside the root
        uuid.UUID(name.removesuffix(SUFFIX))
        return self.root / consultation / name
