"""`make run`: the whole system on embedded defaults, under var/, until Ctrl-C.

Starts the local stack (private PostgreSQL and Mosquitto), then drives the product through the same
commands an operator would use: `telemed-cloud migrate`, `telemed-cloud edge add` for two county
hospitals (config bundles under var/edges/), `telemed-cloud user add` for the demo logins, the cloud's
ingest workers and API, two `telemed-edge` boxes with simulated wards (one patient deteriorating), and
a modality that sends a CT study to the first edge. Prints the endpoints and logins, writes them to
var/endpoints.json (0600), and supervises the services: a crashed service is restarted with backoff.
The on-call rotas page a local receiver (deploy/pager.py) whose pages are printed as they arrive.
Re-running reuses var/: the same edges, keys, logins and data.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from deploy.children import log_tail
from deploy.errors import DeployError
from deploy.pager import DemoPager, ReceivedPage
from deploy.ports import accepts_connections, free_loopback_port, wait_until
from deploy.stack import Endpoints, Stack, StackSettings
from proto.settings import SettingsError, load_settings

log = logging.getLogger("deploy.system")

PYTHON = sys.executable


@dataclass(frozen=True)
class DemoEdge:
    edge_id: str
    site: str
    site_name: str
    name: str
    patients: int
    scenario: str


@dataclass(frozen=True)
class DemoUser:
    username: str
    roles: tuple[str, ...]
    site: str | None
    display_name: str


DEMO_EDGES = (
    DemoEdge("edge-anxian", "anxian", "安县人民医院", "安县人民医院 ICU 边缘网关", 12, "mix"),
    DemoEdge("edge-pingxiang", "pingxiang", "平乡县医院", "平乡县医院 内科病房 边缘网关", 8, "mix"),
)
DEMO_USERS = (
    DemoUser("admin", ("admin",), None, "系统管理员"),
    DemoUser("dr.wang", ("county_doctor",), "anxian", "王医生 (安县)"),
    DemoUser("dr.li", ("county_doctor", "on_call"), "pingxiang", "李医生 (平乡)"),
    DemoUser("prof.zhang", ("expert",), None, "张教授 (心内科)"),
    DemoUser("prof.chen", ("expert",), None, "陈教授 (呼吸科)"),
    DemoUser("dr.zhao", ("on_call",), None, "赵医生 (值班)"),
)


class Shutdown(BaseException):
    """Raised by SIGINT/SIGTERM so that every service is stopped in order."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Shutdown(signal.Signals(signum).name)


