"""C-STORE receive rate of the edge SCP: instances/s with 8 parallel associations from dcmtk's storescu.

The instance is pydicom's 39 KB CT_small.dcm with fresh UIDs per copy. Each round sends 8 x N distinct
instances, storescu and the receivers run with TCP_NODELAY=1 (../shared/BENCHMARKS.md). Baselines in the same
run: dcmtk's `storescp --ignore` (receives and discards: the ceiling) and, when installed, Orthanc (a PACS that
stores and indexes each instance). The edge SCP writes every instance durably (fsync) and indexes it, with the
edge service's default configuration (`DicomSettings()`); the same SCP with one worker process per core
(`[dicom] scp_workers = -1`) is measured next to it. Target (issue 4): >= 150 instances/s.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from edge.dicom.scp import DicomServer, ScpConfig
from edge.dicom.store import InstanceStore, StoreLimits
from edge.settings import DicomSettings
from tests.bench.harness import BenchContext, median

ASSOCIATIONS = 8
TARGET = 150.0
ENV = dict(os.environ, TCP_NODELAY="1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def make_instances(directory: Path, count: int) -> list[Path]:
    """`count` copies of CT_small.dcm (39 KB) with fresh study/series/instance UIDs, one study per association."""
    source = get_testdata_file("CT_small.dcm")
    if source is None:
        raise RuntimeError("pydicom's CT_small.dcm test file is missing")
    ds = dcmread(source)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        if index % max(1, count // ASSOCIATIONS) == 0:
            ds.StudyInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = directory / f"{index:05d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def send_parallel(port: int, called_aet: str, files: list[Path]) -> float:
    """Instances/s for all `files` sent over ASSOCIATIONS concurrent storescu associations."""
    storescu = shutil.which("storescu")
    if storescu is None:
        raise RuntimeError("dcmtk's storescu is required: apt-get install -y dcmtk")
    share = [files[i::ASSOCIATIONS] for i in range(ASSOCIATIONS)]
    start = time.perf_counter()
    procs = [subprocess.Popen([storescu, "-aet", "BENCH", "-aec", called_aet, "127.0.0.1", str(port), *map(str, s)],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for s in share if s]
    failures = [p.stderr.read().decode()[-300:] if p.stderr else "" for p in procs if p.wait() != 0]
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"storescu failed: {failures[0]}")
    return len(files) / elapsed


_EDGE_CPU_MS: list[float] = []


def _edge_round(files: list[Path], workdir: Path, *, workers: int = DicomSettings().scp_workers) -> float:
    store = InstanceStore(workdir / f"edge-{time.monotonic_ns()}", limits=StoreLimits(min_free_bytes=0))
    server = DicomServer(store, ScpConfig(ae_title="EDGE", port=0, workers=workers))
    server.start()
    try:
        cpu = time.process_time()  # this process runs only the SCP (or its store) meanwhile; storescu are children
        rate = send_parallel(server.address[1], "EDGE", files)
        _EDGE_CPU_MS.append((time.process_time() - cpu) * 1000 / len(files))
        stored = len(store.index.all_paths())
        if stored != len(files):
            raise RuntimeError(f"the edge SCP stored {stored} of {len(files)} instances")
        return rate
    finally:
        server.stop()
        store.close()


def _storescp_round(files: list[Path], workdir: Path) -> float:
    storescp = shutil.which("storescp")
    if storescp is None:
        raise RuntimeError("dcmtk's storescp is required: apt-get install -y dcmtk")
    port = _free_port()
    proc = subprocess.Popen([storescp, "--ignore", "-aet", "BASE", str(port)], env=ENV, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port)
        return send_parallel(port, "BASE", files)
    finally:
        proc.terminate()
        proc.wait(10)


def _orthanc_round(files: list[Path], workdir: Path) -> float:
    orthanc = shutil.which("Orthanc")
    if orthanc is None:
        raise RuntimeError("Orthanc is not installed")
    home = workdir / f"orthanc-{time.monotonic_ns()}"
    home.mkdir()
    port = _free_port()
    config = {"Name": "bench", "StorageDirectory": str(home / "db"), "IndexDirectory": str(home / "db"),
              "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": _free_port(), "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True,
              "Plugins": [], "DicomThreadsCount": ASSOCIATIONS}
    (home / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([orthanc, str(home / "orthanc.json")], env=ENV, cwd=home, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port)
        return send_parallel(port, "ORTHANC", files)
    finally:
        proc.terminate()
        proc.wait(20)


def _measure(receiver: Callable[[list[Path], Path], float], rounds: list[list[Path]], workdir: Path) -> float:
    receiver(rounds[0][: ASSOCIATIONS], workdir)  # warm up (imports, page cache)
    return median([receiver(files, workdir) for files in rounds])


def run(ctx: BenchContext) -> None:
    per_association = ctx.scale(60, 2)
    n_rounds = ctx.scale(3, 1)
    with tempfile.TemporaryDirectory(prefix="bench-cstore-") as tmp:
        workdir = Path(tmp)
        rounds = [make_instances(workdir / f"round{r}", ASSOCIATIONS * per_association) for r in range(n_rounds)]
        ceiling = _measure(_storescp_round, rounds, workdir)
        _EDGE_CPU_MS.clear()
        edge = _measure(_edge_round, rounds, workdir)
        cpu_ms = median(_EDGE_CPU_MS[1:])  # without the warm-up round
        size_kb = rounds[0][0].stat().st_size / 1000
        ctx.record(f"C-STORE receive, {ASSOCIATIONS} associations, {size_kb:.0f} KB CT", edge, "inst/s",
                   baseline=ceiling, baseline_name="storescp --ignore", target=TARGET,
                   notes="edge SCP: fsync'd file + SQLite index per instance")
        ctx.record("C-STORE receive, CPU per instance (edge SCP process)", cpu_ms, "ms", higher_is_better=False,
                   notes=f"one free core would take about {1000 / cpu_ms:.0f} inst/s")
        _EDGE_CPU_MS.clear()
        per_core = _measure(lambda files, work: _edge_round(files, work, workers=-1), rounds, workdir)
        ctx.record(f"C-STORE receive, {ASSOCIATIONS} associations, SCP workers = cores", per_core, "inst/s",
                   baseline=edge, baseline_name="in-process SCP (default)",
                   notes=f"[dicom] scp_workers = -1; store process CPU {median(_EDGE_CPU_MS[1:]):.2f} ms/instance")
        if shutil.which("Orthanc"):
            orthanc = _measure(_orthanc_round, rounds, workdir)
            ctx.record(f"C-STORE receive vs a PACS, {ASSOCIATIONS} associations", edge, "inst/s",
                       baseline=orthanc, baseline_name="Orthanc", target=TARGET)
