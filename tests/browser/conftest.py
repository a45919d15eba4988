"""Browser tests: the real cloud service (uvicorn on a free port, the fixture PostgreSQL, migrations, the demo
world of tests/browser/demo.py) driven by Debian's Chromium through Playwright, headless. Screenshots are
saved under var/artifacts/screenshots/ as test artefacts.

Chromium comes from the system package (`apt-get install chromium`, done by `make setup`); Playwright's own
browser download is never used.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, sync_playwright

from cloud.api.app import create_app
from cloud.api.policy import ApiPolicy
from cloud.db.migrate import migrate
from cloud.settings import CloudSettings, DatabaseSettings, DicomSettings, KeysSettings
from deploy.postgres import PostgresEndpoint
from tests.browser.demo import PASSWORD, Demo, seed
from tests.integration.test_api_support import scratch_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "screenshots"
TIMEOUT_MS = 15_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def demo(postgres: PostgresEndpoint, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The cloud service on a free port with the demo world seeded through its APIs and the ingest writer."""
    root = tmp_path_factory.mktemp("cloud")
    with scratch_database(postgres) as db:
        with psycopg.connect(db.url, autocommit=True) as conn:
            migrate(conn)
        settings = CloudSettings(database=DatabaseSettings(url=db.url, pool_min=1, pool_max=8),
                                 dicom=DicomSettings(store_dir=root / "dicom"), keys=KeysSettings(dir=root / "keys"))
        app = create_app(settings, policy=ApiPolicy(cookie_secure=False))
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, name="cloud-api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("the cloud service did not start", pytrace=False)
            time.sleep(0.05)
        try:
            yield seed(f"http://127.0.0.1:{port}", db.url)
        finally:
            server.should_exit = True
            thread.join(15)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (make setup does)", pytrace=False)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class PageProblems:
    """What went wrong inside the page: uncaught errors and Content-Security-Policy violations."""

    errors: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        text = message.text
        if message.type == "error" and ("Content Security Policy" in text or "Refused to" in text):
            self.errors.append(text)

    def page_error(self, error: Exception) -> None:
        self.errors.append(str(error))


@dataclass
class Session:
    """A browser context for one user, its page and its problems."""

    context: BrowserContext
    page: Page
    problems: PageProblems
    base_url: str
    test_name: str

    def login(self, username: str, *, locale: str = "zh-CN") -> None:
        self.page.goto(self.base_url + "/")
        self.page.evaluate("locale => localStorage.setItem('telemed.locale', locale)", locale)
        self.page.reload()
        self.page.fill("#username", username)
        self.page.fill("#password", PASSWORD)
        self.page.click("#login-submit")
        self.page.wait_for_selector("#topbar:not([hidden])")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.test_name}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def session_factory(browser: Browser, demo: Demo, request: pytest.FixtureRequest) -> Iterator[Callable[..., Session]]:
    """Opens browser sessions (one per user) for a test; asserts at the end that no page had problems."""
    opened: list[Session] = []
    test_name = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)

    def open_session(label: str = "") -> Session:
        context = browser.new_context(viewport={"width": 1440, "height": 960}, accept_downloads=True,
                                      timezone_id="Asia/Shanghai")
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        problems = PageProblems()
        page.on("console", problems.console)
        page.on("pageerror", problems.page_error)
        session = Session(context, page, problems, demo.base_url, f"{test_name}{'-' + label if label else ''}")
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        session.context.close()
    problems = [e for s in opened for e in s.problems.errors]
    assert not problems, f"page errors or CSP violations: {problems}"
