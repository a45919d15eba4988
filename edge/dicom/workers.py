"""The SCP's associations in worker processes, so pynetdicom's per-instance CPU is spread over the cores.

pynetdicom spends a few ms of pure-Python CPU per C-STORE (two polling threads per association, every
DIMSE command through pydicom), and one interpreter runs that on one core at a time. The server's process
(`WorkerPool`, inside DicomServer) listens, accepts each connection and passes its file descriptor
(SCM_RIGHTS) to the worker with the fewest open associations. A worker (`_worker_main`, a spawned process)
runs the associations with the same Acceptor as the in-process server, and sends every C-STORE back to the
server's process, which stores it (InstanceStore: files, budget, index, listeners, metrics stay in one
process, exactly as without workers) and returns the status the worker answers with. So an instance is
acknowledged only once the server's process has it on disk, as before. Workers serve C-FIND from their
own read connection to the SQLite index (WAL: readers in other processes see every committed row).

Workers forward their log records and association counts to the server's process. A worker that dies is
replaced; its open associations are lost (the modality sees the connection drop and resends).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, Protocol

from edge.dicom import status
from edge.dicom.scp import server_tls_context

log = logging.getLogger(__name__)

_READY_TIMEOUT_S: Final = 60.0
_ACCEPT_POLL_S: Final = 0.25  # how often the accept loop looks at the stop flag
_STOP: Final = b"stop"


class _Owner(Protocol):
    """What the pool needs from DicomServer."""

    config: Any
    store: Any

    def answer(self, request: Any) -> int: ...

    def count_association(self, result: str) -> None: ...


@dataclass(eq=False)
class _Worker:
    """The server's handle on one worker process."""

    slot: int
    process: Any  # multiprocessing.context.SpawnProcess
    control: socket.socket  # SOCK_SEQPACKET: one message per passed connection
    data: Connection  # C-STORE requests in, statuses out; association events and log records in
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    ready: threading.Event = field(default_factory=threading.Event)
    active: int = 0
    alive: bool = True