@dataclass
class Service:
    """A supervised child process of the system."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as out:
            out.write(f"--- telemed: {self.name} starting at {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env, start_new_session=True)
        self.started_at = time.monotonic()
        log.info("system.service_started name=%s pid=%s", self.name, self.proc.pid)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("system.service_killed name=%s", self.name)
            self.proc.kill()
            self.proc.wait()

    def supervise(self) -> None:
        """Restart a crashed service with exponential backoff (1 s .. 60 s)."""
        if self.proc is None or self.proc.poll() is None:
            return
        now = time.monotonic()
        if self.next_start == 0.0:
            # A service that ran a while before crashing starts over from the shortest delay.
            if now - self.started_at > 120:
                self.restarts = 0
            delay = min(60.0, 2.0 ** self.restarts)
            self.next_start = now + delay
            log.error("system.service_died name=%s status=%s restart_in_s=%.0f\n%s", self.name,
                      self.proc.returncode, delay, log_tail(self.log_path, 15))
        elif now >= self.next_start:
            self.restarts += 1
            self.next_start = 0.0
            self.start()


@dataclass
class System:
    var_dir: Path
    speed: float
    time_scale: float
    endpoints: Endpoints
    broker_dir: Path
    services: list[Service] = field(default_factory=list)
    api_port: int = 0
    edge_ports: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def cloud_config(self) -> Path:
        return self.var_dir / "cloud" / "cloud.toml"

    def cloud(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "cloud.cli", "--config", str(self.cloud_config), *args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMED_")}
        env["PYTHONUNBUFFERED"] = "1"
        return env


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def write_cloud_config(system: System) -> None:
    """The cloud's settings file: the stack's database and broker, the broker directory for provisioning."""
    db, mqtt = system.endpoints.database, system.endpoints.mqtt
    _write_private(system.cloud_config, "\n".join((
        "# Generated by `make run` (deploy.system) at every start.",
        "[database]", f"url = {_toml_str(db.url)}", "",
        "[mqtt]", f"host = {_toml_str(mqtt.host)}", f"port = {mqtt.port}",
        f"username = {_toml_str(mqtt.cloud.username)}", f"password = {_toml_str(mqtt.cloud.password)}",
        f"admin_dir = {_toml_str(str(system.broker_dir))}", "",
        "[keys]", f"dir = {_toml_str(str(system.var_dir / 'cloud' / 'keys'))}", "",
        "[api]", 'host = "127.0.0.1"', f"port = {system.api_port}", "",
        "[ingest]", "workers = 2", "",
        "[dicom]", f"store_dir = {_toml_str(str(system.var_dir / 'cloud' / 'dicom'))}", "",
    )) + "\n")


def run_command(system: System, argv: list[str], what: str, *, stdin: str | None = None,
                env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=system.env() | (env or {}),
                          timeout=300)
    if done.returncode != 0:
        raise DeployError(f"{what} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def provision_edges(system: System) -> None:
    for edge in DEMO_EDGES:
        bundle = system.var_dir / "edges" / edge.edge_id
        if (bundle / "edge.toml").exists():
            continue
        run_command(system, system.cloud("edge", "add", "--site", edge.site, "--site-name", edge.site_name,
                                         "--name", edge.name, "--id", edge.edge_id, "--out", str(bundle)),
                    f"provisioning {edge.edge_id}")
        log.info("system.edge_provisioned edge=%s bundle=%s", edge.edge_id, bundle)


def ensure_users(system: System) -> dict[str, str]:
    """Create the demo logins once; their generated passwords are kept in var/demo-logins.json (0600)."""
    path = system.var_dir / "demo-logins.json"
    logins: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    for user in DEMO_USERS:
        if user.username in logins:
            continue
        password = secrets.token_urlsafe(9)
        password_file = system.var_dir / "cloud" / f".pw-{user.username}"
        _write_private(password_file, password + "\n")
        try:
            argv = system.cloud("user", "add", "--username", user.username, "--password-file", str(password_file),
                                "--display-name", user.display_name)
            for role in user.roles:
                argv += ["--role", role]
            if user.site:
                argv += ["--site", user.site]
            run_command(system, argv, f"creating user {user.username}")
        finally:
            password_file.unlink(missing_ok=True)
        logins[user.username] = password
        _write_private(path, json.dumps(logins, indent=2) + "\n")
    return logins


def start_services(system: System) -> None:
    logs = system.var_dir / "logs"
    system.services.append(Service("cloud-ingest", system.cloud("ingest"), logs / "cloud-ingest.log", system.env()))
    system.services.append(Service("cloud-alerting", system.cloud("alerting"), logs / "cloud-alerting.log",
                                   system.env()))
    # make run serves plain HTTP on loopback, so the session cookie cannot be Secure-only there.
    api_env = system.env() | {"TELEMED_API__COOKIE_SECURE": "false"}
    system.services.append(Service("cloud-api", system.cloud("serve"), logs / "cloud-api.log", api_env))
    for edge in DEMO_EDGES:
        bundle = system.var_dir / "edges" / edge.edge_id
        ports = {"http": free_loopback_port(), "dicom": free_loopback_port()}
        system.edge_ports[edge.edge_id] = ports
        env = system.env() | {
            "TELEMED_HTTP__PORT": str(ports["http"]),
            "TELEMED_DICOM__PORT": str(ports["dicom"]),
            "TELEMED_DICOM__STOW_URL": f"http://127.0.0.1:{system.api_port}",
            "TELEMED_VIDEO__SYNTHETIC": "true",  # a time-stamped test pattern for video consultations
        }
        seed = zlib.crc32(edge.edge_id.encode()) % 1000
        argv = [PYTHON, "-m", "edge", "--config", str(bundle / "edge.toml"), "--simulate-ward", str(edge.patients),
                "--scenario", edge.scenario, "--speed", str(system.speed), "--seed", str(seed),
                "--time-scale", str(system.time_scale)]
        system.services.append(Service(edge.edge_id, argv, logs / f"{edge.edge_id}.log", env))
    for service in system.services:
        service.start()


def wait_for_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def send_demo_study(system: System) -> None:
    """A CT study from the simulated modality to the first county's edge (once per var/)."""
    marker = system.var_dir / "demo-study-sent"
    if marker.exists():
        return
    edge = DEMO_EDGES[0]
    port = system.edge_ports[edge.edge_id]["dicom"]
    if not wait_until(lambda: accepts_connections("127.0.0.1", port), timeout=60, interval=0.25):
        log.error("system.dicom_not_listening edge=%s port=%d", edge.edge_id, port)
        return
    argv = [PYTHON, "-m", "devices.cli", "modality", "--host", "127.0.0.1", "--port", str(port),
            "--aet", "TELEMED_EDGE", "--study", "ct", "--slices", "40", "--patient-name", "张伟"]
    service = Service("modality-ct", argv, system.var_dir / "logs" / "modality.log", system.env())
    service.start()
    assert service.proc is not None
    if service.proc.wait(timeout=300) == 0:
        marker.touch()
        log.info("system.study_sent edge=%s", edge.edge_id)
    else:
        log.error("system.study_failed\n%s", log_tail(service.log_path, 15))


