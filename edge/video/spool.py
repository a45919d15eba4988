"""The recording directory (`video.recording_dir`): plaintext only while recording, sealed files until uploaded.

Per recording id:
- `<id>.json`: what is being recorded (consultation, consent, start time), written before the first frame;
- `<id>.webm.part`: the media while recording, in the clear (the directory is 0700);
- `<id>.tmrec`: the sealed container (sealing.py), kept until the cloud confirms it.

`finish` seals and then deletes the plaintext and the description (the container carries it). After a
crash, `recover` seals what was being recorded (ended at the file's last write), so neither a plaintext
file nor a recording is left behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.video.recorder import MEDIA_TYPE
from edge.video.sealing import SealedFile, seal_file

log = logging.getLogger(__name__)

SEALED_SUFFIX: Final = ".tmrec"
_PLAIN_SUFFIX: Final = ".webm.part"
_INFO_SUFFIX: Final = ".json"


@dataclass(frozen=True)
class RecordingInfo:
    """A recording as the edge starts it."""

    recording_id: str
    consultation_id: str
    consent_id: str | None
    edge_id: str
    started_at: dt.datetime

    def header(self, ended_at: dt.datetime) -> dict[str, Any]:
        return {"recording_id": self.recording_id, "consultation_id": self.consultation_id,
                "consent_id": self.consent_id, "edge_id": self.edge_id, "media_type": MEDIA_TYPE,
                "started_at": self.started_at.isoformat(), "ended_at": ended_at.isoformat()}


class RecordingSpool:
    """Files of recordings in progress and awaiting upload; sealing for the cloud's key."""

    def __init__(self, directory: Path, *, edge_id: str, cloud_key: Ed25519PublicKey) -> None:
        self.directory = directory
        self.edge_id = edge_id
        self._cloud_key = cloud_key
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)  # plaintext media lives here while a call records

    def begin(self, consultation_id: str, consent_id: str | None) -> tuple[RecordingInfo, Path]:
        """Describe a new recording on disk; the path its media goes to."""
        info = RecordingInfo(recording_id=str(uuid.uuid4()), consultation_id=consultation_id, consent_id=consent_id,
                             edge_id=self.edge_id, started_at=dt.datetime.now(dt.UTC))
        described = {"recording_id": info.recording_id, "consultation_id": consultation_id,
                     "consent_id": consent_id, "started_at": info.started_at.isoformat()}
        self._path(info.recording_id, _INFO_SUFFIX).write_text(json.dumps(described), encoding="utf-8")
        return info, self._path(info.recording_id, _PLAIN_SUFFIX)

    def finish(self, info: RecordingInfo, ended_at: dt.datetime | None = None) -> SealedFile | None:
        """Seal the recording's media and delete the plaintext; None when nothing was recorded."""
        plain = self._path(info.recording_id, _PLAIN_SUFFIX)
        try:
            if not plain.exists() or plain.stat().st_size == 0:
                log.warning("video.recording_empty", extra={"recording_id": info.recording_id})
                return None
            ended = ended_at or dt.datetime.now(dt.UTC)
            sealed = seal_file(plain, self._path(info.recording_id, SEALED_SUFFIX), header=info.header(ended),
                               recipient=self._cloud_key)
            log.info("video.recording_sealed", extra={"recording_id": info.recording_id, "bytes": sealed.bytes})
            return sealed
        finally:
            plain.unlink(missing_ok=True)
            self._path(info.recording_id, _INFO_SUFFIX).unlink(missing_ok=True)

    def recover(self) -> int:
        """Seal recordings a crash interrupted; how many."""
        sealed = 0
        for described in sorted(self.directory.glob(f"*{_INFO_SUFFIX}")):
            try:
                data = json.loads(described.read_text(encoding="utf-8"))
                info = RecordingInfo(recording_id=str(uuid.UUID(data["recording_id"])),
                                     consultation_id=str(data["consultation_id"]), consent_id=data.get("consent_id"),
                                     edge_id=self.edge_id, started_at=dt.datetime.fromisoformat(data["started_at"]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("video.recording_unreadable", extra={"file": described.name, "error": str(exc)})
                continue
            plain = self._path(info.recording_id, _PLAIN_SUFFIX)
            ended = info.started_at
            with contextlib.suppress(OSError):
                ended = max(ended, dt.datetime.fromtimestamp(plain.stat().st_mtime, dt.UTC))
            if self.finish(info, ended) is not None:
                sealed += 1
        for orphan in self.directory.glob(f"*{_PLAIN_SUFFIX}"):  # media without a description: not sealable
            orphan.unlink(missing_ok=True)
            log.error("video.recording_orphan_deleted", extra={"file": orphan.name})
        return sealed

    def pending(self) -> list[Path]:
        """Sealed recordings not yet confirmed by the cloud, oldest first."""
        files = [p for p in self.directory.glob(f"*{SEALED_SUFFIX}") if not p.name.startswith(".")]
        return sorted(files, key=lambda p: p.stat().st_mtime)

    def _path(self, recording_id: str, suffix: str) -> Path:
        return self.directory / f"{recording_id}{suffix}"
