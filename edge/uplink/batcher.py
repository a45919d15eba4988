"""The vitals batcher: samples from every device go to the outbox as one VitalsBatch per second (or per N samples).

Batching is what makes the columnar codec pay (docs/protocol.md): one envelope, one signature and one
outbox row per batch instead of per sample. A batch is closed when it holds `max_samples`, or when its
first sample has waited `max_age_s` (a timer thread, or the caller's own `poll()`), or on `flush()`/`stop()`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from proto.quality import Quality
from proto.vitals import VitalSample, VitalsBatch, VitalsBatchBuilder
from proto.vocabulary import kind as vocabulary_kind

log = logging.getLogger(__name__)

BatchSink = Callable[[VitalsBatch], "Future[Any]"]


class VitalsBatcher:
    """Thread-safe accumulator in front of the outbox (`sink` is usually `Outbox.enqueue`)."""

    def __init__(
        self,
        sink: BatchSink,
        *,
        max_samples: int = 2000,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_samples <= 0 or max_age_s <= 0:
            raise ValueError("max_samples and max_age_s must be positive")
        self._sink = sink
        self.max_samples = max_samples
        self.max_age_s = max_age_s
        self._clock = clock
        self._builder = VitalsBatchBuilder()
        self._opened_at: float | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.samples = 0

    def add(
        self, time_: dt.datetime | int, patient_id: str, kind: str, value: float, *,
        device_id: str = "", quality: int = Quality.NONE,
    ) -> None:
        """Queue one sample (canonical unit of `kind`); UnknownKindError or ValueError (not finite) refuse it."""
        vocabulary_kind(kind)  # unknown kinds fail here, in the producer, not later in the batch
        with self._lock:
            self._builder.add(time_, patient_id, kind, value, device_id=device_id, quality=int(quality))
            if self._opened_at is None:
                self._opened_at = self._clock()
                self._wake.notify()
            full = len(self._builder) >= self.max_samples
        if full:
            self.flush()

    def add_sample(self, sample: VitalSample) -> None:
        self.add(sample.time, sample.patient_id, sample.kind, sample.value, device_id=sample.device_id,
                 quality=sample.quality)

    def pending(self) -> int:
        with self._lock:
            return len(self._builder)

    def poll(self) -> Future[Any] | None:
        """Close the open batch if its first sample has waited max_age_s."""
        with self._lock:
            due = self._opened_at is not None and self._clock() - self._opened_at >= self.max_age_s
        return self.flush() if due else None

    def flush(self) -> Future[Any] | None:
        """Hand the open batch to the sink now; returns the sink's future (None if nothing was open)."""
        with self._lock:
            if not len(self._builder):
                return None
            batch = self._builder.build()
            self._opened_at = None
            self.batches += 1
            self.samples += len(batch)
            # The sink is called under the lock so batches reach it in the order they were closed.
            future = self._sink(batch)
        future.add_done_callback(_log_failure)
        return future

    def start(self) -> None:
        """Run a timer thread that closes batches when they reach max_age_s."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="vitals-batcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the timer and hand over what is left."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        self.flush()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and self._opened_at is None:
                    self._wake.wait()
                if self._stopping:
                    return
                assert self._opened_at is not None
                remaining = self._opened_at + self.max_age_s - self._clock()
                if remaining > 0:
                    self._wake.wait(remaining)
                    continue
            self.poll()


def _log_failure(future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("batcher.enqueue_failed", extra={"error": str(exc)})
