"""The edge's DICOM network service (pynetdicom): Verification, Storage and Study Root C-FIND SCP.

Modalities at the county hospital send studies here with C-STORE. Every storage SOP class pynetdicom knows
is accepted in the common transfer syntaxes, as-is: the encoded dataset is written without being decoded.
Calling AE titles may be restricted to an allowlist (A-ASSOCIATE-RJ: rejected-permanent, service-user,
"calling AE title not recognised", PS3.8 section 9.3.4). Every failure is answered with a DIMSE status
(edge.dicom.status) rather than an exception, so the modality knows whether to retry. The associations run
in threads of the server's process, or in worker processes that hand every C-STORE back to it
(edge.dicom.workers); `Acceptor` is what they do either way.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from edge.dicom import fastrsp, find, status
from edge.dicom.errors import (
    MissingAttributeError,
    QueryError,
    SopClassMismatchError,
    StorageFullError,
    StoreError,
    UidMismatchError,
    UnreadableDatasetError,
)
from edge.dicom.index import DicomIndex
from edge.dicom.models import PutOutcome
from edge.dicom.part10 import encode_file_meta
from edge.dicom.store import InstanceStore
from edge.metrics import Counter, Registry

if TYPE_CHECKING:
    from edge.dicom.workers import WorkerPool

log = logging.getLogger(__name__)

# The transfer syntaxes accepted for storage, in our order of preference when an SCU proposes several in
# one presentation context (PS3.5 Annex A; PS3.6 Annex A for the UIDs). Compressed data is kept as sent.
TRANSFER_SYNTAXES: Final[tuple[str, ...]] = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian (the default every SCU must offer, PS3.5 10.1)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction (Process 14, SV1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Lossy (Near-Lossless)
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # High-Throughput JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.202",  # High-Throughput JPEG 2000 with RPCL Options Lossless Only
    "1.2.840.10008.1.2.4.203",  # High-Throughput JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level (ultrasound cine)
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main Profile / Level 5.1
)

STORAGE_SOP_CLASSES: Final[frozenset[str]] = frozenset(
    str(cx.abstract_syntax) for cx in AllStoragePresentationContexts
)

# Which status answers which store failure (PS3.4 B.2.3, PS3.7 C).
_STORE_STATUS: Final[dict[type[StoreError], int]] = {
    StorageFullError: status.OUT_OF_RESOURCES,
    UnreadableDatasetError: status.CANNOT_UNDERSTAND,
    MissingAttributeError: status.MISSING_ATTRIBUTE,
    UidMismatchError: status.UID_MISMATCH,
    SopClassMismatchError: status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
}


def status_for(error: StoreError) -> int:
    """The C-STORE status for a store failure; anything unforeseen is our fault (0xC001)."""
    for kind, code in _STORE_STATUS.items():
        if isinstance(error, kind):
            return code
    return status.INTERNAL_ERROR


@dataclass(frozen=True)
class ScpConfig:
    """How the SCP listens and whom it accepts."""

    ae_title: str = "TELEMED_EDGE"
    host: str = "127.0.0.1"
    port: int = 11112  # 0: any free port (tests)
    allowed_calling_aets: tuple[str, ...] = ()  # empty: any calling AE title
    max_associations: int = 16
    # Largest P-DATA PDU we accept. Larger PDUs mean fewer per-PDU round trips through pynetdicom's reactor;
    # 0 would remove the limit, which we do not want on a box with little memory.
    max_pdu_size: int = 262_144
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    network_timeout_s: float = 60.0
    tcp_nodelay: bool = True
    # pydicom checks every UID and value pynetdicom reads or writes against its VR, about a fifth of the CPU
    # spent per instance. The SCP validates the UIDs it relies on itself (edge.dicom.parse) and decodes no
    # dataset, so by default it turns those checks off while it runs (pydicom.config is process-wide).
    pydicom_validation: bool = False
    tls_certfile: Path | None = None  # TLS (PS3.15 B.1 secure transport) when set, with tls_keyfile
    tls_keyfile: Path | None = None
    tls_cafile: Path | None = None  # when set, modalities must present a certificate signed by this CA
    transfer_syntaxes: tuple[str, ...] = field(default=TRANSFER_SYNTAXES)
    # Processes running the associations (edge.dicom.workers): 0 runs them in this process (the default: on
    # a 2-core box that also runs the senders it was as fast, for less CPU per instance; docs/edge-dicom.md),
    # N in N worker processes, -1 in one per CPU core.
    workers: int = 0

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title) <= 16:
            raise ValueError("ae_title must be 1..16 characters (PS3.5 AE VR)")
        if any(not 1 <= len(t.strip()) <= 16 for t in self.allowed_calling_aets):
            raise ValueError("allowed calling AE titles must be 1..16 characters")
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("tls_certfile and tls_keyfile go together")
        if self.max_associations < 1:
            raise ValueError("max_associations must be at least 1")
        if self.workers < -1:
            raise ValueError("workers must be -1 (one per core), 0 (in process) or a count")

    @property
    def worker_count(self) -> int:
        """How many worker processes run the associations (0: they run in the server's own process)."""
        return self.workers if self.workers >= 0 else os.cpu_count() or 1


def server_tls_context(certfile: Path, keyfile: Path, cafile: Path | None = None) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2+); with `cafile`, client certificates are required and verified."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cafile) if cafile else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(certfile), keyfile=str(keyfile))
    context.verify_mode = ssl.CERT_REQUIRED if cafile else ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class StoreRequest:
    """One C-STORE request as the store needs it (picklable: worker processes send these to the server)."""

    dataset: bytes  # the encoded dataset as received, without file meta
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    context_abstract_syntax: str
    transfer_syntax_uid: str
    calling_ae: str


