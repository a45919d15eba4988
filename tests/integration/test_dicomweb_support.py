"""Helpers (no tests) for the DICOMweb read tests, the browser tests and the dashboard benchmark: edges,
instances written into the object store and `dicom_instances` (as the STOW-RS receiver records them) or
uploaded through the signed STOW-RS route, and multipart parsing of responses."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset

from cloud.api.app import create_app
from cloud.api.policy import ApiPolicy
from cloud.dicomweb import multipart as cloud_multipart
from cloud.dicomweb.store import FileObjectStore, ObjectKey
from cloud.settings import CloudSettings, DatabaseSettings, DicomSettings
from devices.modality.studies import Study
from edge.dicom import multipart as edge_multipart
from edge.dicom.signing import RequestSigner
from proto import keys


def part10(ds: Dataset) -> bytes:
    """A dataset with its file meta as PS3.10 bytes, in its file meta's transfer syntax."""
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def register_edge(db_url: str, edge_id: str, site_id: str) -> Ed25519PrivateKey:
    """An active edge of `site_id` (the site must exist); its signing key."""
    key = keys.generate()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO edges (edge_id, site_id, public_key, status) VALUES (%s, %s, %s, 'active')",
                     (edge_id, site_id, keys.public_to_text(key.public_key())))
    return key


def dicomweb_client(db_url: str, store_dir: Path, **policy: Any) -> TestClient:
    """An in-process client of the real app whose DICOM object store is `store_dir` (enter it to start)."""
    settings = CloudSettings(database=DatabaseSettings(url=db_url, pool_min=1, pool_max=4),
                             dicom=DicomSettings(store_dir=store_dir))
    return TestClient(create_app(settings, policy=ApiPolicy(cookie_secure=False, **policy)))


@dataclass(frozen=True)
class Archive:
    """Writes instances the way the STOW-RS receiver stores them: object first, then the index row."""

    db_url: str
    store: FileObjectStore

    def put(self, data: bytes, *, edge_id: str, patient_id: str | None) -> str:
        """Store one PS3.10 instance; its SOP Instance UID."""
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        key = ObjectKey(str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
        location = self.store.put(key, data)
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO dicom_instances (sop_instance_uid, study_instance_uid, series_instance_uid,"
                " sop_class_uid, transfer_syntax_uid, size_bytes, sha256, edge_id, patient_id, path)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (key.sop_instance_uid, key.study_instance_uid, key.series_instance_uid, str(ds.SOPClassUID),
                 str(ds.file_meta.TransferSyntaxUID), len(data), hashlib.sha256(data).hexdigest(), edge_id,
                 patient_id, location),
            )
        return key.sop_instance_uid

    def put_study(self, study: Study, *, edge_id: str, patient_id: str | None) -> list[bytes]:
        """Store every instance of a simulated study; their bytes, in acquisition order."""
        files = [part10(ds) for ds in study.instances]
        for data in files:
            self.put(data, edge_id=edge_id, patient_id=patient_id)
        return files


def stow(base_url: str, files: list[bytes], *, edge_id: str, key: Ed25519PrivateKey,
         client: httpx.Client | None = None) -> httpx.Response:
    """Upload instances through the signed STOW-RS route, as an edge's forwarder does."""
    parts = [edge_multipart.Part(data=f, transfer_syntax_uid="1.2.840.10008.1.2.1",
                                 sha256=hashlib.sha256(f).hexdigest()) for f in files]
    content_type, body = edge_multipart.encode(parts)
    path = "/dicomweb/studies"
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json",
               **RequestSigner(edge_id, key).headers("POST", path, body)}
    if client is not None:
        return client.post(path, content=body, headers=headers)
    return httpx.post(base_url + path, content=body, headers=headers, timeout=30)


def multipart_parts(response: httpx.Response) -> list[cloud_multipart.BodyPart]:
    """The parts of a multipart/related response."""
    media_type, params = cloud_multipart.parse_media_type(response.headers["content-type"])
    assert media_type == "multipart/related", response.headers["content-type"]
    return cloud_multipart.split(response.content, params["boundary"])
