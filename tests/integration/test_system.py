"""`make run` end to end: the system launcher brings up the stack, the cloud, two edges with simulated wards
and a modality; the printed logins work, vitals from both county hospitals and the CT study reach the cloud;
Ctrl-C stops everything and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from deploy.children import pid_running

ROOT = Path(__file__).resolve().parents[2]


def _request(url: str, *, token: str | None = None, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            child = int(entry.name)
            found |= {child} | _descendants(child)
    return found


@pytest.mark.timeout(420)
def test_make_run_brings_up_the_whole_system_and_stops_cleanly(tmp_path: Path) -> None:
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
    out_path = tmp_path / "system.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "deploy.system", "--var", str(var), "--speed", "4"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: "telemed is running" in out_path.read_text(), 240, "the system to start")
        text = out_path.read_text()
        endpoints = json.loads((var / "endpoints.json").read_text())
        assert oct((var / "endpoints.json").stat().st_mode & 0o777) == "0o600"
        info = endpoints["system"]
        api = info["api"]
        assert api in text and "dr.wang" in text

        # The printed logins work, and a county doctor sees only their own site's patients.
        admin = _request(f"{api}/api/auth/login",
                         body={"username": "admin", "password": info["logins"]["admin"]["password"]})["token"]
        doctor = _request(f"{api}/api/auth/login",
                          body={"username": "dr.wang", "password": info["logins"]["dr.wang"]["password"]})["token"]

        def sites_with_vitals() -> set[str]:
            patients = _request(f"{api}/api/patients", token=admin)["patients"]
            return {p["site_id"] for p in patients if p["latest"]}

        assert _wait_for(lambda: sites_with_vitals() >= {"anxian", "pingxiang"}, 120, "vitals from both sites")
        own = _request(f"{api}/api/patients", token=doctor)["patients"]
        assert own and {p["site_id"] for p in own} == {"anxian"}

        # The CT study went modality -> edge SCP -> STOW-RS -> cloud DICOMweb.
        studies = _wait_for(lambda: _request(f"{api}/dicomweb/studies", token=admin), 120, "the CT study")
        assert any("CT" in s.get("00080061", {}).get("Value", []) for s in studies)

        # The demo content: an open consultation offered to a matched expert, and who is on call.
        consultations = _wait_for(lambda: _request(f"{api}/api/consultations", token=doctor)["consultations"], 120,
                                  "the demo consultation")
        assert consultations[0]["state"] in ("offered", "requested")
        on_call = _request(f"{api}/api/oncall/now?site=anxian", token=admin)
        assert on_call
        assert "on call now      anxian: primary 赵医生" in text

        # The simulated ward's alerts page the on-call doctor through the signed webhook, shown by the launcher.
        _wait_for(lambda: "PAGE " in out_path.read_text(), 180, "a page to the on-call doctor")
        pages = [line for line in out_path.read_text().splitlines() if " PAGE " in line]
        assert any(" -> 赵医生 (值班) (primary, step 0) 安县人民医院 " in line or
                   " -> 李医生 (平乡) (primary, step 0) 平乡县医院 " in line for line in pages), pages

        # Each edge's status page answers.
        for edge in info["edges"].values():
            with urllib.request.urlopen(edge["status_page"].rstrip("/") + "/healthz", timeout=10) as response:
                assert response.status == 200
        children = _descendants(proc.pid)
        assert len(children) >= 6  # postgres, mosquitto, ingest, api, two edges (and their own children)
    finally:
        proc.send_signal(signal.SIGINT)
        status = proc.wait(timeout=90)
    assert status == 0, out_path.read_text()[-3000:]
    assert _wait_for(lambda: not any(pid_running(pid) for pid in children), 30, "every child to exit")