StoreFn = Callable[[StoreRequest], int]


class Acceptor:
    """What the SCP does on its associations (pynetdicom's event handlers), in whichever process runs them.

    `store` answers C-STORE requests (in-process: the InstanceStore; in a worker: a call to the server's
    process); `index` serves C-FIND; `on_association` counts association results.
    """

    def __init__(self, config: ScpConfig, *, store: StoreFn, index: DicomIndex,
                 on_association: Callable[[str], None]) -> None:
        self.config = config
        self._store = store
        self._index = index
        self._on_association = on_association

    def contexts(self) -> list[PresentationContext]:
        syntaxes = list(self.config.transfer_syntaxes)
        classes = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]
        contexts: list[PresentationContext] = [_SharedUidContext.of(uid, syntaxes) for uid in classes]
        contexts.append(_SharedUidContext.of(str(Verification), syntaxes[:2]))
        contexts.append(_SharedUidContext.of(str(StudyRootQueryRetrieveInformationModelFind), syntaxes[:2]))
        return contexts

    def application_entity(self, max_associations: int) -> AE:
        cfg = self.config
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = max_associations
        ae.maximum_pdu_size = cfg.max_pdu_size
        ae.acse_timeout = cfg.acse_timeout_s
        ae.dimse_timeout = cfg.dimse_timeout_s
        ae.network_timeout = cfg.network_timeout_s
        ae.require_calling_aet = list(cfg.allowed_calling_aets)
        return ae

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
        ]

    # --- association events ---------------------------------------------------------------------------------

    def _on_connection(self, event: Event) -> None:
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            _unbind_association_loggers(event.assoc)
        fastrsp.install(event.assoc)
        # pynetdicom leaves Nagle's algorithm on; with it every small PDU (C-STORE-RSP, the command set ahead
        # of a dataset) waits for the peer's delayed ACK, about halving the instances per second on loopback.
        if self.config.tcp_nodelay:
            sock = event.assoc.dul.socket
            raw = sock.socket if sock is not None else None
            if raw is not None:
                try:
                    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError as exc:
                    log.debug("dicom.scp.nodelay_failed error=%s", exc.strerror)

    def _on_accepted(self, event: Event) -> None:
        requestor = event.assoc.requestor
        self._on_association("accepted")
        log.info("dicom.scp.association_accepted calling_ae=%s peer=%s contexts=%d", requestor.ae_title,
                 requestor.address, len(event.assoc.accepted_contexts))

    def _on_rejected(self, event: Event) -> None:
        requestor = event.assoc.requestor
        self._on_association("rejected")
        log.warning("dicom.scp.association_rejected calling_ae=%s peer=%s", requestor.ae_title, requestor.address)

    def _on_aborted(self, event: Event) -> None:
        log.warning("dicom.scp.association_aborted calling_ae=%s", event.assoc.requestor.ae_title)

    # --- services ---------------------------------------------------------------------------------------------

    def _on_echo(self, event: Event) -> int:
        return status.SUCCESS

    def _on_store(self, event: Event) -> int:
        request = cast(C_STORE, event.request)
        return self._store(StoreRequest(
            dataset=event.encoded_dataset(include_meta=False),
            affected_sop_class_uid=str(request.AffectedSOPClassUID or ""),
            affected_sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
            context_abstract_syntax=str(event.context.abstract_syntax),
            transfer_syntax_uid=str(event.context.transfer_syntax),
            calling_ae=str(event.assoc.requestor.ae_title).strip(),
        ))

    def _on_find(self, event: Event) -> Iterator[tuple[int, Dataset | None]]:
        calling_ae = str(event.assoc.requestor.ae_title).strip()
        try:
            query = find.parse_query(event.identifier)
        except QueryError as exc:
            log.warning("dicom.scp.find_refused calling_ae=%s detail=%s", calling_ae, exc)
            yield status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, None
            return
        except Exception:
            log.exception("dicom.scp.find_unreadable calling_ae=%s", calling_ae)
            yield status.UNABLE_TO_PROCESS, None
            return
        matches = 0
        try:
            for identifier in find.search(self._index, query, retrieve_ae=self.config.ae_title):
                if event.is_cancelled:
                    yield status.MATCHING_CANCELLED, None
                    return
                matches += 1
                yield status.PENDING, identifier
        except StoreError:
            log.exception("dicom.scp.find_failed calling_ae=%s", calling_ae)
            yield status.UNABLE_TO_PROCESS, None
            return
        log.info("dicom.scp.find level=%s keys=%d matches=%d calling_ae=%s", query.level, len(query.keys), matches,
                 calling_ae)


