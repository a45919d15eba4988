"""What the DICOMweb read routes know about stored instances: scoped index rows and cached headers.

Instances are the `dicom_instances` rows written by the STOW-RS receiver; each belongs to the site of its
patient (`patients.site_id`), or, while the patient is unknown to the cloud, to the site of the edge that
uploaded it. Every read is restricted to the caller's scope in SQL (its sites, and for experts the patients
of their consultations), so an instance out of scope is simply not found. Headers (everything but the pixel
data) are parsed once per instance and kept in a bounded LRU cache: instances are immutable (the receiver
refuses other content under a known UID), and the cache entry is keyed by UID and SHA-256 all the same.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from psycopg.rows import class_row
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from starlette.concurrency import run_in_threadpool

from cloud.api.auth.models import User
from cloud.api.auth.permissions import READ_VITALS
from cloud.api.auth.scoping import SiteScope, scope_predicate
from cloud.api.auth.store import Conn
from cloud.api.deps import require_roles
from cloud.api.errors import ApiError
from cloud.dicomweb.store import ObjectKey, ObjectNotFoundError, ObjectStore, ObjectStoreError

HEADER_CACHE_SIZE: Final = 20_000  # parsed headers (a CT header is a few kB of Python objects)

# Images are clinical data: the roles that read vitals read images, within their site scope.
DicomReader = Annotated[User, Depends(require_roles(*READ_VITALS))]

_SITE: Final = "coalesce(p.site_id, e.site_id)"
_FROM: Final = (
    " FROM dicom_instances i LEFT JOIN patients p ON p.patient_id = i.patient_id"
    " LEFT JOIN edges e ON e.edge_id = i.edge_id WHERE " + scope_predicate(_SITE, patient_column="i.patient_id")
)


class DicomStoreUnavailableError(ApiError):
    """The DICOM object store is not configured in this process, or cannot be read."""

    status_code = 503


class BadRequestError(ApiError):
    """A malformed DICOMweb request (PS3.18 answers 400, not the JSON API's 422)."""

    status_code = 400


class InstanceUnreadableError(ApiError):
    """A stored object is missing or is not a DICOM file (the index and the store disagree)."""

    status_code = 500


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One stored instance in the caller's scope."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    sha256: str
    patient_id: str | None
    site_id: str | None

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.study_instance_uid, self.series_instance_uid, self.sop_instance_uid)


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """One series in the caller's scope: its instance count and one instance to read series and study
    attributes from (`representative`, with its SHA-256)."""

    study_instance_uid: str
    series_instance_uid: str
    patient_id: str | None
    site_id: str | None
    instances: int
    representative: str

    @property
    def key(self) -> ObjectKey:
        uid, _, _ = self.representative.partition("|")
        return ObjectKey(self.study_instance_uid, self.series_instance_uid, uid)

    @property
    def sha256(self) -> str:
        return self.representative.partition("|")[2]


def _filters(study_uids: Sequence[str] | None, series_uids: Sequence[str] | None,
             sop_uids: Sequence[str] | None, patient_ids: Sequence[str] | None) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for column, name, values in (("i.study_instance_uid", "studies", study_uids),
                                 ("i.series_instance_uid", "series", series_uids),
                                 ("i.sop_instance_uid", "sops", sop_uids),
                                 ("i.patient_id", "patients", patient_ids)):
        if values is not None:
            clauses.append(f" AND {column} = ANY(%({name})s::text[])")
            params[name] = list(values)
    return "".join(clauses), params


async def visible_series(conn: Conn, scope: SiteScope, *, study_uids: Sequence[str] | None = None,
                         series_uids: Sequence[str] | None = None,
                         patient_ids: Sequence[str] | None = None) -> list[SeriesRow]:
    """The series in `scope` (optionally restricted), by study and series UID."""
    where, params = _filters(study_uids, series_uids, None, patient_ids)
    cur = conn.cursor(row_factory=class_row(SeriesRow))
    await cur.execute(
        "SELECT i.study_instance_uid, i.series_instance_uid, min(i.patient_id) AS patient_id,"
        f" min({_SITE}) AS site_id, count(*)::int AS instances,"
        " min(i.sop_instance_uid || '|' || i.sha256) AS representative"
        + _FROM + where + " GROUP BY 1, 2 ORDER BY 1, 2",
        {**scope.sql_params(), **params},
    )
    return await cur.fetchall()


