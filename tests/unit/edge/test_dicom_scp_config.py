"""The SCP's process layout settings: in the edge process by default, or worker processes."""

from __future__ import annotations

import os

import pytest

from edge.dicom.scp import ScpConfig
from edge.settings import DicomSettings


def test_associations_run_in_process_by_default_and_workers_can_follow_the_cores() -> None:
    assert ScpConfig().worker_count == 0
    assert DicomSettings().scp_workers == ScpConfig().workers  # the service and the bench share the default
    assert ScpConfig(workers=3).worker_count == 3
    assert ScpConfig(workers=-1).worker_count == (os.cpu_count() or 1)


def test_worker_counts_below_minus_one_are_refused() -> None:
    with pytest.raises(ValueError, match="workers"):
        ScpConfig(workers=-2)
    with pytest.raises(ValueError, match="scp_workers"):
        DicomSettings(scp_workers=-2)
