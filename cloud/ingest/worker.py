"""One ingest worker: its own MQTT session and database connection, a loop of micro-batches.

    deliveries <- consumer (bounded queue)  ->  pipeline: one transaction  ->  commit
               -> signed CommitAck per edge on down/ack  ->  PUBACK to the broker

A stop request (SIGTERM/SIGINT in the worker process, or `request_stop`) lets the current transaction
finish and its acks go out, then disconnects; what is still queued was never acknowledged and comes back
from the broker on the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from cloud.edges import cloud_key
from cloud.edges.registry import EdgeRegistry
from cloud.ingest.acks import AckSequence, seal_acks
from cloud.ingest.consumer import ConsumerConfig, IngestConsumer
from cloud.ingest.errors import Stopped, TransientStoreError
from cloud.ingest.pipeline import CommitResult, Pipeline, RetryPolicy
from cloud.ingest.store import PgIngestStore
from cloud.settings import CloudSettings
from proto import topics

log = logging.getLogger(__name__)

_STATS_EVERY_S = 10.0


@dataclass
class WorkerStats:
    """Counters since start (read by tests and the periodic log line)."""

    transactions: int = 0
    committed: int = 0
    duplicates: int = 0
    rejected: int = 0
    samples: int = 0


def consumer_config(settings: CloudSettings, index: int) -> ConsumerConfig:
    """The MQTT settings of worker `index`."""
    mqtt, ingest = settings.mqtt, settings.ingest
    return ConsumerConfig(
        host=mqtt.host, port=mqtt.port, username=mqtt.username, password=mqtt.password,
        client_id=ingest.client_id(index), subscription=topics.ingest_subscription(ingest.group),
        tls=mqtt.tls, cafile=mqtt.cafile, keepalive_s=mqtt.keepalive_s, session_expiry_s=ingest.session_expiry_s,
        receive_maximum=ingest.receive_maximum, queue_size=ingest.queue_size,
    )


class IngestWorker:
    """Runs until `request_stop()`; `run()` raises if it cannot start (database or broker unusable)."""

    def __init__(self, settings: CloudSettings, *, index: int = 0) -> None:
        self._settings = settings
        self._index = index
        self._stop = threading.Event()
        self.started = threading.Event()
        self.stats = WorkerStats()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        settings = self._settings
        signer = cloud_key.load_or_create(settings.keys.cloud_key_path)
        store = PgIngestStore(settings.database, application_name=f"telemed-ingest-{self._index}")
        self._wait_for_database(store)
        registry = EdgeRegistry(store.all_edges, ttl_s=settings.ingest.edge_cache_ttl_s)
        pipeline = Pipeline(
            store, registry,
            retry=RetryPolicy(settings.ingest.retry_initial_s, settings.ingest.retry_max_s),
            poison_attempts=settings.ingest.poison_attempts, should_stop=self._stop.is_set,
        )
        consumer = IngestConsumer(consumer_config(settings, self._index))
        consumer.start()
        sequence = AckSequence(self._index)
        log.info("ingest.worker_started index=%d client_id=%s mode=%s", self._index,
                 settings.ingest.client_id(self._index), store.mode)
        self.started.set()

        def after_commit(result: CommitResult) -> None:
            for topic, raw in seal_acks(result.outcomes, signer=signer, sequence=sequence):
                consumer.publish(topic, raw)
            consumer.acknowledge([o.delivery for o in result.outcomes])
            self._count(result)

        next_stats = time.monotonic() + _STATS_EVERY_S
        reported = WorkerStats()
        try:
            while not self._stop.is_set():
                batch = consumer.get_batch(
                    settings.ingest.batch_max_messages, settings.ingest.batch_max_delay_ms / 1000.0, timeout_s=0.2
                )
                if batch:
                    try:
                        pipeline.process(batch, after_commit)
                    except Stopped:
                        break
                if time.monotonic() >= next_stats:
                    reported = self._log_stats(reported)
                    next_stats = time.monotonic() + _STATS_EVERY_S
        finally:
            consumer.stop()
            store.close()
            self._log_stats(reported)
            log.info("ingest.worker_stopped index=%d", self._index)

    def _wait_for_database(self, store: PgIngestStore) -> None:
        delay = self._settings.ingest.retry_initial_s
        while True:
            try:
                log.debug("ingest.database_ready mode=%s", store.mode)
                return
            except TransientStoreError as exc:
                if self._stop.is_set():
                    raise
                log.warning("ingest.database_unavailable error=%s retry_in_s=%.1f", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, self._settings.ingest.retry_max_s)

    def _count(self, result: CommitResult) -> None:
        stats = self.stats
        stats.transactions += 1
        stats.committed += result.count("committed")
        stats.duplicates += result.count("duplicate")
        stats.rejected += result.count("rejected")
        stats.samples += result.samples
        log.debug("ingest.committed messages=%d samples=%d ms=%.1f", len(result.outcomes), result.samples,
                  result.seconds * 1000)

    def _log_stats(self, before: WorkerStats) -> WorkerStats:
        now = WorkerStats(**vars(self.stats))
        if now.transactions != before.transactions:
            log.info("ingest.stats index=%d transactions=%d committed=%d duplicates=%d rejected=%d samples=%d",
                     self._index, now.transactions - before.transactions, now.committed - before.committed,
                     now.duplicates - before.duplicates, now.rejected - before.rejected, now.samples - before.samples)
        return now
