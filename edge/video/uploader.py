"""Uploading sealed recordings to the cloud, signed like the DICOM forwarder's STOW-RS requests.

`PUT {cloud}/api/edge/recordings/{recording_id}` with the sealed container as the body and the edge's
request signature (edge/dicom/signing.py: method, path, SHA-256 of the body, time, edge id). The cloud
answers 201 (stored) or 200 (already stored, same bytes): only then is the local file deleted. Network
errors, 5xx, 408 and 429 are retried with capped exponential backoff; any other refusal is logged and the
file kept (moved aside as `.rejected`) for an operator, since deleting it would lose the recording.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from edge.dicom.signing import RequestSigner
from edge.settings import EdgeSettings
from edge.video.spool import RecordingSpool

log = logging.getLogger(__name__)

UPLOAD_PATH: Final = "/api/edge/recordings/{recording_id}"
MEDIA_TYPE: Final = "application/vnd.telemed.recording"


@dataclass(frozen=True)
class UploadConfig:
    base_url: str  # the cloud API, e.g. https://cloud.example.cn
    verify: bool | str = True  # TLS verification: True, False, or the CA bundle that signed the cloud
    timeout_s: float = 300.0
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 300.0


class RecordingUploader:
    """A thread that uploads every sealed recording in the spool, now and whenever `wake()` is called."""

    def __init__(self, spool: RecordingSpool, signer: RequestSigner, config: UploadConfig, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.spool = spool
        self.config = config
        self._signer = signer
        self._prefix = httpx.URL(config.base_url).path.rstrip("/")  # the signature covers the path as sent
        self._client = httpx.Client(base_url=config.base_url.rstrip("/"), timeout=config.timeout_s,
                                    verify=config.verify, transport=transport)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="video-uploader", daemon=True)
        self._rng = random.Random()
        self.uploaded = 0

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A new sealed recording is waiting."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._client.close()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.clear()
            ok = all(self.upload(path) for path in self.spool.pending() if not self._stop.is_set())
            if ok:
                failures = 0
                self._wake.wait()
                continue
            failures += 1
            base = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2.0 ** (failures - 1))
            self._wake.wait(base * (0.5 + 0.5 * self._rng.random()))

    def upload(self, path: Path) -> bool:
        """Upload one sealed file; True when the cloud holds it (the file is deleted) or refused it for good."""
        recording_id = path.name.removesuffix(".tmrec")
        try:
            body = path.read_bytes()
        except FileNotFoundError:
            return True
        target = UPLOAD_PATH.format(recording_id=recording_id)
        headers = {"Content-Type": MEDIA_TYPE, **self._signer.headers("PUT", self._prefix + target, body)}
        try:
            response = self._client.put(target, content=body, headers=headers)
        except httpx.TransportError as exc:
            log.warning("video.recording_upload_retry", extra={"recording_id": recording_id, "error": str(exc)})
            return False
        if response.status_code in (200, 201):
            path.unlink(missing_ok=True)
            self.uploaded += 1
            log.info("video.recording_uploaded", extra={"recording_id": recording_id, "bytes": len(body)})
            return True
        if response.status_code >= 500 or response.status_code in (401, 408, 429):
            # 401 too: a clock outside the cloud's window or a key not yet registered heal by themselves.
            log.warning("video.recording_upload_retry", extra={"recording_id": recording_id,
                                                               "status": response.status_code})
            return False
        log.error("video.recording_rejected", extra={"recording_id": recording_id, "status": response.status_code,
                                                     "detail": response.text[:200]})
        path.rename(path.with_suffix(".rejected"))
        return True


def recording_pipeline(settings: EdgeSettings, *, base_dir: Path, signer: RequestSigner
                       ) -> tuple[RecordingSpool, RecordingUploader] | None:
    """The spool and uploader the edge service wires into VideoCalls; None when there is no cloud URL to
    upload to (recording is then refused: recordings must not pile up on the edge)."""
    video, dicom = settings.video, settings.dicom
    base_url = video.recording_upload_url or dicom.stow_url
    if not base_url:
        return None
    directory = video.recording_dir if video.recording_dir.is_absolute() else base_dir / video.recording_dir
    spool = RecordingSpool(directory, edge_id=settings.edge.id, cloud_key=settings.keys.cloud_key())
    spool.recover()
    verify: bool | str = True
    if dicom.stow_verify:
        stow_verify = Path(dicom.stow_verify)
        verify = str(stow_verify if stow_verify.is_absolute() else base_dir / stow_verify)
    return spool, RecordingUploader(spool, signer, UploadConfig(base_url=base_url, verify=verify))
