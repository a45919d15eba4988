"""The modality simulator: study generation speed and C-STORE throughput of the SCU on one association.

The SCP is dcmtk's `storescp --ignore` (receives, does not write) on loopback, so the figure is the
SCU's. Baselines in the same run: dcmtk's `storescu` sending the same files on one association
(C++, TCP_NODELAY=1 as ../shared/BENCHMARKS.md advises), and our SCU with Nagle's algorithm left on,
which shows what setting TCP_NODELAY buys on small instances.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from devices.modality.scu import send_study
from devices.modality.studies import Study, generate_ct_study
from devices.modality.syntaxes import SYNTAXES_BY_NAME, encode_instance
from tests.bench.harness import BenchContext

ROUNDS = 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_storescp() -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("storescp")
    if binary is None:
        raise RuntimeError("dcmtk's storescp is not on PATH (apt package dcmtk)")
    port = _free_port()
    env = {**os.environ, "TCP_NODELAY": "1"}
    process = subprocess.Popen([binary, "--ignore", "-aet", "STORESCP", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("storescp did not start")


def _send_rate(port: int, study: Study, *, tcp_nodelay: bool) -> tuple[float, float]:
    """Instances per second, association set-up included (median of rounds), and median per-instance ms."""
    rates, latencies = [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        report = send_study("127.0.0.1", port, "STORESCP", "BENCH", study, tcp_nodelay=tcp_nodelay)
        rates.append(len(report.results) / (time.perf_counter() - started))
        assert report.all_succeeded
        latencies.append(statistics.median(result.seconds for result in report.results) * 1000)
    return statistics.median(rates), statistics.median(latencies)


def _storescu_rate(port: int, study: Study) -> float:
    binary = shutil.which("storescu")
    if binary is None:
        raise RuntimeError("dcmtk's storescu is not on PATH (apt package dcmtk)")
    with tempfile.TemporaryDirectory(prefix="bench-modality-") as directory:
        paths = []
        for index, ds in enumerate(study.instances):
            path = Path(directory) / f"{index:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(str(path))
        env = {**os.environ, "TCP_NODELAY": "1"}
        rates = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            subprocess.run([binary, "-aet", "BENCH", "-aec", "STORESCP", "127.0.0.1", str(port), *paths],
                           env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rates.append(len(paths) / (time.perf_counter() - started))
    return statistics.median(rates)


def run(ctx: BenchContext) -> None:
    matrix = ctx.scale(512, 64)
    slices = ctx.scale(40, 3)
    started = time.perf_counter()
    ct = generate_ct_study(slices=slices, rows=matrix, columns=matrix, seed=1)
    ctx.record(f"CT generation {matrix}x{matrix}", slices / (time.perf_counter() - started), "slices/s")

    sample = ct.instances[: ctx.scale(5, 1)]
    started = time.perf_counter()
    for ds in sample:
        encode_instance(ds, SYNTAXES_BY_NAME["rle"])
    ctx.record(f"RLE encode {matrix}x{matrix} (pydicom native)", (time.perf_counter() - started) / len(sample) * 1000,
               "ms/slice", higher_is_better=False,
               notes="pylibjpeg-rle would replace the pure-Python encoder if installed")

    process, port = _start_storescp()
    try:
        rate, _ = _send_rate(port, ct, tcp_nodelay=True)
        ctx.record(f"C-STORE CT {matrix}x{matrix}, 1 association", rate, "inst/s",
                   baseline=_storescu_rate(port, ct), baseline_name="dcmtk storescu")
        small = generate_ct_study(slices=ctx.scale(30, 3), rows=64, columns=64, seed=2)
        fast_rate, fast_latency = _send_rate(port, small, tcp_nodelay=True)
        nagle_rate, nagle_latency = _send_rate(port, small, tcp_nodelay=False)
        ctx.record("C-STORE 64x64 with TCP_NODELAY", fast_rate, "inst/s",
                   baseline=nagle_rate, baseline_name="Nagle on (pynetdicom default)")
        ctx.record("C-STORE 64x64 median latency", fast_latency, "ms", higher_is_better=False,
                   baseline=nagle_latency, baseline_name="Nagle on (pynetdicom default)")
    finally:
        process.terminate()
        process.wait(timeout=10)