async def visible_instances(conn: Conn, scope: SiteScope, *, study_uid: str, series_uid: str | None = None,
                            sop_uids: Sequence[str] | None = None) -> list[InstanceRow]:
    """The instances of a study (or one of its series, or some instances) in `scope`."""
    where, params = _filters([study_uid], [series_uid] if series_uid is not None else None, sop_uids, None)
    cur = conn.cursor(row_factory=class_row(InstanceRow))
    await cur.execute(
        "SELECT i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid, i.sop_class_uid,"
        f" i.transfer_syntax_uid, i.sha256, i.patient_id, {_SITE} AS site_id"
        + _FROM + where + " ORDER BY i.series_instance_uid, i.sop_instance_uid",
        {**scope.sql_params(), **params},
    )
    return await cur.fetchall()


# --- the object store and parsed headers --------------------------------------------------------------------


def object_store(request: Request) -> ObjectStore:
    """The store the STOW-RS receiver writes to (`cloud.dicomweb.stow.install` puts it on the app)."""
    state = getattr(request.app.state, "dicomweb", None)
    store: ObjectStore | None = getattr(state, "store", None)
    if store is None:
        raise DicomStoreUnavailableError("the DICOM object store is not configured")
    return store


Store = Annotated[ObjectStore, Depends(object_store)]


def read_object(store: ObjectStore, key: ObjectKey) -> bytes:
    """An instance's bytes (blocking: call from a worker thread)."""
    try:
        return store.get(key)
    except ObjectNotFoundError:
        raise InstanceUnreadableError("a stored instance is missing from the object store") from None
    except ObjectStoreError:
        raise DicomStoreUnavailableError("the DICOM object store cannot be read") from None


async def fetch_object(store: ObjectStore, key: ObjectKey) -> bytes:
    """`read_object` in a worker thread."""
    return await run_in_threadpool(read_object, store, key)


BULK_DATA_THRESHOLD: Final = 1024  # bytes: larger binary values are bulk data (PS3.18 8.7.3.3.2)


@dataclass(frozen=True, slots=True)
class Header:
    """An instance's attributes up to the pixel data: the dataset, and its DICOM JSON (PS3.18 F.2) where bulk
    data carries a BulkDataURI relative to the instance's URL (`bulkdata/<tag>`)."""

    dataset: Dataset
    attributes: dict[str, Any]


def _relative_bulk_uri(elem: DataElement) -> str:
    return f"bulkdata/{int(elem.tag):08X}"


def parse_header(data: bytes) -> Header:
    """The file's dataset up to (not including) the pixel data, with its file meta, and its DICOM JSON."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = dcmread(io.BytesIO(data), stop_before_pixels=True)
            attributes = dataset.to_json_dict(BULK_DATA_THRESHOLD, _relative_bulk_uri, suppress_invalid_tags=True)
    except (InvalidDicomError, ValueError, EOFError, OSError, TypeError) as exc:
        raise InstanceUnreadableError("a stored object is not a readable DICOM file") from exc
    return Header(dataset, attributes)


class HeaderCache:
    """Parsed headers by (SOP Instance UID, SHA-256), least recently used evicted first. Thread-safe."""

    def __init__(self, capacity: int = HEADER_CACHE_SIZE) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str], Header] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, uid: str, sha256: str) -> Header | None:
        with self._lock:
            found = self._entries.get((uid, sha256))
            if found is not None:
                self._entries.move_to_end((uid, sha256))
            return found

    def put(self, uid: str, sha256: str, header: Header) -> None:
        with self._lock:
            self._entries[(uid, sha256)] = header
            self._entries.move_to_end((uid, sha256))
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def load(self, store: ObjectStore, keys: Sequence[tuple[ObjectKey, str]]) -> list[Header]:
        """Headers of (key, sha256) pairs, reading and parsing the missing ones (blocking)."""
        out: list[Header] = []
        for key, sha256 in keys:
            header = self.get(key.sop_instance_uid, sha256)
            if header is None:
                header = parse_header(read_object(store, key))
                self.put(key.sop_instance_uid, sha256, header)
            out.append(header)
        return out


def header_cache(request: Request) -> HeaderCache:
    """The application's header cache (created on first use)."""
    cache: HeaderCache | None = getattr(request.app.state, "dicom_headers", None)
    if cache is None:
        cache = HeaderCache()
        request.app.state.dicom_headers = cache
    return cache


Headers = Annotated[HeaderCache, Depends(header_cache)]


async def load_headers(cache: HeaderCache, store: ObjectStore,
                       keys: Sequence[tuple[ObjectKey, str]]) -> list[Header]:
    """`HeaderCache.load` in a worker thread (no thread hop when every header is cached)."""
    if all(cache.get(key.sop_instance_uid, sha) is not None for key, sha in keys):
        return cache.load(store, keys)
    return await run_in_threadpool(cache.load, store, keys)
