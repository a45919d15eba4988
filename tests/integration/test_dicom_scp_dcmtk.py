"""The edge's DICOM SCP against dcmtk's tools (storescu, echoscu, findscu), as a third-party modality would talk.

dcmtk is a test requirement (`apt-get install dcmtk`): a missing tool fails these tests, it never skips them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.dicom.scp import DicomServer, ScpConfig
from edge.dicom.store import InstanceStore, StoreLimits
from tests.unit.edge.test_dicom_support import ct_study, dataset_bytes, in_syntax, minimal_instance, part10

pytestmark = pytest.mark.integration

# storescu options that propose a file's own compressed transfer syntax (else it converts to uncompressed).
PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG Baseline
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000
    "1.2.840.10008.1.2.5": "-xr",  # RLE Lossless
    "1.2.840.10008.1.2.1.99": "-xd",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2": "-xb",  # Explicit VR Big Endian
}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"dcmtk's {name} is required for these tests: apt-get install -y dcmtk", pytrace=False)
    return path


def _run(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TCP_NODELAY="1")
    return subprocess.run([_tool(tool), *map(str, args)], capture_output=True, text=True, timeout=60, env=env,
                          check=False)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DicomServer]:
    store = InstanceStore(tmp_path / "edge", limits=StoreLimits(min_free_bytes=0))
    scp = DicomServer(store, ScpConfig(ae_title="EDGE", port=0, allowed_calling_aets=("STORESCU", "FINDSCU",
                                                                                        "ECHOSCU")))
    scp.start()
    yield scp
    scp.stop()
    store.close()


def _address(server: DicomServer) -> tuple[str, str]:
    host, port = server.address
    return host, str(port)


def test_echoscu_and_storescu_of_a_study(server: DicomServer, tmp_path: Path) -> None:
    host, port = _address(server)
    assert _run("echoscu", "-aet", "ECHOSCU", "-aec", "EDGE", host, port).returncode == 0
    study = ct_study(slices=5, seed=21)
    files = []
    for index, ds in enumerate(study.instances):
        path = tmp_path / f"{index}.dcm"
        path.write_bytes(part10(ds))
        files.append(path)
    result = _run("storescu", "-aet", "STORESCU", "-aec", "EDGE", host, port, *files)
    assert result.returncode == 0, result.stderr
    record = server.store.index.study(str(study.study_instance_uid))
    assert record is not None and record.instance_count == 5 and record.modalities == ("CT",)


def test_storescu_from_an_unknown_ae_title_is_rejected(server: DicomServer, tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    path.write_bytes(part10(minimal_instance()))
    result = _run("storescu", "-aet", "STRANGER", "-aec", "EDGE", *_address(server), path)
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr + result.stdout
    assert server.store.used_bytes == 0


def test_storescu_cannot_send_an_unknown_sop_class(server: DicomServer, tmp_path: Path) -> None:
    path = tmp_path / "private.dcm"
    path.write_bytes(part10(minimal_instance(sop_class="1.2.826.0.1.3680043.9.9999.1")))
    result = _run("storescu", "-aet", "STORESCU", "-aec", "EDGE", *_address(server), path)
    assert result.returncode != 0
    assert "no presentation context" in (result.stderr + result.stdout).lower()
    assert server.store.used_bytes == 0


@pytest.mark.parametrize("transfer_syntax", sorted(PROPOSE))
def test_storescu_compressed_and_legacy_syntaxes_are_stored_byte_exact(server: DicomServer, tmp_path: Path,
                                                                       transfer_syntax: str) -> None:
    source = part10(in_syntax(ct_study(slices=1, seed=5).instances[0], transfer_syntax))
    path = tmp_path / "in.dcm"
    path.write_bytes(source)
    result = _run("storescu", PROPOSE[transfer_syntax], "-aet", "STORESCU", "-aec", "EDGE", *_address(server), path)
    assert result.returncode == 0, result.stderr
    [stored] = list(server.store.root.rglob("*.dcm"))
    assert dataset_bytes(stored.read_bytes()) == dataset_bytes(source)


def test_findscu_study_and_series_queries(server: DicomServer, tmp_path: Path) -> None:
    study = ct_study(slices=2, seed=9)
    files = []
    for index, ds in enumerate(study.instances):
        files.append(tmp_path / f"{index}.dcm")
        files[-1].write_bytes(part10(ds))
    host, port = _address(server)
    assert _run("storescu", "-aet", "STORESCU", "-aec", "EDGE", host, port, *files).returncode == 0
    patient_id = str(study.instances[0].PatientID)
    studies = _run("findscu", "-S", "-aet", "FINDSCU", "-aec", "EDGE", host, port, "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"PatientID={patient_id}", "-k", "StudyInstanceUID", "-k", "NumberOfStudyRelatedInstances")
    assert studies.returncode == 0, studies.stderr
    output = studies.stdout + studies.stderr
    assert str(study.study_instance_uid) in output
    assert re.search(r"IS \[2 ?\].*NumberOfStudyRelatedInstances", output)
    series = _run("findscu", "-S", "-aet", "FINDSCU", "-aec", "EDGE", host, port, "-k", "QueryRetrieveLevel=SERIES",
                  "-k", f"StudyInstanceUID={study.study_instance_uid}", "-k", "SeriesInstanceUID", "-k", "Modality")
    assert series.returncode == 0, series.stderr
    assert str(study.instances[0].SeriesInstanceUID) in series.stdout + series.stderr
    none = _run("findscu", "-S", "-aet", "FINDSCU", "-aec", "EDGE", host, port, "-k", "QueryRetrieveLevel=STUDY",
                "-k", "PatientID=NOBODY", "-k", "StudyInstanceUID")
    assert str(study.study_instance_uid) not in none.stdout + none.stderr
