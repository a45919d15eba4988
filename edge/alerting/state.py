"""Persistence of local alerting across restarts: the alarm engine's state, the rule overrides the cloud sent,
and the open incidents (with whether local staff were told), in one small SQLite file.

Everything is saved in one transaction, so a restart sees one consistent moment. The engine's state is JSON
(proto.alerting STATE_FORMAT); the alerts are their wire JSON (proto.schema).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from proto.messages import Alert
from proto.schema import ValidationError, from_wire, to_wire

SCHEMA_VERSION: Final = 1
_KEYS: Final = ("engine", "site_overrides", "patient_overrides", "active")


class AlertingStateError(Exception):
    """The alerting state file cannot be read or written."""


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An open incident as last reported, and whether local staff were told of it (so they hear it clear)."""

    alert: Alert
    notified_locally: bool = False


@dataclass(frozen=True, slots=True)
class SavedState:
    engine: dict[str, Any] | None = None
    site_overrides: dict[str, Any] = field(default_factory=dict)
    patient_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    active: tuple[OpenAlert, ...] = ()


class AlertingStore:
    """One row per key in table `state`; load() at start, save() periodically and at stop."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise AlertingStateError(f"{self.path} has schema {version}, this edge knows {SCHEMA_VERSION}")
            self._db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise AlertingStateError(f"cannot open {self.path}: {exc}") from exc

    def load(self) -> SavedState:
        """What was saved last (an empty state for a new file); AlertingStateError if it is unreadable."""
        with self._lock:
            try:
                rows = dict(self._db.execute("SELECT key, value FROM state").fetchall())
            except sqlite3.Error as exc:
                raise AlertingStateError(f"cannot read {self.path}: {exc}") from exc
        try:
            data = {key: json.loads(value) for key, value in rows.items() if key in _KEYS}
            active = tuple(OpenAlert(from_wire(Alert, item["alert"]), bool(item["notified_locally"]))
                           for item in data.get("active", []))
            return SavedState(engine=data.get("engine"), site_overrides=dict(data.get("site_overrides", {})),
                              patient_overrides=dict(data.get("patient_overrides", {})), active=active)
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            raise AlertingStateError(f"malformed alerting state in {self.path}: {exc}") from exc

    def save(self, state: SavedState) -> None:
        values = {
            "engine": state.engine,
            "site_overrides": state.site_overrides,
            "patient_overrides": state.patient_overrides,
            "active": [{"alert": to_wire(a.alert), "notified_locally": a.notified_locally} for a in state.active],
        }
        encoded = [(key, json.dumps(value, separators=(",", ":"))) for key, value in values.items()]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", encoded)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise AlertingStateError(f"cannot write {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
