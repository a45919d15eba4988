"""Upload completed studies to the cloud with DICOMweb STOW-RS (PS3.18 10.5), resumably.

Upload state is per instance in the index: an instance is pending until a STOW-RS response lists it in its
ReferencedSOPSequence (stored, or already held: the cloud is idempotent on SOP Instance UID), so a forwarder
that stops half-way, or a request whose response is lost, resumes by sending only what is still pending.
A study's pending instances travel in batches (bounded in bytes and count), several batches at once
(bounded concurrency), each signed with the edge's key (edge/dicom/signing.py). Network errors, 5xx and 429
are retried with exponential backoff and jitter; an instance the cloud refuses for a reason that retrying
cannot fix (its bytes no longer match the hash taken on receipt, it does not parse) is marked failed.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from edge.dicom import multipart
from edge.dicom.errors import ForwardError, StoreIOError, TransientUploadError, UploadRejectedError
from edge.dicom.models import StoredInstance, UploadState
from edge.dicom.signing import RequestSigner
from edge.dicom.store import InstanceStore

log = logging.getLogger(__name__)

STOW_PATH: Final = "/dicomweb/studies/{study}"
DICOM_JSON: Final = "application/dicom+json"
# STOW-RS FailureReason values (PS3.18 10.5.3; codes from PS3.4 B.2.3 and PS3.7 C) that a later attempt may
# get past: the cloud was out of space, or failed internally.
RETRYABLE_REASONS: Final = frozenset({0xA700, 0x0110})
_REFERENCED: Final = "00081199"
_FAILED: Final = "00081198"
_SOP_INSTANCE: Final = "00081155"
_FAILURE_REASON: Final = "00081197"


@dataclass(frozen=True)
class ForwarderConfig:
    """Where and how the forwarder uploads."""

    base_url: str  # the cloud API, e.g. https://cloud.example.cn
    concurrency: int = 2  # requests in flight at once
    max_batch_bytes: int = 16 * 1024 * 1024
    max_batch_instances: int = 64
    max_attempts: int = 5  # per batch and forward run; pending instances are tried again on the next run
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_jitter: float = 0.5  # fraction of each delay that is randomised
    timeout_s: float = 120.0
    verify: bool | str = True  # TLS verification: True, False, or the CA bundle that signed the cloud

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_batch_instances < 1 or self.max_attempts < 1:
            raise ValueError("concurrency, max_batch_instances and max_attempts must be at least 1")
        if self.max_batch_bytes <= 0 or self.timeout_s <= 0:
            raise ValueError("max_batch_bytes and timeout_s must be positive")
        if not 0 <= self.backoff_jitter <= 1:
            raise ValueError("backoff_jitter must be within 0..1")


def backoff_delay(attempt: int, *, initial: float, maximum: float, jitter: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (1-based): exponential, capped, partly randomised."""
    base = min(maximum, initial * 2.0 ** (attempt - 1))
    return base * (1 - jitter) + base * jitter * rng.random()


# --- the STOW-RS response ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StowResult:
    """What one STOW-RS response says: instances stored (or already held) and instances refused, with reasons."""

    status_code: int
    stored: frozenset[str]
    failed: dict[str, int] = field(default_factory=dict)