class DicomServer:
    """The SCP over an InstanceStore; `start()` listens in the background, `stop()` ends it.

    With `config.worker_count` > 0 the associations run in that many worker processes (edge.dicom.workers)
    that hand every C-STORE to this process, which alone writes the store and its index; otherwise they
    run in threads of this process.
    """

    def __init__(self, store: InstanceStore, config: ScpConfig | None = None, *,
                 registry: Registry | None = None) -> None:
        self.store = store
        self.config = config or ScpConfig()
        self._server: ThreadedAssociationServer | None = None
        self._pool: WorkerPool | None = None  # when the associations run in worker processes
        self._relaxed = False
        self._stores = registry.counter("telemed_dicom_store_requests_total", "C-STORE requests answered",
                                        ("status",)) if registry else None
        self._bytes = registry.counter("telemed_dicom_stored_bytes_total",
                                       "Bytes of new instances stored") if registry else None
        self._associations = registry.counter("telemed_dicom_associations_total", "Association requests",
                                              ("result",)) if registry else None
        if registry is not None:
            used = registry.gauge("telemed_dicom_store_used_bytes", "Bytes of instances held by the edge")
            registry.add_collector(lambda: used.set(self.store.used_bytes))

    # --- what every association ends in, whichever process runs it -----------------------------------------------

    def answer(self, request: StoreRequest) -> int:
        """Store one C-STORE request's dataset and return (and count) the status to answer with."""
        code = store_instance(
            self.store, dataset=request.dataset, affected_sop_class_uid=request.affected_sop_class_uid,
            affected_sop_instance_uid=request.affected_sop_instance_uid,
            context_abstract_syntax=request.context_abstract_syntax,
            transfer_syntax_uid=request.transfer_syntax_uid, calling_ae=request.calling_ae,
            stored_bytes=self._bytes)
        if self._stores is not None:
            self._stores.inc(status=status.status_name(code))
        return code

    def count_association(self, result: str) -> None:
        if self._associations is not None:
            self._associations.inc(result=result)

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (non-blocking); raises OSError if the address is taken."""
        cfg = self.config
        if cfg.worker_count > 0:
            from edge.dicom.workers import WorkerPool  # the pool imports this module

            pool = WorkerPool(self, cfg.worker_count)
            pool.start()
            self._pool = pool
            return
        context = server_tls_context(cfg.tls_certfile, cfg.tls_keyfile, cfg.tls_cafile) \
            if cfg.tls_certfile and cfg.tls_keyfile else None
        if not cfg.pydicom_validation:
            _VALIDATION.relax()
            self._relaxed = True
        acceptor = Acceptor(cfg, store=self.answer, index=self.store.index, on_association=self.count_association)
        try:
            server = acceptor.application_entity(cfg.max_associations).start_server(
                (cfg.host, cfg.port), block=False, ssl_context=context, evt_handlers=acceptor.handlers(),
                contexts=acceptor.contexts())
        except BaseException:
            if self._relaxed:
                _VALIDATION.restore()
                self._relaxed = False
            raise
        self._server = cast(ThreadedAssociationServer, server)
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            _unbind_pdu_loggers(self._server)
        host, port = self.address
        log.info("dicom.scp.listening ae_title=%s host=%s port=%d tls=%s allowlist=%d workers=0", cfg.ae_title,
                 host, port, context is not None, len(cfg.allowed_calling_aets))

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually listened on."""
        if self._pool is not None:
            return self._pool.address
        if self._server is None:
            raise RuntimeError("the SCP is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        """Stop listening and end the associations in progress."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            log.info("dicom.scp.stopped")
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            log.info("dicom.scp.stopped")
        if self._relaxed:
            _VALIDATION.restore()
            self._relaxed = False

    def __enter__(self) -> DicomServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def store_instance(store: InstanceStore, *, dataset: bytes, affected_sop_class_uid: str,
                   affected_sop_instance_uid: str, context_abstract_syntax: str, transfer_syntax_uid: str,
                   calling_ae: str, stored_bytes: Counter | None = None) -> int:
    """Store one C-STORE request's dataset (as received) and return the status to answer with."""
    if affected_sop_class_uid not in STORAGE_SOP_CLASSES or affected_sop_class_uid != context_abstract_syntax:
        log.warning("dicom.scp.store_refused reason=sop_class_not_supported sop_class=%s calling_ae=%s",
                    affected_sop_class_uid, calling_ae)
        return status.SOP_CLASS_NOT_SUPPORTED
    try:
        encoded = encode_file_meta(sop_class_uid=affected_sop_class_uid, sop_instance_uid=affected_sop_instance_uid,
                                   transfer_syntax_uid=transfer_syntax_uid) + dataset
        result = store.put(encoded, calling_ae=calling_ae, expected_sop_instance_uid=affected_sop_instance_uid,
                           expected_sop_class_uid=affected_sop_class_uid)
    except StoreError as exc:
        code = status_for(exc)
        log.warning("dicom.scp.store_failed status=0x%04X reason=%s calling_ae=%s sop_instance_uid=%s detail=%s",
                    code, status.status_name(code), calling_ae, affected_sop_instance_uid, exc)
        return code
    except Exception:
        log.exception("dicom.scp.store_error calling_ae=%s sop_instance_uid=%s", calling_ae,
                      affected_sop_instance_uid)
        return status.INTERNAL_ERROR
    if result.outcome is PutOutcome.STORED and stored_bytes is not None:
        stored_bytes.inc(result.instance.size_bytes)
    log.debug("dicom.scp.stored outcome=%s calling_ae=%s sop_instance_uid=%s", result.outcome, calling_ae,
              result.instance.sop_instance_uid)
    return status.SUCCESS


class _ValidationSwitch:
    """Turns pydicom's value validation off while at least one server wants it off, then restores it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: tuple[int, int] | None = None

    def relax(self) -> None:
        with self._lock:
            if self._users == 0:
                settings = pydicom_config.settings
                self._saved = (settings.reading_validation_mode, settings.writing_validation_mode)
                settings.reading_validation_mode = pydicom_config.IGNORE
                settings.writing_validation_mode = pydicom_config.IGNORE
            self._users += 1

    def restore(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._saved is not None:
                pydicom_config.settings.reading_validation_mode, pydicom_config.settings.writing_validation_mode = (
                    self._saved)
                self._saved = None


_VALIDATION = _ValidationSwitch()


class _SharedUidContext(PresentationContext):
    """A supported presentation context whose copies share its (immutable) UIDs.

    pynetdicom deep-copies the server's supported contexts for every association; with every storage SOP
    class times our transfer syntaxes that re-validated thousands of UIDs and cost about 100 ms of CPU per
    association, which a modality opening one association per image pays for every image.
    """

    @classmethod
    def of(cls, abstract_syntax: str, transfer_syntaxes: list[str]) -> _SharedUidContext:
        context = cls()
        context.abstract_syntax = abstract_syntax
        context.transfer_syntax = list(transfer_syntaxes)
        return context

    def __deepcopy__(self, memo: dict[int, object]) -> _SharedUidContext:
        clone = copy.copy(self)
        for name, value in vars(clone).items():
            if isinstance(value, list):  # the lists are per copy; the UIDs in them are immutable str
                vars(clone)[name] = list(value)
        return clone


_STANDARD_LOGGERS: Final = (evt.EVT_PDU_RECV, evt.EVT_PDU_SENT, evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT)


def _is_standard_logger(handler: object) -> bool:
    return getattr(handler, "__module__", "") == "pynetdicom._handlers"


def _unbind_association_loggers(assoc: Any) -> None:
    """Drop the standard log handlers each Association binds to itself (as `_unbind_pdu_loggers` does for
    the server's), which pynetdicom's LOG_HANDLER_LEVEL "standard" binds to every association."""
    for event in _STANDARD_LOGGERS:
        for handler in [h for h in cast(list[Any], assoc.get_handlers(event)) if _is_standard_logger(h[0])]:
            assoc.unbind(event, handler[0])


def _unbind_pdu_loggers(server: ThreadedAssociationServer) -> None:
    """Drop pynetdicom's default per-PDU/per-message log handlers: they format text for every PDU even when
    nothing is logged, which costs measurable CPU per instance."""
    for event in _STANDARD_LOGGERS:
        for handler, _args in list(cast(list[tuple[Any, Any]], server.get_handlers(event))):
            if _is_standard_logger(handler):
                server.unbind(event, handler)
