"""The device registry: which wearable (BLE address) is which device id, of which type, worn by which patient.

Persisted in SQLite (WAL) next to the outbox, so assignments survive restarts. Set from the cloud with the
`assign_device` / `unassign_device` commands, locally with `telemed-edge devices ...`, or seeded from the
simulated ward. The collector supervises every device that is assigned to a patient; listeners are told of
changes made in this process, and `refresh()` notices changes made by another process (the CLI).

Device ids are the pseudonymous ids on the wire (proto.messages.OPAQUE_ID); by default a device's id is its
normalised address, which is already such a token ("C4:7A:..."), so the cloud may address devices either way.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

from devices.ble.models import normalize_address
from devices.ble.uuids import normalize_uuid
from edge.collector.profiles import PROFILES, default_subscriptions
from proto.messages import OPAQUE_ID
from proto.vitals import from_micros, to_micros

log = logging.getLogger(__name__)

Source = Literal["cloud", "local", "simulation"]
SCHEMA_VERSION: Final = 1
# Public device addresses and random static ones look alike (Core v5.4, Vol 6, Part B, 1.3); macOS hands out
# per-host UUIDs instead of addresses (CoreBluetooth), which we accept too.
_MAC: Final = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
_UUID: Final = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS devices (
    device_id     TEXT PRIMARY KEY,
    address       TEXT NOT NULL UNIQUE,
    device_type   TEXT NOT NULL,
    patient_id    TEXT,
    name          TEXT,
    subscriptions TEXT NOT NULL DEFAULT '',
    simulated     INTEGER NOT NULL DEFAULT 0,
    source        TEXT NOT NULL,
    assigned_us   INTEGER,
    updated_us    INTEGER NOT NULL
);
"""
_COLUMNS: Final = ("device_id, address, device_type, patient_id, name, subscriptions, simulated, source, "
                   "assigned_us, updated_us")


class RegistryError(Exception):
    """A registry operation that cannot be done (bad id or address, unknown device, storage failure)."""


class UnknownDeviceError(RegistryError, KeyError):
    """No device with that id or address is registered (and there is not enough to register it)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidDeviceError(RegistryError, ValueError):
    """An address, id, device type or patient id that is not acceptable."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """One registered device. `subscriptions` empty means the device type's defaults (edge.collector.profiles)."""

    device_id: str
    address: str
    device_type: str
    patient_id: str | None = None
    name: str | None = None
    subscriptions: tuple[str, ...] = ()
    simulated: bool = False
    source: Source = "local"
    assigned_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def characteristics(self) -> tuple[str, ...]:
        """The characteristics the collector enables on this device."""
        return self.subscriptions or default_subscriptions(self.device_type)


def check_address(address: str) -> str:
    """The normalised address, or InvalidDeviceError."""
    normalised = normalize_address(address)
    if not (_MAC.match(normalised) or _UUID.match(normalised)):
        raise InvalidDeviceError(f"not a Bluetooth device address: {address!r}")
    return normalised


def looks_like_address(text: str) -> bool:
    """Whether `text` is a device address (as cloud commands may name devices by address)."""
    normalised = normalize_address(text)
    return bool(_MAC.match(normalised) or _UUID.match(normalised))


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not OPAQUE_ID.match(value):
        raise InvalidDeviceError(f"not a valid pseudonymous {what}: {value!r}")
    return value


