"""The SQLite index of the edge's DICOM store: studies, series, instances, completion and upload state.

One connection in WAL mode, shared by the SCP's association threads, the completion watcher and the
forwarder under a lock (each statement is short). Commits use synchronous=NORMAL: a power cut may lose the
last index rows but never a file, and `InstanceStore.reconcile` rebuilds rows from the files on start.
sqlite3 errors never leave this module: they become StoreIOError.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from edge.dicom.errors import StoreIOError
from edge.dicom.models import InstanceHeader, PutOutcome, SeriesRecord, StoredInstance, StudyRecord, UploadState

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS studies (
    study_uid          TEXT PRIMARY KEY,
    patient_id         TEXT NOT NULL DEFAULT '',
    patient_name       TEXT NOT NULL DEFAULT '',
    study_id           TEXT NOT NULL DEFAULT '',
    study_date         TEXT NOT NULL DEFAULT '',
    study_time         TEXT NOT NULL DEFAULT '',
    accession_number   TEXT NOT NULL DEFAULT '',
    study_description  TEXT NOT NULL DEFAULT '',
    first_received_at  REAL NOT NULL,
    last_received_at   REAL NOT NULL,
    -- the last_received_at a manifest was built from: the study is complete-and-told while they are equal
    manifested_through REAL,
    manifested_at      REAL
);
CREATE TABLE IF NOT EXISTS series (
    series_uid         TEXT PRIMARY KEY,
    study_uid          TEXT NOT NULL REFERENCES studies ON DELETE CASCADE,
    modality           TEXT NOT NULL DEFAULT '',
    series_number      INTEGER,
    series_description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS series_study ON series (study_uid);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid    TEXT PRIMARY KEY,
    series_uid          TEXT NOT NULL REFERENCES series ON DELETE CASCADE,
    study_uid           TEXT NOT NULL,
    sop_class_uid       TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    instance_number     INTEGER,
    size_bytes          INTEGER NOT NULL,
    sha256              TEXT NOT NULL,
    path                TEXT NOT NULL,
    received_at         REAL NOT NULL,
    calling_ae          TEXT NOT NULL DEFAULT '',
    upload_state        TEXT NOT NULL DEFAULT 'pending' CHECK (upload_state IN ('pending', 'confirmed', 'failed')),
    upload_attempts     INTEGER NOT NULL DEFAULT 0,
    upload_error        TEXT,
    confirmed_at        REAL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_uid, upload_state);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_uid);
"""

_INSTANCE_COLUMNS: Final = (
    "sop_instance_uid, sop_class_uid, transfer_syntax_uid, study_uid, series_uid, size_bytes, sha256, path, "
    "received_at, instance_number, upload_state, upload_attempts, upload_error, confirmed_at"
)

_STUDY_SELECT: Final = """
SELECT s.study_uid, s.patient_id, s.patient_name, s.study_id, s.study_date, s.study_time, s.accession_number,
       s.study_description,
       (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM series
                                          WHERE study_uid = s.study_uid AND modality <> '' ORDER BY m)),
       (SELECT count(*) FROM series WHERE study_uid = s.study_uid),
       (SELECT count(*) FROM instances WHERE study_uid = s.study_uid),
       s.first_received_at, s.last_received_at, s.manifested_at
  FROM studies s
"""

_SERIES_SELECT: Final = """
SELECT r.series_uid, r.study_uid, r.modality, r.series_number, r.series_description,
       (SELECT count(*) FROM instances WHERE series_uid = r.series_uid)
  FROM series r
"""


def _instance(row: Sequence[Any]) -> StoredInstance:
    return StoredInstance(
        sop_instance_uid=row[0], sop_class_uid=row[1], transfer_syntax_uid=row[2], study_instance_uid=row[3],
        series_instance_uid=row[4], size_bytes=row[5], sha256=row[6], path=row[7], received_at=row[8],
        instance_number=row[9], upload_state=UploadState(row[10]), upload_attempts=row[11], upload_error=row[12],
        confirmed_at=row[13],
    )


