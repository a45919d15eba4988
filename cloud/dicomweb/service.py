"""Storing the instances of one STOW-RS request: object store first, then dicom_instances rows.

Idempotent on SOP Instance UID: an instance already held with the same SHA-256 is confirmed again without
being rewritten; one held with other content is refused (0x0111) and the first kept. Per-UID advisory locks
in the request's transaction serialise concurrent uploads of the same instance across API replicas. An
instance listed by the study's manifest (dicom_manifests, from the edge's MQTT uplink) with another hash is
refused as an integrity failure. Database errors propagate (the router answers 503 and the edge retries);
a file written for a row that never committed is overwritten by the retry.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg import AsyncConnection
from starlette.concurrency import run_in_threadpool

from cloud.dicomweb import reasons
from cloud.dicomweb.auth import VerifiedEdge
from cloud.dicomweb.multipart import BodyPart
from cloud.dicomweb.parts import Candidate, Failure, examine
from cloud.dicomweb.store import ObjectStore, ObjectStoreError, ObjectStoreFullError

log = logging.getLogger(__name__)

_LOCK: Final = """
SELECT pg_advisory_xact_lock(hashtextextended(u, 0)) FROM (SELECT u FROM unnest(%s::text[]) AS u ORDER BY u) AS s
"""
_EXISTING: Final = "SELECT sop_instance_uid, sha256 FROM dicom_instances WHERE sop_instance_uid = ANY(%s::text[])"
_MANIFEST_HASHES: Final = """
SELECT i->>'sop_instance_uid', i->>'sha256'
  FROM dicom_manifests m, jsonb_array_elements(m.body->'series') s, jsonb_array_elements(s->'instances') i
 WHERE m.study_instance_uid = ANY(%s::text[]) AND i->>'sop_instance_uid' = ANY(%s::text[])
"""
_MANIFEST_PATIENTS: Final = """
SELECT study_instance_uid, patient_id FROM dicom_manifests WHERE study_instance_uid = ANY(%s::text[])
"""
_INSERT: Final = """
INSERT INTO dicom_instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid,
                             transfer_syntax_uid, size_bytes, sha256, edge_id, patient_id, path)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],
                     %s::text[], %s::text[], %s::text[])
ON CONFLICT (sop_instance_uid) DO NOTHING
"""


@dataclass(frozen=True, slots=True)
class Stored:
    """An instance the cloud holds after this request (newly stored or already held)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    new: bool


@dataclass
class StowOutcome:
    stored: list[Stored] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)


def _stored(candidate: Candidate, *, new: bool) -> Stored:
    return Stored(candidate.sop_class_uid, candidate.sop_instance_uid, candidate.key.study_instance_uid,
                  candidate.key.series_instance_uid, new)


def _dedupe(examined: Sequence[Candidate | Failure]) -> tuple[list[Candidate], list[Failure]]:
    """Split candidates from failures; a UID twice in one request is stored once (or refused if it differs)."""
    candidates: dict[str, Candidate] = {}
    failures: list[Failure] = []
    for item in examined:
        if isinstance(item, Failure):
            failures.append(item)
            continue
        first = candidates.get(item.sop_instance_uid)
        if first is None:
            candidates[item.sop_instance_uid] = item
        elif first.sha256 != item.sha256:
            failures.append(Failure(item.sop_class_uid, item.sop_instance_uid, reasons.DUPLICATE_SOP_INSTANCE,
                                    "the same SOP Instance UID twice in one request, with different content"))
    return list(candidates.values()), failures


def _write(store: ObjectStore, candidates: Sequence[Candidate]) -> tuple[dict[str, str], list[Failure]]:
    """Write objects (in a worker thread): ({uid: location}, failures)."""
    locations: dict[str, str] = {}
    failures: list[Failure] = []
    for candidate in candidates:
        try:
            locations[candidate.sop_instance_uid] = store.put(candidate.key, candidate.data)
        except ObjectStoreFullError as exc:
            log.error("dicomweb.store_full sop_instance_uid=%s error=%s", candidate.sop_instance_uid, exc)
            failures.append(Failure(candidate.sop_class_uid, candidate.sop_instance_uid, reasons.OUT_OF_RESOURCES,
                                    "object store full"))
        except ObjectStoreError as exc:
            log.error("dicomweb.store_failed sop_instance_uid=%s error=%s", candidate.sop_instance_uid, exc)
            failures.append(Failure(candidate.sop_class_uid, candidate.sop_instance_uid, reasons.PROCESSING_FAILURE,
                                    "object store error"))
    return locations, failures


async def store_instances(conn: AsyncConnection[Any], store: ObjectStore, *, edge: VerifiedEdge,
                          parts: Sequence[BodyPart], study_uid: str | None) -> StowOutcome:
    """Examine, deduplicate, write and record the parts of one request."""
    examined = await run_in_threadpool(lambda: [examine(p, study_uid=study_uid) for p in parts])
    candidates, failures = _dedupe(examined)
    outcome = StowOutcome(failed=failures)
    if not candidates:
        return outcome
    uids = [c.sop_instance_uid for c in candidates]
    studies = sorted({c.key.study_instance_uid for c in candidates})
    async with conn.transaction():
        await conn.execute(_LOCK, (uids,))
        existing = dict(await (await conn.execute(_EXISTING, (uids,))).fetchall())
        listed = dict(await (await conn.execute(_MANIFEST_HASHES, (studies, uids))).fetchall())
        patients = dict(await (await conn.execute(_MANIFEST_PATIENTS, (studies,))).fetchall())
        new: list[Candidate] = []
        for candidate in candidates:
            held = existing.get(candidate.sop_instance_uid)
            if held is not None:
                if held == candidate.sha256:
                    outcome.stored.append(_stored(candidate, new=False))
                else:
                    outcome.failed.append(Failure(candidate.sop_class_uid, candidate.sop_instance_uid,
                                                  reasons.DUPLICATE_SOP_INSTANCE, "held with other content"))
                continue
            expected = listed.get(candidate.sop_instance_uid)
            if expected is not None and expected != candidate.sha256:
                outcome.failed.append(Failure(candidate.sop_class_uid, candidate.sop_instance_uid,
                                              reasons.INTEGRITY_FAILURE, "content does not match the study manifest"))
                continue
            new.append(candidate)
        locations, write_failures = await run_in_threadpool(_write, store, new)
        outcome.failed.extend(write_failures)
        written = [c for c in new if c.sop_instance_uid in locations]
        if written:
            await conn.execute(_INSERT, (
                [c.sop_instance_uid for c in written], [c.key.study_instance_uid for c in written],
                [c.key.series_instance_uid for c in written], [c.sop_class_uid for c in written],
                [c.transfer_syntax_uid for c in written], [len(c.data) for c in written],
                [c.sha256 for c in written], [edge.edge_id] * len(written),
                [patients.get(c.key.study_instance_uid) or c.dicom_patient_id or None for c in written],
                [locations[c.sop_instance_uid] for c in written],
            ))
        outcome.stored.extend(_stored(c, new=True) for c in written)
    for failure in outcome.failed:
        log.warning("dicomweb.instance_refused edge_id=%s sop_instance_uid=%s reason=0x%04X detail=%s",
                    edge.edge_id, failure.sop_instance_uid, failure.reason, failure.detail)
    log.info("dicomweb.stored edge_id=%s new=%d already_held=%d failed=%d", edge.edge_id,
             sum(s.new for s in outcome.stored), sum(not s.new for s in outcome.stored), len(outcome.failed))
    return outcome
