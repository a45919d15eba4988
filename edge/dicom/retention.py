"""Local retention: the edge keeps a study for a while after the cloud confirmed all of it, then deletes it.

Only studies whose every instance the cloud confirmed (and which no instance reopened since their last
manifest) qualify, `keep_days` after the last confirmation. Rows go first, in one transaction with the
check, then files: a crash in between leaves files that `InstanceStore.reconcile` re-indexes and that are
uploaded again (the cloud is idempotent), never rows pointing at nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from edge.dicom.store import InstanceStore

log = logging.getLogger(__name__)

DAY_S = 86_400.0


@dataclass(frozen=True)
class SweepReport:
    studies: int
    instances: int
    bytes_freed: int


def sweep_retention(store: InstanceStore, *, now: float, keep_days: float) -> SweepReport:
    """Delete the studies whose last cloud confirmation is more than `keep_days` before `now` (Unix seconds)."""
    if keep_days < 0:
        raise ValueError("keep_days must not be negative")
    cutoff = now - keep_days * DAY_S
    studies = instances = freed = 0
    for study_uid in store.index.studies_confirmed_before(cutoff):
        paths = store.index.retire_study(study_uid, cutoff=cutoff)
        if paths is None:  # an instance arrived since the query
            continue
        freed += store.remove_files(paths)
        studies += 1
        instances += len(paths)
        log.info("dicom.retention.deleted study_instance_uid=%s instances=%d", study_uid, len(paths))
    return SweepReport(studies=studies, instances=instances, bytes_freed=freed)