def _sequence(body: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    element = body.get(tag) or {}
    items = element.get("Value") or []
    return [item for item in items if isinstance(item, dict)]


def _first(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


def parse_stow_response(status_code: int, content: bytes) -> StowResult:
    """Parse an application/dicom+json STOW-RS response body (PS3.18 10.5.3, PS3.18 F.2 JSON model)."""
    try:
        body = json.loads(content) if content else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ForwardError(f"the STOW-RS response is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ForwardError("the STOW-RS response is not a DICOM JSON object")
    stored = frozenset(str(_first(i, _SOP_INSTANCE)) for i in _sequence(body, _REFERENCED) if _first(i, _SOP_INSTANCE))
    failed: dict[str, int] = {}
    for item in _sequence(body, _FAILED):
        uid = _first(item, _SOP_INSTANCE)
        reason = _first(item, _FAILURE_REASON)
        if uid:
            failed[str(uid)] = int(reason) if isinstance(reason, int) else 0x0110
    return StowResult(status_code=status_code, stored=stored, failed=failed)


# --- the HTTP client --------------------------------------------------------------------------------------------


class StowClient:
    """Signed STOW-RS requests to the cloud (httpx; thread-safe)."""

    def __init__(self, config: ForwarderConfig, signer: RequestSigner, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self._signer = signer
        # The signature covers the path as it goes on the wire, including any prefix of the base URL.
        self._prefix = httpx.URL(config.base_url).path.rstrip("/")
        self._client = httpx.Client(base_url=config.base_url.rstrip("/"), timeout=config.timeout_s,
                                    verify=config.verify, transport=transport,
                                    limits=httpx.Limits(max_connections=config.concurrency))

    def close(self) -> None:
        self._client.close()

    def store(self, study_uid: str, parts: list[multipart.Part]) -> StowResult:
        """POST one batch to /dicomweb/studies/{study}; TransientUploadError or UploadRejectedError on failure."""
        content_type, body = multipart.encode(parts)
        path = STOW_PATH.format(study=study_uid)
        headers = {"Content-Type": content_type, "Accept": DICOM_JSON,
                   **self._signer.headers("POST", self._prefix + path, body)}
        try:
            response = self._client.post(path, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise TransientUploadError(f"{type(exc).__name__}: {exc}") from exc
        code = response.status_code
        if code in (200, 202, 409):
            return parse_stow_response(code, response.content)
        detail = response.text[:200]
        if code >= 500 or code in (408, 429):
            raise TransientUploadError(f"HTTP {code}: {detail}")
        raise UploadRejectedError(code, detail)


# --- the forwarder ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Progress of one forward run, reported after each batch."""

    study_instance_uid: str
    confirmed: int  # instances of this study the cloud confirmed so far in this run
    failed: int
    total: int  # instances of this study pending when the run started
    bytes_sent: int
    bytes_total: int


@dataclass
class ForwardReport:
    """What a forward run achieved."""

    confirmed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> reason, refused for good
    still_pending: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.still_pending == 0 and not self.errors


ProgressCallback = Callable[[Progress], None]


@dataclass
class _StudyTally:
    total: int
    bytes_total: int
    confirmed: int = 0
    failed: int = 0
    bytes_sent: int = 0


def batches(instances: Iterable[StoredInstance], *, max_bytes: int, max_count: int) -> Iterator[list[StoredInstance]]:
    """Consecutive batches within the limits (an instance larger than max_bytes travels alone)."""
    batch: list[StoredInstance] = []
    size = 0
    for instance in instances:
        if batch and (size + instance.size_bytes > max_bytes or len(batch) >= max_count):
            yield batch
            batch, size = [], 0
        batch.append(instance)
        size += instance.size_bytes
    if batch:
        yield batch


class Forwarder:
    """Uploads the pending instances of manifested studies; `forward_pending()` is one resumable run."""

    def __init__(self, store: InstanceStore, client: StowClient, *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None, sleep: Callable[[float], bool] | None = None) -> None:
        self.store = store
        self.client = client
        self.config = client.config
        self._clock = clock
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        # sleep(seconds) -> True if interrupted by stop(); injectable so tests need not wait.
        self._sleep = sleep or (lambda seconds: self._stop.wait(seconds))
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Abandon retry waits (in-flight requests finish); pending instances stay pending."""
        self._stop.set()

    def forward_pending(self, progress: ProgressCallback | None = None) -> ForwardReport:
        """Upload every pending instance of every manifested study."""
        return self.forward(self.store.index.studies_to_forward(), progress)

    def forward(self, study_uids: Iterable[str], progress: ProgressCallback | None = None) -> ForwardReport:
        """Upload the pending instances of the given studies (bounded concurrency); never raises ForwardError."""
        report = ForwardReport()
        work: list[tuple[str, list[StoredInstance]]] = []
        tallies: dict[str, _StudyTally] = {}
        for study_uid in study_uids:
            pending = self.store.index.instances(study_uid, states=[UploadState.PENDING])
            if not pending:
                continue
            tallies[study_uid] = _StudyTally(total=len(pending), bytes_total=sum(i.size_bytes for i in pending))
            for batch in batches(pending, max_bytes=self.config.max_batch_bytes,
                                 max_count=self.config.max_batch_instances):
                work.append((study_uid, batch))
        if not work:
            return report
        log.info("dicom.forward.start studies=%d batches=%d instances=%d", len(tallies), len(work),
                 sum(t.total for t in tallies.values()))
        with ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="dicom-stow") as pool:
            futures = [pool.submit(self._send_batch, study, batch, tallies[study], report, progress)
                       for study, batch in work]
            for future in futures:
                future.result()
        report.still_pending = sum(len(self.store.index.instances(s, states=[UploadState.PENDING]))
                                   for s in tallies)
        log.info("dicom.forward.done confirmed=%d failed=%d still_pending=%d errors=%d", report.confirmed,
                 len(report.failed), report.still_pending, len(report.errors))
        return report

    def _send_batch(self, study_uid: str, batch: list[StoredInstance], tally: _StudyTally, report: ForwardReport,
                    progress: ProgressCallback | None) -> None:
        parts, readable, unreadable = self._read(batch)
        if unreadable:
            self.store.index.mark_failed(unreadable)
            with self._lock:
                report.failed.update(unreadable)
                tally.failed += len(unreadable)
        if not parts:
            return
        uids = [i.sop_instance_uid for i in readable]
        result = self._post_with_retries(study_uid, parts, uids, report)
        if result is None:
            return
        confirmed = [uid for uid in uids if uid in result.stored]
        refused = {uid: reason for uid, reason in result.failed.items() if uid in set(uids)}
        permanent = {uid: f"cloud refused: 0x{reason:04X}" for uid, reason in refused.items()
                     if reason not in RETRYABLE_REASONS}
        retry_later = [uid for uid in uids if uid not in result.stored and uid not in permanent]
        self.store.index.mark_confirmed(confirmed, at=self._clock())
        self.store.index.mark_failed(permanent)
        self.store.index.record_attempt(retry_later, error="not confirmed by the cloud" if retry_later else None)
        for uid, reason in permanent.items():
            log.warning("dicom.forward.instance_refused study_instance_uid=%s sop_instance_uid=%s reason=%s",
                        study_uid, uid, reason)
        with self._lock:
            report.confirmed += len(confirmed)
            report.failed.update(permanent)
            tally.confirmed += len(confirmed)
            tally.failed += len(permanent)
            tally.bytes_sent += sum(len(p.data) for p in parts)
            snapshot = Progress(study_uid, tally.confirmed, tally.failed, tally.total, tally.bytes_sent,
                                tally.bytes_total)
        if progress is not None:
            try:
                progress(snapshot)
            except Exception:
                log.exception("dicom.forward.progress_callback_failed")

    def _read(self, batch: list[StoredInstance]) -> tuple[list[multipart.Part], list[StoredInstance], dict[str, str]]:
        parts: list[multipart.Part] = []
        readable: list[StoredInstance] = []
        unreadable: dict[str, str] = {}
        for instance in batch:
            try:
                data = self.store.read(instance)
            except StoreIOError as exc:
                log.error("dicom.forward.unreadable sop_instance_uid=%s error=%s", instance.sop_instance_uid, exc)
                unreadable[instance.sop_instance_uid] = "instance file unreadable at the edge"
                continue
            # The digest sent is the one taken on receipt, not of these bytes: the cloud's check then also
            # covers a file that changed on the edge's disk.
            parts.append(multipart.Part(data=data, transfer_syntax_uid=instance.transfer_syntax_uid,
                                        sha256=instance.sha256))
            readable.append(instance)
        return parts, readable, unreadable

    def _post_with_retries(self, study_uid: str, parts: list[multipart.Part], uids: list[str],
                           report: ForwardReport) -> StowResult | None:
        attempt = 0
        while True:
            attempt += 1
            try:
                return self.client.store(study_uid, parts)
            except TransientUploadError as exc:
                error = str(exc)
                if attempt < self.config.max_attempts and not self._stop.is_set():
                    delay = backoff_delay(attempt, initial=self.config.backoff_initial_s,
                                          maximum=self.config.backoff_max_s, jitter=self.config.backoff_jitter,
                                          rng=self._rng)
                    log.warning("dicom.forward.retry study_instance_uid=%s attempt=%d delay_s=%.1f error=%s",
                                study_uid, attempt, delay, error)
                    if not self._sleep(delay):
                        continue
            except (UploadRejectedError, ForwardError) as exc:
                error = str(exc)
            log.error("dicom.forward.batch_failed study_instance_uid=%s instances=%d attempts=%d error=%s",
                      study_uid, len(uids), attempt, error)
            self.store.index.record_attempt(uids, error=error)
            with self._lock:
                report.errors.append(error)
            return None