# Expert profiles for matching: specialties, ICD-10 expertise, title, years, licence region (GB/T 2260).
DEMO_EXPERTS = {
    "prof.zhang": {"specialties": ["cardiology"], "icd10_prefixes": ["I"], "title": "chief", "years_practice": 26,
                   "licence_region": "510000"},
    "prof.chen": {"specialties": ["respiratory", "infectious_disease"], "icd10_prefixes": ["J", "A4"],
                  "title": "associate_chief", "years_practice": 14, "licence_region": "510000"},
}
DEMO_COMPLAINT = "发热、咳嗽3天，今日气促加重，心率快，血压偏低，血氧下降"


def api_call(base: str, path: str, *, token: str | None = None, body: Any = None, method: str | None = None) -> Any:
    """A JSON request to the cloud API (the demo drives the product through its public API)."""
    data = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


@dataclass(frozen=True)
class PagerAddress:
    url: str
    secret: str


def point_pager(system: System, pager: PagerAddress, *, rotas: bool) -> None:
    """Seed the on-call rotas (`rotas`) and point their contact channel at this run's pager."""
    argv = system.cloud("oncall", "seed-demo", "--webhook", pager.url) + ([] if rotas else ["--webhook-only"])
    run_command(system, argv, "on-call rotas", env={"TELEMED_DEMO_WEBHOOK_SECRET": pager.secret})


def seed_demo_content(system: System, logins: dict[str, str], pager: PagerAddress) -> None:
    """Expert profiles, on-call rotas and an open consultation for the deteriorating patient (once per var/)."""
    marker = system.var_dir / "demo-content-seeded"
    if marker.exists():
        point_pager(system, pager, rotas=False)
        return
    base = f"http://127.0.0.1:{system.api_port}"

    def login(username: str) -> str:
        credentials = {"username": username, "password": logins[username]}
        token: str = api_call(base, "/api/auth/login", body=credentials)["token"]
        return token

    try:
        admin = login("admin")
        users = {u["username"]: u["user_id"] for u in api_call(base, "/api/admin/users", token=admin)["users"]}
        for username, profile in DEMO_EXPERTS.items():
            availability = {"languages": ["zh", "en"], "max_concurrent": 4, "on_duty": True, "online": True}
            api_call(base, f"/api/admin/users/{users[username]}/profile", token=admin, method="PUT",
                     body=profile | {"availability": availability})
        point_pager(system, pager, rotas=True)
        doctor = login("dr.wang")
        deadline = time.monotonic() + 120
        patients: list[dict[str, Any]] = []
        while not patients and time.monotonic() < deadline:
            patients = [p for p in api_call(base, "/api/patients", token=doctor)["patients"] if p["latest"]]
            time.sleep(2)
        if not patients:
            raise DeployError("no vitals arrived from the first county's ward")
        patient = max(patients, key=lambda p: (p["news2"] or {}).get("total", 0))
        draft = api_call(base, "/api/consultations", token=doctor, body={
            "patient_id": patient["patient_id"], "urgency": "urgent", "chief_complaint": DEMO_COMPLAINT,
            "specialty": "respiratory", "question": "是否考虑脓毒症？请指导抗感染和液体复苏方案。",
        })
        api_call(base, f"/api/consultations/{draft['consultation_id']}/submit", token=doctor, body={})
        marker.touch()
        log.info("system.demo_seeded consultation=%s", draft["consultation_id"])
    except (urllib.error.URLError, KeyError, DeployError) as exc:
        # The system runs without the demo content; say why instead of stopping.
        log.error("system.demo_seed_failed error=%s", exc)


def on_call_now(system: System, logins: dict[str, str]) -> dict[str, list[str]]:
    """Per site, `tier: person` for whoever is on call now (empty when the API cannot tell)."""
    base = f"http://127.0.0.1:{system.api_port}"
    try:
        token = api_call(base, "/api/auth/login", body={"username": "admin", "password": logins["admin"]})["token"]
        found: dict[str, list[str]] = {}
        for edge in DEMO_EDGES:
            now = api_call(base, f"/api/oncall/now?site={edge.site}", token=token)
            found[edge.site] = [
                f"{tier['tier']} {tier['now']['display_name'] or tier['now']['username']}"
                for department in now["departments"] for tier in department["tiers"] if tier["now"]]
        return found
    except (urllib.error.URLError, KeyError, TypeError) as exc:
        log.error("system.oncall_unknown error=%s", exc)
        return {}