class WorkerPool:
    """Listens for the DicomServer `owner` and runs its associations in `count` worker processes."""

    def __init__(self, owner: _Owner, count: int) -> None:
        if count < 1:
            raise ValueError("a pool needs at least one worker")
        self._owner = owner
        self._config = owner.config
        self._count = count
        self._context = multiprocessing.get_context("spawn")  # never fork the edge service's threads
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        # Each association has at most one C-STORE outstanding, so this many stores can be in progress.
        self._executor = ThreadPoolExecutor(max_workers=self._config.max_associations,
                                            thread_name_prefix="dicom-store")

    @property
    def address(self) -> tuple[str, int]:
        if self._listener is None:
            raise RuntimeError("the SCP is not running")
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Listen, start the workers and wait until each is ready; raises OSError if the address is taken."""
        cfg = self._config
        if cfg.tls_certfile and cfg.tls_keyfile:  # fail here, not in every worker, on unreadable TLS files
            server_tls_context(cfg.tls_certfile, cfg.tls_keyfile, cfg.tls_cafile)
        self._listener = socket.create_server((cfg.host, cfg.port), backlog=64)
        self._listener.settimeout(_ACCEPT_POLL_S)
        try:
            self._workers = [self._spawn(slot) for slot in range(self._count)]
            for worker in self._workers:
                self._wait_ready(worker)
        except BaseException:
            self.stop()
            raise
        self._acceptor = threading.Thread(target=self._accept_loop, name="dicom-accept", daemon=True)
        self._acceptor.start()
        host, port = self.address
        log.info("dicom.scp.listening ae_title=%s host=%s port=%d tls=%s allowlist=%d workers=%d", cfg.ae_title,
                 host, port, cfg.tls_certfile is not None, len(cfg.allowed_calling_aets), self._count)

    def stop(self) -> None:
        """Stop accepting, end the workers (and their associations) and the pending stores."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        if self._acceptor is not None:
            self._acceptor.join(10)
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.control.send(_STOP)
        for worker in self._workers:
            worker.process.join(10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)
            worker.control.close()
            worker.data.close()
        self._executor.shutdown(wait=True)
        self._workers = []

    # --- workers ----------------------------------------------------------------------------------------------

    @staticmethod
    def _wait_ready(worker: _Worker) -> None:
        for _ in range(int(_READY_TIMEOUT_S / 0.05)):
            if worker.ready.wait(0.05):
                return
            if not worker.process.is_alive():
                break
        raise RuntimeError(f"DICOM worker {worker.slot} did not start (exit code {worker.process.exitcode})")

    def _spawn(self, slot: int) -> _Worker:
        control, worker_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        data, worker_data = self._context.Pipe(duplex=True)
        per_worker = -(-self._config.max_associations // self._count)  # the limit shared out, rounded up
        process = self._context.Process(
            target=_worker_main, name=f"dicom-worker-{slot}", daemon=True,
            args=(self._config, str(self._owner.store.index.path), per_worker, self.address, worker_control,
                  worker_data, logging.getLogger().getEffectiveLevel()))
        process.start()
        worker_control.close()
        worker_data.close()
        worker = _Worker(slot=slot, process=process, control=control, data=data)
        threading.Thread(target=self._serve_worker, args=(worker,), name=f"dicom-worker-{slot}-link",
                         daemon=True).start()
        return worker

    def _serve_worker(self, worker: _Worker) -> None:
        """Read one worker's messages until it exits; replace it if it died while the pool runs."""
        while True:
            try:
                message = worker.data.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "store":
                try:
                    self._executor.submit(self._store, worker, message[1], message[2])
                except RuntimeError:  # stopping: the worker is gone or going, nobody waits for the answer
                    continue
            elif kind == "closed":
                with self._lock:
                    worker.active = max(0, worker.active - 1)
            elif kind == "association":
                self._owner.count_association(message[1])
            elif kind == "log":
                logging.getLogger(message[2]).log(message[1], "%s", message[3])
            elif kind == "ready":
                worker.ready.set()
        with self._lock:
            worker.alive = False
        if not self._stopping.is_set() and worker.ready.is_set():  # one that never started is start()'s error
            log.error("dicom.scp.worker_died slot=%d exit_code=%s", worker.slot, worker.process.exitcode)
            self._replace(worker)

    def _replace(self, dead: _Worker) -> None:
        with contextlib.suppress(OSError):
            dead.control.close()
        try:
            fresh = self._spawn(dead.slot)
        except (OSError, RuntimeError):
            log.exception("dicom.scp.worker_respawn_failed slot=%d", dead.slot)
            return
        with self._lock:
            self._workers = [fresh if w is dead else w for w in self._workers]

    def _store(self, worker: _Worker, request_id: int, request: Any) -> None:
        try:
            code = self._owner.answer(request)
        except Exception:  # answer() maps store errors to statuses; anything else is our fault
            log.exception("dicom.scp.store_error")
            code = status.INTERNAL_ERROR
        try:
            with worker.send_lock:
                worker.data.send(("status", request_id, code))
        except (OSError, ValueError):
            log.warning("dicom.scp.worker_gone slot=%d", worker.slot)

    # --- connections ------------------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("dicom.scp.accept_failed")
                continue
            with conn:
                self._hand_over(conn, peer)

    def _hand_over(self, conn: socket.socket, peer: tuple[Any, ...]) -> None:
        """Pass the connection to the least busy live worker (the server's copy is closed by the caller)."""
        with self._lock:
            live = [w for w in self._workers if w.alive and w.ready.is_set()]
            if not live:
                log.error("dicom.scp.no_worker peer=%s", peer[0])
                return
            worker = min(live, key=lambda w: w.active)
            worker.active += 1
        try:
            socket.send_fds(worker.control, [f"{peer[0]}\0{peer[1]}".encode()], [conn.fileno()])
        except OSError as exc:
            with self._lock:
                worker.active -= 1
            log.warning("dicom.scp.handover_failed slot=%d error=%s", worker.slot, exc.strerror)


# --- the worker process ---------------------------------------------------------------------------------------


class _ServerLink:
    """The worker's side of the data pipe: C-STORE calls to the server's process, events and log records."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._send_lock = threading.Lock()
        self._ids = itertools.count()
        self._pending: dict[int, tuple[threading.Event, list[int]]] = {}
        self._pending_lock = threading.Lock()
        threading.Thread(target=self._read, name="dicom-server-link", daemon=True).start()

    def send(self, *message: Any) -> None:
        with contextlib.suppress(OSError, ValueError), self._send_lock:
            self._conn.send(message)

    def store(self, request: Any) -> int:
        """The status the server's process answers `request` with (0xC001 if it cannot be asked)."""
        request_id = next(self._ids)
        done, result = threading.Event(), [status.INTERNAL_ERROR]
        with self._pending_lock:
            self._pending[request_id] = (done, result)
        try:
            with self._send_lock:
                self._conn.send(("store", request_id, request))
        except (OSError, ValueError):
            with self._pending_lock:
                self._pending.pop(request_id, None)
            return status.INTERNAL_ERROR
        done.wait()
        return result[0]

    def _read(self) -> None:
        while True:
            try:
                _, request_id, code = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._pending_lock:
                waiting = self._pending.pop(request_id, None)
            if waiting is not None:
                waiting[1][0] = code
                waiting[0].set()
        with self._pending_lock:  # the server's process is gone: every waiting store fails (0xC001)
            for done, _ in self._pending.values():
                done.set()
            self._pending.clear()


class _LinkHandler(logging.Handler):
    """Sends the worker's log records to the server's process, which logs them with its own handlers."""

    def __init__(self, link: _ServerLink, level: int) -> None:
        super().__init__(level)
        self._link = link

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        self._link.send("log", record.levelno, record.name, message)


def _worker_main(config: Any, index_path: str, max_associations: int, address: tuple[str, int],
                 control: socket.socket, data: Connection, log_level: int) -> None:
    """A worker process: serve the connections the server's process passes, until told to stop."""
    from pydicom import config as pydicom_config
    from pynetdicom import _config as pynetdicom_config
    from pynetdicom import evt
    from pynetdicom.transport import ThreadedAssociationServer

    from edge.dicom.index import DicomIndex
    from edge.dicom.scp import Acceptor

    link = _ServerLink(data)
    root = logging.getLogger()
    root.handlers[:] = [_LinkHandler(link, log_level)]
    root.setLevel(log_level)
    # This process runs only the SCP, so process-wide switches are ours to set.
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    if not config.pydicom_validation:
        pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
        pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE

    class _HandedOverServer(ThreadedAssociationServer):
        """pynetdicom's server without a socket of its own: connections come from the server's process."""

        def server_bind(self) -> None:
            if self.socket is not None:
                self.socket.close()

        def server_activate(self) -> None:
            pass

    index = DicomIndex(Path(index_path))
    acceptor = Acceptor(config, store=link.store, index=index,
                        on_association=lambda result: link.send("association", result))
    handlers = [*acceptor.handlers(), (evt.EVT_CONN_CLOSE, lambda _event: link.send("closed"))]
    server = acceptor.application_entity(max_associations).make_server(
        address, evt_handlers=handlers, contexts=acceptor.contexts(), server_class=_HandedOverServer)
    tls = server_tls_context(config.tls_certfile, config.tls_keyfile, config.tls_cafile) \
        if config.tls_certfile and config.tls_keyfile else None
    link.send("ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1024, 1)
        except OSError:
            break
        if not fds:
            break  # told to stop, or the server's process is gone
        host, _, port = message.decode().partition("\0")
        conn = socket.socket(fileno=fds[0])
        threading.Thread(target=_serve, args=(server, conn, (host, int(port)), tls, config.acse_timeout_s, link),
                         name="dicom-handover", daemon=True).start()
    for assoc in server.active_associations:
        assoc.abort()
    index.close()


def _serve(server: Any, conn: socket.socket, peer: tuple[str, int], tls: ssl.SSLContext | None,
           handshake_timeout: float, link: _ServerLink) -> None:
    """Run one passed connection through pynetdicom (after the TLS handshake, when configured)."""
    try:
        conn.setblocking(True)
        if tls is not None:
            conn.settimeout(handshake_timeout)
            conn = tls.wrap_socket(conn, server_side=True)
            conn.settimeout(None)
        server.finish_request(conn, peer)  # EVT_CONN_OPEN, then the association runs in its own thread
    except (OSError, ssl.SSLError) as exc:
        log.warning("dicom.scp.connection_failed peer=%s error=%s", peer[0], exc)
        conn.close()
        link.send("closed")