def _check_type(device_type: str, subscriptions: tuple[str, ...]) -> None:
    if device_type not in PROFILES and not subscriptions:
        known = ", ".join(sorted(PROFILES))
        raise InvalidDeviceError(f"unknown device type {device_type!r} (known: {known}; or list its characteristics)")
    if not re.match(r"^[a-z0-9_]{1,32}$", device_type):
        raise InvalidDeviceError(f"invalid device type {device_type!r}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class DeviceRegistry:
    """Thread-safe persisted registry (one SQLite connection guarded by a lock)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Assignments are few and matter (a wrong patient is worse than a slow write): fsync each commit.
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise RegistryError(f"device registry {self.path} has schema {version}, this edge knows "
                                    f"{SCHEMA_VERSION}")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._data_version = self._version()
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the device registry {self.path}: {exc}") from exc

    # --- reads ------------------------------------------------------------------------------------------

    def get(self, device_id: str) -> DeviceRecord | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM devices WHERE device_id = ?", (device_id,))
        return _record(rows[0]) if rows else None

    def by_address(self, address: str) -> DeviceRecord | None:
        rows = self._query(f"SELECT {_COLUMNS} FROM devices WHERE address = ?", (normalize_address(address),))
        return _record(rows[0]) if rows else None

    def find(self, key: str) -> DeviceRecord | None:
        """The device whose id, or else whose address, is `key`."""
        return self.get(key) or self.by_address(key)

    def records(self) -> list[DeviceRecord]:
        return [_record(r) for r in self._query(f"SELECT {_COLUMNS} FROM devices ORDER BY device_id")]

    def assigned(self) -> list[DeviceRecord]:
        """Devices worn by a patient: the ones the collector supervises."""
        return [_record(r) for r in self._query(
            f"SELECT {_COLUMNS} FROM devices WHERE patient_id IS NOT NULL ORDER BY device_id")]

    # --- writes -----------------------------------------------------------------------------------------

    def register(
        self, address: str, device_type: str, *, device_id: str | None = None, patient_id: str | None = None,
        name: str | None = None, subscriptions: Iterable[str | int] = (), simulated: bool = False,
        source: Source = "local", now: dt.datetime | None = None,
    ) -> DeviceRecord:
        """Add a device, or update the one at `address` (type, name, characteristics, and patient if given)."""
        now = now or _now()
        address = check_address(address)
        subs = tuple(normalize_uuid(s) for s in subscriptions)
        _check_type(device_type, subs)
        if patient_id is not None:
            _check_id(patient_id, "patient id")
        with self._write() as db:
            existing = _fetch(db, "address", address)
            if existing is not None and device_id is not None and device_id != existing.device_id:
                raise InvalidDeviceError(f"{address} is registered as {existing.device_id!r}, not {device_id!r}")
            if existing is None:
                record = DeviceRecord(
                    device_id=_check_id(device_id or address, "device id"), address=address,
                    device_type=device_type, patient_id=patient_id, name=name, subscriptions=subs,
                    simulated=simulated, source=source, assigned_at=now if patient_id else None, updated_at=now)
                if _fetch(db, "device_id", record.device_id) is not None:
                    raise InvalidDeviceError(f"device id {record.device_id!r} is taken by another address")
            else:
                changed_patient = patient_id is not None and patient_id != existing.patient_id
                record = replace(existing, device_type=device_type, name=name or existing.name, subscriptions=subs,
                                 simulated=simulated, source=source, updated_at=now,
                                 patient_id=patient_id if patient_id is not None else existing.patient_id,
                                 assigned_at=now if changed_patient else existing.assigned_at)
            _store(db, record)
        log.info("registry.registered", extra=_fields(record))
        self._changed()
        return record

    def seed(self, records: Iterable[DeviceRecord]) -> int:
        """Add devices not yet known (by address), leaving known ones and their assignments alone."""
        added = 0
        with self._write() as db:
            for record in records:
                address = check_address(record.address)
                _check_type(record.device_type, record.subscriptions)
                if _fetch(db, "address", address) is not None:
                    continue
                _check_id(record.device_id, "device id")
                if record.patient_id is not None:
                    _check_id(record.patient_id, "patient id")
                now = record.updated_at or _now()
                _store(db, replace(record, address=address, updated_at=now,
                                   assigned_at=record.assigned_at or (now if record.patient_id else None)))
                added += 1
        if added:
            log.info("registry.seeded", extra={"devices": added})
            self._changed()
        return added

    def assign(
        self, device: str, patient_id: str, *, address: str | None = None, device_type: str | None = None,
        source: Source = "cloud", now: dt.datetime | None = None,
    ) -> DeviceRecord:
        """Put `device` (an id or address) on a patient; an unknown device is registered when its address
        (given, or `device` itself) and type are known, else UnknownDeviceError."""
        now = now or _now()
        _check_id(patient_id, "patient id")
        with self._write() as db:
            record = _fetch(db, "device_id", device) or _fetch(db, "address", normalize_address(device))
            if record is None:
                where = address if address is not None else (device if looks_like_address(device) else None)
                if where is None or device_type is None:
                    raise UnknownDeviceError(f"device {device!r} is not registered: give its address and device type")
                subs: tuple[str, ...] = ()
                _check_type(device_type, subs)
                record = DeviceRecord(device_id=_check_id(device, "device id"), address=check_address(where),
                                      device_type=device_type, source=source)
                if _fetch(db, "address", record.address) is not None:
                    raise InvalidDeviceError(f"{record.address} is registered under another device id")
            elif device_type is not None and device_type != record.device_type:
                raise InvalidDeviceError(f"{record.device_id} is a {record.device_type}, not a {device_type}")
            previous = record.patient_id
            record = replace(record, patient_id=patient_id, source=source, updated_at=now,
                             assigned_at=now if previous != patient_id else record.assigned_at)
            _store(db, record)
        log.info("registry.assigned", extra=_fields(record) | {"previous_patient": previous})
        self._changed()
        return record

    def unassign(self, device: str, *, now: dt.datetime | None = None) -> DeviceRecord:
        """Take `device` (an id or address) off its patient; the collector lets it go."""
        now = now or _now()
        with self._write() as db:
            record = _fetch(db, "device_id", device) or _fetch(db, "address", normalize_address(device))
            if record is None:
                raise UnknownDeviceError(f"device {device!r} is not registered")
            previous = record.patient_id
            record = replace(record, patient_id=None, assigned_at=None, updated_at=now)
            _store(db, record)
        log.info("registry.unassigned", extra=_fields(record) | {"previous_patient": previous})
        self._changed()
        return record

    def remove(self, device: str) -> bool:
        """Forget a device entirely; False if it was not registered."""
        with self._write() as db:
            record = _fetch(db, "device_id", device) or _fetch(db, "address", normalize_address(device))
            if record is None:
                return False
            db.execute("DELETE FROM devices WHERE device_id = ?", (record.device_id,))
        log.info("registry.removed", extra={"device_id": record.device_id})
        self._changed()
        return True

    # --- change notification ------------------------------------------------------------------------

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` (on the writing thread) after every change made through this object."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def refresh(self) -> bool:
        """Whether another process changed the registry since the last look (SQLite's data_version)."""
        with self._lock:
            try:
                version = self._version()
            except sqlite3.Error as exc:
                raise RegistryError(f"device registry read failed: {exc}") from exc
            changed, self._data_version = version != self._data_version, version
        return changed

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- internals ------------------------------------------------------------------------------------

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params).fetchall())
            except sqlite3.Error as exc:
                raise RegistryError(f"device registry read failed: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise RegistryError(f"device registry write failed: {exc}") from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise RegistryError(f"device registry write failed: {exc}") from exc
                raise
            self._data_version = self._version()

    def _changed(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:
                log.exception("registry.listener_failed")


def _fetch(db: sqlite3.Connection, column: Literal["device_id", "address"], value: str) -> DeviceRecord | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM devices WHERE {column} = ?", (value,)).fetchone()
    return _record(row) if row else None


def _store(db: sqlite3.Connection, r: DeviceRecord) -> None:
    updated = r.updated_at or _now()
    db.execute(
        f"INSERT OR REPLACE INTO devices ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (r.device_id, r.address, r.device_type, r.patient_id, r.name, ",".join(r.subscriptions), int(r.simulated),
         r.source, None if r.assigned_at is None else to_micros(r.assigned_at), to_micros(updated)),
    )


def _record(row: tuple[Any, ...]) -> DeviceRecord:
    device_id, address, device_type, patient_id, name, subs, simulated, source, assigned, updated = row
    origin: Source = "cloud" if source == "cloud" else "simulation" if source == "simulation" else "local"
    return DeviceRecord(
        device_id=device_id, address=address, device_type=device_type, patient_id=patient_id, name=name,
        subscriptions=tuple(s for s in subs.split(",") if s), simulated=bool(simulated), source=origin,
        assigned_at=None if assigned is None else from_micros(assigned), updated_at=from_micros(updated),
    )


def _fields(record: DeviceRecord) -> dict[str, object]:
    return {"device_id": record.device_id, "address": record.address, "device_type": record.device_type,
            "patient_id": record.patient_id, "source": record.source}