def summary(system: System, logins: dict[str, str], pager: PagerAddress) -> dict[str, Any]:
    api = f"http://127.0.0.1:{system.api_port}"
    return {
        "dashboard": f"{api}/",
        "api": api,
        "api_docs": f"{api}/docs",
        "edges": {
            edge.edge_id: {
                "site": edge.site, "name": edge.name,
                "status_page": f"http://127.0.0.1:{system.edge_ports[edge.edge_id]['http']}/",
                "dicom": f"TELEMED_EDGE@127.0.0.1:{system.edge_ports[edge.edge_id]['dicom']}",
                "bundle": str(system.var_dir / "edges" / edge.edge_id),
            }
            for edge in DEMO_EDGES
        },
        "logins": {u.username: {"password": logins[u.username], "roles": list(u.roles), "site": u.site}
                   for u in DEMO_USERS},
        "on_call": on_call_now(system, logins),
        "pager": pager.url,
        "logs": str(system.var_dir / "logs"),
    }


def describe(info: dict[str, Any], endpoints_path: Path) -> str:
    lines = ["", "telemed is running", f"  dashboard        {info['dashboard']}",
             f"  cloud API        {info['api']}   (OpenAPI: {info['api_docs']})"]
    for edge_id, edge in info["edges"].items():
        lines.append(f"  {edge_id:<16} status {edge['status_page']}   DICOM {edge['dicom']}")
    lines.append("  logins (username / password / roles):")
    for username, login in info["logins"].items():
        site = f" @ {login['site']}" if login["site"] else ""
        lines.append(f"    {username:<12} {login['password']:<14} {', '.join(login['roles'])}{site}")
    for site, tiers in info["on_call"].items():
        lines.append(f"  on call now      {site}: {'; '.join(tiers) or 'nobody'}")
    lines += [f"  pager            {info['pager']}  (signed webhook; pages are printed below as they arrive)",
              f"  logs             {info['logs']}", f"  endpoints        {endpoints_path}  (0600)",
              "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.system", description=__doc__.splitlines()[0])
    parser.add_argument("--var", type=Path, help="state directory (default var/)")
    parser.add_argument("--config", type=Path, help="stack settings TOML (TELEMED_* variables override it)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated ward speed (1 = real time)")
    parser.add_argument("--time-scale", type=float, default=1 / 48,
                        help="compress the scenarios' courses (default 1/48: sepsis deteriorates in about 15 min)")
    parser.add_argument("--no-study", action="store_true", help="do not send the demo CT study")
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    try:
        settings = load_settings(StackSettings, path=args.config)
        if args.var is not None:
            settings = replace(settings, var_dir=args.var)
    except (SettingsError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        with Stack(settings) as stack:
            if stack.mosquitto is None:
                raise DeployError("make run provisions edges on its private broker; unset mqtt.host")
            var_dir = settings.var_dir.absolute()
            system = System(var_dir=var_dir, speed=args.speed, time_scale=args.time_scale, endpoints=stack.endpoints,
                            broker_dir=stack.mosquitto.directory, api_port=free_loopback_port())
            try:
                return run_system(system, stack, send_study=not args.no_study)
            finally:
                # Edges first (they flush to the broker), then the cloud; the servers stop as Stack exits.
                for service in reversed(system.services):
                    service.stop()
    except Shutdown as stop:
        log.info("system.stopped signal=%s", stop)
        return 0
    except DeployError as exc:
        log.error("system.failed error=%s", exc)
        return 1


def run_system(system: System, stack: Stack, *, send_study: bool) -> int:
    """Set up and start every service, print the endpoints, then supervise until a signal."""
    write_cloud_config(system)
    run_command(system, system.cloud("migrate"), "migrations")
    provision_edges(system)
    logins = ensure_users(system)
    start_services(system)
    if not wait_for_http(f"http://127.0.0.1:{system.api_port}/healthz", 90):
        raise DeployError("the cloud API did not come up:\n" + log_tail(system.var_dir / "logs" / "cloud-api.log"))
    if send_study:
        send_demo_study(system)
    with DemoPager(secrets.token_urlsafe(24), PageLog(system.var_dir / "logs" / "pages.log")) as pager:
        address = PagerAddress(pager.url, pager.secret)
        seed_demo_content(system, logins, address)
        info = summary(system, logins, address)
        path = stack.write_endpoints(extra={"system": info})
        print(describe(info, path), flush=True)
        return supervise(system, stack)


class PageLog:
    """Prints each page as it arrives and keeps it in logs/pages.log."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def __call__(self, page: ReceivedPage) -> None:
        line = f"{time.strftime('%H:%M:%S')} {page.line()}"
        print(line, flush=True)
        with self._path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def supervise(system: System, stack: Stack) -> int:
    """Restart crashed services until a signal; 1 when a server of the stack died."""
    while True:
        dead = stack.dead_services()
        if dead:
            log.error("system.server_died servers=%s", ",".join(dead))
            return 1
        for service in system.services:
            service.supervise()
        time.sleep(0.5)

if __name__ == "__main__":
    sys.exit(main())
