"""Edge service memory: resident set size of `telemed-edge` with 500 simulated wearables (100 patients x 5).

The edge runs as its own process exactly as deployed (`python -m edge --simulate-ward 100 --devices default
--speed 1`): the simulated ward and its radio, the collector with 500 supervised links, the batcher, local
alerting on every sample, the DICOM SCP listening, the HTTP endpoint, and the uplink draining through a private
Mosquitto to an acking in-test cloud. RSS (VmRSS) is sampled every second for the run; the figure is its peak.
Baseline in the same run: an idle interpreter that imported the same modules. Target (issue 4): < 300 MB.
Also recorded: CPU use of the edge process, and samples evaluated per second (from its /metrics).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.mosquitto import MosquittoServer
from deploy.ports import free_loopback_port
from proto import keys
from proto.envelope import SignerKey
from tests.bench.harness import BenchContext
from tests.integration.test_uplink_cloud import FakeCloud

ROOT = Path(__file__).resolve().parents[2]
EDGE_ID = "bench-edge"
SITE = "bench-site"
_TICKS = os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime (proc(5) fields 14, 15)


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _idle_baseline() -> float:
    """RSS of an interpreter that imported what the edge imports, doing nothing."""
    code = "import edge.cli, edge.service, sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    rss = _rss_mb(proc.pid)
    proc.communicate("")
    return rss


def _bundle(directory: Path, host: str, port: int, password: str,
            cloud: Ed25519PrivateKey) -> tuple[Path, int, Ed25519PrivateKey]:
    """An edge config bundle (docs/edge.md) for the benchmark's edge: edge.toml, key, free local ports."""
    directory.mkdir(parents=True)
    edge_key = keys.generate()
    keys.write_private(directory / "edge_ed25519.key", edge_key)
    http_port = free_loopback_port()
    (directory / "edge.toml").write_text("\n".join((
        "[edge]", f'id = "{EDGE_ID}"', f'site = "{SITE}"', 'name = "bench"',
        "[mqtt]", f'host = "{host}"', f"port = {port}", f'username = "{EDGE_ID}"', f'password = "{password}"',
        "[keys]", 'private_key_file = "edge_ed25519.key"',
        f'cloud_public_key = "{keys.public_to_text(cloud.public_key())}"',
        "[http]", f"port = {http_port}", "[dicom]", f"port = {free_loopback_port()}", "")))
    return directory / "edge.toml", http_port, edge_key


def run(ctx: BenchContext) -> None:
    patients = ctx.scale(100, 4)
    duration = ctx.scale(120, 6)
    baseline = _idle_baseline()
    with tempfile.TemporaryDirectory() as tmp, MosquittoServer(Path(tmp) / "broker") as broker:
        creds = broker.add_edge(EDGE_ID)
        cloud_key = keys.generate()
        config, http_port, edge_key = _bundle(Path(tmp) / "edge", broker.host, broker.port, creds.password, cloud_key)
        cloud = FakeCloud(broker.host, broker.port, broker.cloud.username, broker.cloud.password, cloud_key=cloud_key,
                          edges={EDGE_ID: SignerKey(edge_key.public_key(), site=SITE)}).start()
        started = threading.Event()
        argv = [sys.executable, "-m", "edge", "--config", str(config), "--simulate-ward", str(patients),
                "--devices", "default", "--speed", "1", "--seed", "7", "--log-level", "warning"]
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def read_logs() -> None:
            assert proc.stderr is not None
            for _line in proc.stderr:
                pass

        threading.Thread(target=read_logs, daemon=True).start()
        try:
            deadline = time.monotonic() + 60
            while not started.is_set() and time.monotonic() < deadline:
                try:
                    if _metric(http_port, "telemed_devices_connected") >= patients * 5:
                        started.set()
                except OSError:
                    time.sleep(0.5)
            assert started.is_set(), "the edge did not connect every simulated device in time"
            samples0, cpu0, t0 = _metric(http_port, "telemed_alerting_samples_total"), _cpu_s(proc.pid), \
                time.monotonic()
            peak = 0.0
            while time.monotonic() - t0 < duration:
                peak = max(peak, _rss_mb(proc.pid))
                time.sleep(1.0)
            elapsed = time.monotonic() - t0
            final = _rss_mb(proc.pid)
            peak = max(peak, final)
            cpu = (_cpu_s(proc.pid) - cpu0) / elapsed
            rate = (_metric(http_port, "telemed_alerting_samples_total") - samples0) / elapsed
            acked = _metric(http_port, 'telemed_uplink_acked_total{outcome="committed"}')
        finally:
            proc.terminate()
            proc.wait(60)
            cloud.stop()
    devices = patients * 5
    ctx.record(f"edge RSS peak, {devices} simulated devices ({patients} patients x 5), {duration} s at 1x", peak,
               "MB", baseline=baseline, baseline_name="idle interpreter, same imports", target=300.0,
               higher_is_better=False, notes=f"final {final:.0f} MB; {acked:.0f} messages acked by the cloud")
    ctx.record(f"edge CPU, {devices} devices at 1x", cpu * 100, "% of one core", higher_is_better=False)
    ctx.record(f"samples collected and evaluated, {devices} devices", rate, "samples/s")
