"""`telemed-cloud ingest`: migrate, then run N worker processes until SIGINT/SIGTERM, plus storage upkeep.

Workers are separate processes (each verifies, decodes and builds COPY streams on its own core) with their
own MQTT session and database connection. A worker that dies is restarted with backoff, under the same
client id so that it resumes its session. On SIGINT/SIGTERM every worker finishes its current transaction
and exits; a worker that does not within the grace period is killed (nothing it had not committed was
acknowledged, so nothing is lost). Workers die with the supervisor (PR_SET_PDEATHSIG): orphans would
fight the restarted workers for their client ids.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

import psycopg

from cloud.db import migrate
from cloud.edges import cloud_key
from cloud.ingest.worker import IngestWorker
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_GRACE_S = 30.0
_RESTART_MAX_S = 30.0
_HEALTHY_AFTER_S = 60.0


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when the supervisor dies (prctl(2)); exit now if it already has."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("ingest.pdeathsig_failed errno=%d", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(1)


def _worker_main(settings: CloudSettings, index: int, parent_pid: int, log_level: int) -> None:
    _die_with_parent(parent_pid)
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s [worker {index}] %(name)s %(message)s")
    worker = IngestWorker(settings, index=index)

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    except Exception:
        log.exception("ingest.worker_failed index=%d", index)
        sys.exit(1)


def run_migrations(settings: CloudSettings) -> migrate.MigrationReport:
    """Bring the schema up to date and run storage upkeep (start-up of ingest and serve)."""
    with psycopg.connect(settings.require_database(), autocommit=True, application_name="telemed-migrate",
                         connect_timeout=max(1, round(settings.database.connect_timeout_s))) as conn:
        return migrate.migrate(conn, ahead_days=settings.partitions.ahead_days,
                               retention_days=settings.retention.raw_days)


def run_maintenance(settings: CloudSettings) -> list[tuple[str, str]]:
    """One storage upkeep pass (partitions ahead, expired partitions, retention policy, old message ids)."""
    with psycopg.connect(settings.require_database(), autocommit=True, application_name="telemed-maintain",
                         connect_timeout=max(1, round(settings.database.connect_timeout_s))) as conn:
        return migrate.maintain(conn, ahead_days=settings.partitions.ahead_days,
                                retention_days=settings.retention.raw_days,
                                dedupe_days=settings.retention.dedupe_days)


@dataclass
class _Slot:
    """One worker index: its process (None while waiting to restart) and its crash history."""

    proc: multiprocessing.process.BaseProcess | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    failures: int = 0


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(self, settings: CloudSettings, *, workers: int | None = None) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot() for _ in range(workers or settings.ingest.workers)]

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        settings = self._settings
        run_migrations(settings)
        cloud_key.load_or_create(settings.keys.cloud_key_path)  # once, before the workers race for it
        maintenance = threading.Thread(target=self._maintain_periodically, name="maintenance", daemon=True)
        maintenance.start()
        for index in range(len(self._slots)):
            self._start(index)
        log.info("ingest.supervisor_started workers=%d", len(self._slots))
        try:
            while not self._stop.wait(0.5):
                self._watch()
        finally:
            self._stop_all()
        log.info("ingest.supervisor_stopped")
        return 0

    def _start(self, index: int) -> None:
        proc = self._context.Process(
            target=_worker_main, name=f"ingest-{index}",
            args=(self._settings, index, os.getpid(), logging.getLogger().getEffectiveLevel()),
        )
        proc.start()
        slot = self._slots[index]
        slot.proc, slot.started_at = proc, time.monotonic()

    def _watch(self) -> None:
        now = time.monotonic()
        for index, slot in enumerate(self._slots):
            if slot.proc is None:
                if slot.restart_at <= now:
                    self._start(index)
                continue
            if slot.proc.is_alive():
                if now - slot.started_at > _HEALTHY_AFTER_S:
                    slot.failures = 0
                continue
            slot.failures += 1
            delay = min(_RESTART_MAX_S, 0.5 * 2 ** (slot.failures - 1))
            log.error("ingest.worker_exited index=%d exitcode=%s restart_in_s=%.1f", index, slot.proc.exitcode, delay)
            slot.proc, slot.restart_at = None, now + delay

    def _stop_all(self) -> None:
        live = [slot.proc for slot in self._slots if slot.proc is not None and slot.proc.is_alive()]
        for proc in live:
            proc.terminate()  # SIGTERM: finish the current transaction, then exit
        deadline = time.monotonic() + _GRACE_S
        for proc in live:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("ingest.worker_killed pid=%s reason=grace_period_exceeded", proc.pid)
                proc.kill()
                proc.join(5)

    def _maintain_periodically(self) -> None:
        interval = self._settings.ingest.maintenance_interval_s
        while not self._stop.wait(interval):
            try:
                run_maintenance(self._settings)
            except (psycopg.Error, migrate.MigrationError) as exc:
                log.error("maintain.failed error=%s", exc)


def run(settings: CloudSettings, *, workers: int | None = None) -> int:
    """Run the ingest service in the foreground until SIGINT or SIGTERM."""
    supervisor = Supervisor(settings, workers=workers)

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("ingest.stop_requested signal=%s", signal.Signals(signum).name)
        supervisor.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return supervisor.run()
