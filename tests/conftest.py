"""Shared fixtures: a private PostgreSQL and a private Mosquitto, started once per test session.

A service that cannot start FAILS the tests that need it (never a skip): a missing server binary is a broken
environment, and CI must say so. Tests under tests/integration/ are marked `integration` automatically
(and declare `pytestmark = pytest.mark.integration` themselves too).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from deploy.mosquitto import MosquittoServer
    from deploy.postgres import PostgresEndpoint

# Per-test databases are copies of this one: it holds the extensions of the session's mode, and nobody
# connects to it (CREATE DATABASE ... TEMPLATE requires that).
TEMPLATE_DATABASE = "telemed_template"

_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresEndpoint]:
    """A running private PostgreSQL (ephemeral: fsync off); its `telemed` database endpoint, with `.mode`."""
    from deploy import pgadmin
    from deploy.errors import DeployError
    from deploy.postgres import PostgresServer

    server = PostgresServer(tmp_path_factory.mktemp("postgres") / "data", ephemeral=True)
    try:
        endpoint = server.start()
        admin = endpoint.with_database("postgres").admin_url
        pgadmin.ensure_database(admin, TEMPLATE_DATABASE, owner=endpoint.user)
        if endpoint.mode == "timescale":
            pgadmin.enable_timescaledb(endpoint.with_database(TEMPLATE_DATABASE).admin_url)
    except DeployError as exc:
        server.stop()
        pytest.fail(f"the private PostgreSQL for the tests could not start: {exc}", pytrace=False)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def database(postgres: PostgresEndpoint) -> Iterator[PostgresEndpoint]:
    """A fresh, empty database for one test (owned by the app role), dropped afterwards."""
    from deploy import pgadmin

    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = postgres.with_database("postgres").admin_url
    pgadmin.ensure_database(admin, name, owner=postgres.user, template=TEMPLATE_DATABASE)
    try:
        yield postgres.with_database(name)
    finally:
        pgadmin.drop_database(admin, name)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoServer]:
    """A running private broker: `.host`, `.port`, `.cloud` (credentials), `.add_edge(edge_id)` for an edge's.

    Shared by the session: use edge ids unique to your test.
    """
    from deploy.errors import DeployError
    from deploy.mosquitto import MosquittoServer

    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto") / "broker")
    try:
        server.start()
    except DeployError as exc:
        server.stop()
        pytest.fail(f"the private Mosquitto for the tests could not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
