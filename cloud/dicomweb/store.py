"""The cloud's DICOM object store: one object per instance, keyed by study/series/instance UIDs.

`ObjectStore` is the port; `FileObjectStore` keeps objects as files under a root directory (atomic: temporary
file, fsync, rename, directory fsync). An S3-compatible store implements the same four methods with the key's
`name` as object name (PUT is atomic there).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from proto.messages import DICOM_UID

_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


class ObjectStoreError(Exception):
    """The object store could not do what was asked."""


class ObjectStoreFullError(ObjectStoreError):
    """No space left for the object."""


class ObjectNotFoundError(ObjectStoreError):
    """No object under that key."""


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """Where an instance lives: its study, series and SOP instance UIDs (validated, so safe as path parts)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str

    def __post_init__(self) -> None:
        for uid in (self.study_instance_uid, self.series_instance_uid, self.sop_instance_uid):
            if len(uid) > 64 or not DICOM_UID.match(uid):
                raise ValueError(f"not a valid DICOM UID: {uid!r}")

    @property
    def name(self) -> str:
        """The object's name: `<study>/<series>/<instance>.dcm`."""
        return f"{self.study_instance_uid}/{self.series_instance_uid}/{self.sop_instance_uid}.dcm"


class ObjectStore(Protocol):
    """Where instance bytes live. Implementations are thread-safe and `put` is atomic."""

    def put(self, key: ObjectKey, data: bytes) -> str:
        """Store (or replace) an object; returns its location (recorded in dicom_instances.path)."""
        ...

    def get(self, key: ObjectKey) -> bytes:
        ...

    def exists(self, key: ObjectKey) -> bool:
        ...

    def delete(self, key: ObjectKey) -> None:
        ...


class FileObjectStore:
    """Objects as files under `root` (settings: dicom.store_dir)."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self._fsync = fsync
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: ObjectKey) -> Path:
        return self.root / key.name

    def put(self, key: ObjectKey, data: bytes) -> str:
        final = self.path(key)
        tmp = final.with_name(f"{final.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            created = self._makedirs(final.parent)
            with open(tmp, "xb") as handle:
                handle.write(data)
                handle.flush()
                if self._fsync:
                    os.fsync(handle.fileno())
            os.replace(tmp, final)
            if self._fsync:
                for directory in {final.parent, *created}:
                    _fsync_dir(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if exc.errno in _FULL_ERRNOS:
                raise ObjectStoreFullError(f"no space for {key.name}: {exc.strerror}") from exc
            raise ObjectStoreError(f"cannot write {key.name}: {exc.strerror}") from exc
        return key.name

    def get(self, key: ObjectKey) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(key.name) from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key.name}: {exc.strerror}") from exc

    def exists(self, key: ObjectKey) -> bool:
        return self.path(key).is_file()

    def delete(self, key: ObjectKey) -> None:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ObjectStoreError(f"cannot delete {key.name}: {exc.strerror}") from exc

    def _makedirs(self, directory: Path) -> list[Path]:
        """Create `directory` and missing parents; the parents of created ones (to fsync)."""
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        parents: list[Path] = []
        for path in reversed(missing):
            with contextlib.suppress(FileExistsError):
                path.mkdir()
                parents.append(path.parent)
        return parents


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