def _study(row: Sequence[Any]) -> StudyRecord:
    return StudyRecord(
        study_instance_uid=row[0], patient_id=row[1], patient_name=row[2], study_id=row[3], study_date=row[4],
        study_time=row[5], accession_number=row[6], study_description=row[7],
        modalities=tuple(row[8].split("\\")) if row[8] else (), series_count=row[9], instance_count=row[10],
        first_received_at=row[11], last_received_at=row[12], manifested_at=row[13],
    )


def _series(row: Sequence[Any]) -> SeriesRecord:
    return SeriesRecord(series_instance_uid=row[0], study_instance_uid=row[1], modality=row[2],
                        series_number=row[3], series_description=row[4], instance_count=row[5])


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


class DicomIndex:
    """The index database at `path` (created if missing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreIOError(f"{path}: index schema {version} is newer than this software ({SCHEMA_VERSION})")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreIOError(f"cannot open the DICOM index {path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreIOError(f"DICOM index: {exc}") from exc

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreIOError(f"DICOM index: {exc}") from exc

    # --- instances ------------------------------------------------------------------------------------------

    def add_instance(self, header: InstanceHeader, *, size_bytes: int, sha256: str, path: str, received_at: float,
                     calling_ae: str = "") -> tuple[PutOutcome, StoredInstance]:
        """Record a stored instance; an instance already indexed under its UID is kept (duplicate/conflict)."""
        with self._transaction() as db:
            row = db.execute(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE sop_instance_uid = ?",
                             (header.sop_instance_uid,)).fetchone()
            if row is not None:
                existing = _instance(row)
                outcome = PutOutcome.DUPLICATE if existing.sha256 == sha256 else PutOutcome.CONFLICT
                return outcome, existing
            db.execute(
                """INSERT INTO studies (study_uid, patient_id, patient_name, study_id, study_date, study_time,
                                        accession_number, study_description, first_received_at, last_received_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (study_uid) DO UPDATE SET
                       last_received_at = max(last_received_at, excluded.last_received_at),
                       patient_id = CASE WHEN patient_id = '' THEN excluded.patient_id ELSE patient_id END,
                       patient_name = CASE WHEN patient_name = '' THEN excluded.patient_name ELSE patient_name END,
                       study_id = CASE WHEN study_id = '' THEN excluded.study_id ELSE study_id END,
                       study_date = CASE WHEN study_date = '' THEN excluded.study_date ELSE study_date END,
                       study_time = CASE WHEN study_time = '' THEN excluded.study_time ELSE study_time END,
                       accession_number = CASE WHEN accession_number = '' THEN excluded.accession_number
                                               ELSE accession_number END,
                       study_description = CASE WHEN study_description = '' THEN excluded.study_description
                                                ELSE study_description END""",
                (header.study_instance_uid, header.patient_id, header.patient_name, header.study_id,
                 header.study_date, header.study_time,
                 header.accession_number, header.study_description, received_at, received_at),
            )
            db.execute(
                """INSERT INTO series (series_uid, study_uid, modality, series_number, series_description)
                   VALUES (?, ?, ?, ?, ?) ON CONFLICT (series_uid) DO NOTHING""",
                (header.series_instance_uid, header.study_instance_uid, header.modality, header.series_number,
                 header.series_description),
            )
            instance = StoredInstance(
                sop_instance_uid=header.sop_instance_uid, sop_class_uid=header.sop_class_uid,
                transfer_syntax_uid=header.transfer_syntax_uid, study_instance_uid=header.study_instance_uid,
                series_instance_uid=header.series_instance_uid, size_bytes=size_bytes, sha256=sha256, path=path,
                received_at=received_at, instance_number=header.instance_number,
            )
            db.execute(
                """INSERT INTO instances (sop_instance_uid, series_uid, study_uid, sop_class_uid, transfer_syntax_uid,
                                          instance_number, size_bytes, sha256, path, received_at, calling_ae)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (instance.sop_instance_uid, instance.series_instance_uid, instance.study_instance_uid,
                 instance.sop_class_uid, instance.transfer_syntax_uid, instance.instance_number, size_bytes, sha256,
                 path, received_at, calling_ae),
            )
            return PutOutcome.STORED, instance

    def instance(self, sop_instance_uid: str) -> StoredInstance | None:
        rows = self._query(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE sop_instance_uid = ?",
                           (sop_instance_uid,))
        return _instance(rows[0]) if rows else None

    def instances(self, study_uid: str, *, states: Iterable[UploadState] | None = None) -> list[StoredInstance]:
        """A study's instances in series and instance order, optionally only those in `states`."""
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE study_uid = ?"
        params: list[Any] = [study_uid]
        if states is not None:
            wanted = [str(s) for s in states]
            sql += f" AND upload_state IN ({_placeholders(len(wanted))})"
            params += wanted
        sql += " ORDER BY series_uid, instance_number, sop_instance_uid"
        return [_instance(r) for r in self._query(sql, params)]

    def all_paths(self) -> dict[str, str]:
        """{relative path: SOP Instance UID} of every indexed instance (for reconciliation)."""
        return {path: uid for uid, path in self._query("SELECT sop_instance_uid, path FROM instances")}

    def remove_instances(self, sop_instance_uids: Iterable[str]) -> int:
        """Forget instances (their files are gone); empty series and studies go with them."""
        uids = list(sop_instance_uids)
        if not uids:
            return 0
        with self._transaction() as db:
            removed = 0
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                removed += db.execute(f"DELETE FROM instances WHERE sop_instance_uid IN ({_placeholders(len(chunk))})",
                                      chunk).rowcount
            db.execute("DELETE FROM series WHERE series_uid NOT IN (SELECT series_uid FROM instances)")
            db.execute("DELETE FROM studies WHERE study_uid NOT IN (SELECT study_uid FROM series)")
            return removed

    def total_bytes(self) -> int:
        return int(self._query("SELECT coalesce(sum(size_bytes), 0) FROM instances")[0][0])

    # --- studies and series (C-FIND) ----------------------------------------------------------------------

    def study(self, study_uid: str) -> StudyRecord | None:
        rows = self._query(_STUDY_SELECT + " WHERE s.study_uid = ?", (study_uid,))
        return _study(rows[0]) if rows else None

    def studies(self, study_uids: Sequence[str] | None = None) -> list[StudyRecord]:
        """Every study, or those with the given UIDs, oldest first."""
        if study_uids is None:
            return [_study(r) for r in self._query(_STUDY_SELECT + " ORDER BY s.first_received_at")]
        if not study_uids:
            return []
        sql = _STUDY_SELECT + f" WHERE s.study_uid IN ({_placeholders(len(study_uids))}) ORDER BY s.first_received_at"
        return [_study(r) for r in self._query(sql, list(study_uids))]

    def series(self, study_uids: Sequence[str] | None = None) -> list[SeriesRecord]:
        """Every series, or the series of the given studies, in series-number order."""
        order = " ORDER BY r.study_uid, r.series_number, r.series_uid"
        if study_uids is None:
            return [_series(r) for r in self._query(_SERIES_SELECT + order)]
        if not study_uids:
            return []
        sql = _SERIES_SELECT + f" WHERE r.study_uid IN ({_placeholders(len(study_uids))})" + order
        return [_series(r) for r in self._query(sql, list(study_uids))]

    # --- completion -------------------------------------------------------------------------------------------

    def unmanifested(self) -> list[tuple[str, float]]:
        """(study UID, last received at) of studies with instances no manifest has covered yet."""
        rows = self._query("""SELECT study_uid, last_received_at FROM studies
                              WHERE manifested_through IS NULL OR manifested_through < last_received_at
                              ORDER BY last_received_at""")
        return [(str(uid), float(last)) for uid, last in rows]

    def mark_manifested(self, study_uid: str, *, through: float, at: float) -> bool:
        """Record that a manifest covers the study as of `through`; False if an instance arrived since."""
        with self._transaction() as db:
            cursor = db.execute(
                """UPDATE studies SET manifested_through = ?, manifested_at = ?
                   WHERE study_uid = ? AND last_received_at = ?""", (through, at, study_uid, through))
            return cursor.rowcount == 1

    # --- forwarding -------------------------------------------------------------------------------------------

    def studies_to_forward(self) -> list[str]:
        """Manifested studies that still have instances not confirmed by the cloud (nor failed for good)."""
        rows = self._query("""SELECT DISTINCT s.study_uid FROM studies s JOIN instances i ON i.study_uid = s.study_uid
                              WHERE s.manifested_at IS NOT NULL AND i.upload_state = 'pending'
                              ORDER BY s.manifested_at""")
        return [str(r[0]) for r in rows]

    def mark_confirmed(self, sop_instance_uids: Iterable[str], *, at: float) -> int:
        uids = list(sop_instance_uids)
        if not uids:
            return 0
        with self._transaction() as db:
            return db.execute(
                f"""UPDATE instances SET upload_state = 'confirmed', confirmed_at = ?, upload_error = NULL
                    WHERE sop_instance_uid IN ({_placeholders(len(uids))}) AND upload_state <> 'confirmed'""",
                [at, *uids]).rowcount

    def mark_failed(self, errors: dict[str, str]) -> None:
        """Instances the cloud refused for good, with the reason."""
        if not errors:
            return
        with self._transaction() as db:
            db.executemany("UPDATE instances SET upload_state = 'failed', upload_error = ? WHERE sop_instance_uid = ?",
                           [(reason, uid) for uid, reason in errors.items()])

    def record_attempt(self, sop_instance_uids: Iterable[str], *, error: str | None) -> None:
        """Count an upload attempt (and its error, if it failed in a way worth retrying)."""
        uids = list(sop_instance_uids)
        if not uids:
            return
        with self._transaction() as db:
            db.execute(
                f"""UPDATE instances SET upload_attempts = upload_attempts + 1, upload_error = ?
                    WHERE sop_instance_uid IN ({_placeholders(len(uids))})""", [error, *uids])

    def reset_failed(self, study_uid: str) -> int:
        """Make a study's failed instances pending again (an operator's retry)."""
        with self._transaction() as db:
            return db.execute("UPDATE instances SET upload_state = 'pending' WHERE study_uid = ? AND "
                              "upload_state = 'failed'", (study_uid,)).rowcount

    # --- retention --------------------------------------------------------------------------------------------

    _RETIRED: Final = """SELECT s.study_uid FROM studies s JOIN instances i ON i.study_uid = s.study_uid
                          WHERE s.manifested_through = s.last_received_at {extra}
                          GROUP BY s.study_uid
                          HAVING sum(i.upload_state <> 'confirmed') = 0 AND max(i.confirmed_at) < ?"""

    def studies_confirmed_before(self, cutoff: float) -> list[str]:
        """Studies told to the cloud whose every instance it confirmed, the last one before `cutoff`."""
        return [str(r[0]) for r in self._query(self._RETIRED.format(extra=""), (cutoff,))]

    def retire_study(self, study_uid: str, *, cutoff: float) -> list[str] | None:
        """Forget a study if it still qualifies for `studies_confirmed_before(cutoff)`: its files' paths, else None.

        The check and the delete share a transaction, so an instance arriving meanwhile keeps the study.
        """
        with self._transaction() as db:
            sql = self._RETIRED.format(extra="AND s.study_uid = ?")
            if db.execute(sql, (study_uid, cutoff)).fetchone() is None:
                return None
            paths = [str(r[0]) for r in db.execute("SELECT path FROM instances WHERE study_uid = ?", (study_uid,))]
            db.execute("DELETE FROM instances WHERE study_uid = ?", (study_uid,))
            db.execute("DELETE FROM series WHERE study_uid = ?", (study_uid,))
            db.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
            return paths
