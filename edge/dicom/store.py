"""The edge's on-disk instance store: PS3.10 files under <root>/<study>/<series>/<sop instance>.dcm plus the index.

Files are written atomically (temporary file, fsync, rename, fsync of the directory), so a crash leaves
either the whole instance or nothing, and a success answered to a modality means the bytes are on disk.
The bytes are stored exactly as received: nothing is decoded or re-encoded.

Duplicates (PS3.4 B.4.1 leaves an SCP's handling of a SOP Instance UID it already holds to the SCP's
conformance statement): the first instance received under a UID is kept. The same bytes again are a no-op;
different bytes are logged as a conflict and dropped, because the first version may already be described
by a manifest and confirmed by the cloud, and the edge and the cloud must keep agreeing on its hash.
Either way the C-STORE succeeds, so a modality's retry after a lost response does not turn into an error.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.dicom.errors import (
    SopClassMismatchError,
    StorageFullError,
    StoreError,
    StoreIOError,
    UidMismatchError,
)
from edge.dicom.index import DicomIndex
from edge.dicom.models import PutOutcome, PutResult, StoredInstance
from edge.dicom.parse import read_header

log = logging.getLogger(__name__)

INDEX_NAME: Final = "index.sqlite3"
SUFFIX: Final = ".dcm"
_TMP_SUFFIX: Final = ".tmp"
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
# Stores of the same SOP Instance UID are serialised by one of these locks (chosen by hash), so two
# associations delivering one instance at once cannot both write it.
_LOCK_STRIPES: Final = 64

StoredListener = Callable[[StoredInstance], None]


@dataclass(frozen=True)
class StoreLimits:
    """The disk budget: at most `max_bytes` of instances (None: no budget), and always `min_free_bytes` free."""

    max_bytes: int | None = None
    min_free_bytes: int = 256 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive (or None for no budget)")
        if self.min_free_bytes < 0:
            raise ValueError("min_free_bytes must not be negative")


@dataclass(frozen=True)
class ReconcileReport:
    """What `reconcile` repaired after an unclean stop."""

    indexed: int  # files on disk the index did not know (crash between rename and index commit)
    forgotten: int  # index rows whose file is gone
    unreadable: int  # files that are not instances we can index (moved aside as *.bad)
    temporaries: int  # half-written temporary files removed


class InstanceStore:
    """Instances under `root`, indexed in `<root>/index.sqlite3`; thread-safe."""

    def __init__(self, root: Path, *, limits: StoreLimits | None = None, clock: Callable[[], float] = time.time,
                 fsync: bool = True) -> None:
        self.root = root
        self.limits = limits or StoreLimits()
        self._clock = clock
        self._fsync = fsync
        root.mkdir(parents=True, exist_ok=True)
        self.index = DicomIndex(root / INDEX_NAME)
        self._budget_lock = threading.Lock()
        self._used = self.index.total_bytes()
        self._reserved = 0
        self._stripes = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._known_dirs: set[Path] = set()
        self._listeners: list[StoredListener] = []

    def close(self) -> None:
        self.index.close()

    def add_listener(self, listener: StoredListener) -> None:
        """Call `listener(instance)` after each newly stored instance (on the storing thread; keep it quick)."""
        self._listeners.append(listener)

    @property
    def used_bytes(self) -> int:
        return self._used

    def path_of(self, instance: StoredInstance) -> Path:
        return self.root / instance.path

    def read(self, instance: StoredInstance) -> bytes:
        """The stored PS3.10 bytes of an instance; StoreIOError if the file is gone or unreadable."""
        try:
            return self.path_of(instance).read_bytes()
        except OSError as exc:
            raise StoreIOError(f"cannot read instance file {instance.path}: {exc.strerror}") from exc

    # --- storing ----------------------------------------------------------------------------------------------

    def put(self, encoded: bytes, *, calling_ae: str = "", expected_sop_instance_uid: str | None = None,
            expected_sop_class_uid: str | None = None) -> PutResult:
        """Store one PS3.10 file given as bytes (preamble, file meta, dataset as received).

        Raises UnreadableDatasetError, MissingAttributeError, UidMismatchError, SopClassMismatchError,
        StorageFullError or StoreIOError.
        """
        header = read_header(encoded)
        if expected_sop_instance_uid is not None and header.sop_instance_uid != expected_sop_instance_uid:
            raise UidMismatchError("the dataset's SOP Instance UID is not the request's Affected SOP Instance UID")
        if expected_sop_class_uid is not None and header.sop_class_uid != expected_sop_class_uid:
            raise SopClassMismatchError("the dataset's SOP Class UID is not the request's Affected SOP Class UID")
        digest = hashlib.sha256(encoded).hexdigest()
        size = len(encoded)
        relative = f"{header.study_instance_uid}/{header.series_instance_uid}/{header.sop_instance_uid}{SUFFIX}"
        stripe = self._stripes[hash(header.sop_instance_uid) % _LOCK_STRIPES]
        with stripe:
            existing = self.index.instance(header.sop_instance_uid)
            if existing is not None:
                return self._duplicate(existing, digest)
            self._reserve(size)
            stored = False
            try:
                self._write(self.root / relative, encoded)
                try:
                    outcome, instance = self.index.add_instance(
                        header, size_bytes=size, sha256=digest, path=relative, received_at=self._clock(),
                        calling_ae=calling_ae)
                except StoreError:
                    _unlink_quietly(self.root / relative)
                    raise
                stored = outcome is PutOutcome.STORED
            finally:
                self._release(size, stored=stored)
            if not stored:  # only if the index changed behind the stripe lock (reconcile running while serving)
                return self._duplicate(instance, digest)
        for listener in self._listeners:
            try:
                listener(instance)
            except Exception:
                log.exception("dicom.store.listener_failed")
        return PutResult(PutOutcome.STORED, instance)

    def _duplicate(self, existing: StoredInstance, digest: str) -> PutResult:
        if existing.sha256 == digest:
            log.info("dicom.store.duplicate sop_instance_uid=%s", existing.sop_instance_uid)
            return PutResult(PutOutcome.DUPLICATE, existing)
        log.warning("dicom.store.duplicate_conflict sop_instance_uid=%s kept_sha256=%s dropped_sha256=%s",
                    existing.sop_instance_uid, existing.sha256, digest)
        return PutResult(PutOutcome.CONFLICT, existing)

    def _reserve(self, size: int) -> None:
        with self._budget_lock:
            budget = self.limits.max_bytes
            if budget is not None and self._used + self._reserved + size > budget:
                raise StorageFullError(f"disk budget of {budget} bytes would be exceeded")
            try:
                free = shutil.disk_usage(self.root).free
            except OSError as exc:
                raise StoreIOError(f"cannot check free space: {exc.strerror}") from exc
            if free - self._reserved - size < self.limits.min_free_bytes:
                raise StorageFullError(f"only {free} bytes free, keeping {self.limits.min_free_bytes} in reserve")
            self._reserved += size

    def _release(self, size: int, *, stored: bool) -> None:
        with self._budget_lock:
            self._reserved -= size
            if stored:
                self._used += size

    def _write(self, final: Path, data: bytes) -> None:
        """Write `data` to `final` atomically and durably."""
        tmp = final.with_name(f"{final.name}.{uuid.uuid4().hex[:12]}{_TMP_SUFFIX}")
        try:
            self._ensure_dir(final.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            if self._fsync:
                _fsync_dir(final.parent)
        except OSError as exc:
            _unlink_quietly(tmp)
            if exc.errno in _FULL_ERRNOS:
                raise StorageFullError(f"disk full: {exc.strerror}") from exc
            raise StoreIOError(f"cannot write instance file: {exc.strerror}") from exc

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing: list[Path] = []
        current = directory
        while not current.exists():
            missing.append(current)
            current = current.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=0o750)
            except FileExistsError:
                continue
            if self._fsync:
                _fsync_dir(path.parent)
        self._known_dirs.add(directory)

    # --- removing -------------------------------------------------------------------------------------------

    def remove_files(self, relative_paths: Iterable[str]) -> int:
        """Delete instance files whose index rows are already gone, and then-empty directories; bytes freed."""
        freed = 0
        parents: set[Path] = set()
        for relative in relative_paths:
            path = self.root / relative
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("dicom.store.unlink_failed path=%s error=%s", relative, exc.strerror)
                continue
            freed += size
            parents.add(path.parent)
        for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            for candidate in (directory, directory.parent):
                try:
                    candidate.rmdir()
                    self._known_dirs.discard(candidate)
                except OSError:
                    break
        with self._budget_lock:
            self._used = max(0, self._used - freed)
        return freed

    # --- recovery -------------------------------------------------------------------------------------------

    def reconcile(self) -> ReconcileReport:
        """Make the index and the files agree after an unclean stop (run before serving)."""
        known = self.index.all_paths()
        on_disk: set[str] = set()
        indexed = unreadable = temporaries = 0
        for path in self.root.rglob("*"):
            if not path.is_file() or path.parent == self.root:
                continue
            relative = path.relative_to(self.root).as_posix()
            if path.name.endswith(_TMP_SUFFIX):
                _unlink_quietly(path)
                temporaries += 1
                continue
            if not path.name.endswith(SUFFIX):
                continue
            on_disk.add(relative)
            if relative in known:
                continue
            if self._index_orphan(path, relative):
                indexed += 1
            else:
                unreadable += 1
        missing = [uid for relative, uid in known.items() if relative not in on_disk]
        forgotten = self.index.remove_instances(missing)
        with self._budget_lock:
            self._used = self.index.total_bytes()
        report = ReconcileReport(indexed=indexed, forgotten=forgotten, unreadable=unreadable, temporaries=temporaries)
        if indexed or forgotten or unreadable or temporaries:
            log.warning("dicom.store.reconciled indexed=%d forgotten=%d unreadable=%d temporaries=%d",
                        indexed, forgotten, unreadable, temporaries)
        return report

    def _index_orphan(self, path: Path, relative: str) -> bool:
        try:
            data = path.read_bytes()
            header = read_header(data)
        except (OSError, StoreError) as exc:
            log.warning("dicom.store.orphan_unreadable path=%s error=%s", relative, exc)
            _rename_quietly(path, path.with_name(path.name + ".bad"))
            return False
        expected = f"{header.study_instance_uid}/{header.series_instance_uid}/{header.sop_instance_uid}{SUFFIX}"
        if expected != relative:
            log.warning("dicom.store.orphan_misplaced path=%s", relative)
            _rename_quietly(path, path.with_name(path.name + ".bad"))
            return False
        outcome, _ = self.index.add_instance(header, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                             path=relative, received_at=path.stat().st_mtime)
        return outcome is PutOutcome.STORED


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _rename_quietly(source: Path, target: Path) -> None:
    with contextlib.suppress(OSError):
        source.rename(target)
