"""`telemed-cloud edge add|revoke|list` against the real database and broker: the bundle works end to end,
revocation shuts the edge out at the broker and at ingest (even for messages already queued)."""

from __future__ import annotations

import json
import os
import queue
import stat
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud import cli
from cloud.edges import provision
from cloud.edges.broker import BrokerAdminError, InMemoryBrokerAdmin, MosquittoAdmin
from cloud.settings import CloudSettings
from deploy.mosquitto import MosquittoServer
from deploy.postgres import PostgresEndpoint
from proto import keys
from proto.envelope import CLOUD_SIGNER, SignerKey, open_envelope, seal
from proto.messages import CommitAck
from proto.topics import build, downlink_subscription
from tests.integration.test_ingest_support import TIMEOUT, migrated, query, running_worker, settings_for
from tests.unit.cloud.ingest_messages import ward_batch

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(database: PostgresEndpoint, mosquitto: MosquittoServer, tmp_path: Path) -> CloudSettings:
    migrated(database)
    return settings_for(database, mosquitto, tmp_path / "keys")


@pytest.fixture
def cli_env(settings: CloudSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("TELEMED_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TELEMED_DATABASE__URL", settings.database.url)
    monkeypatch.setenv("TELEMED_MQTT__HOST", settings.mqtt.host)
    monkeypatch.setenv("TELEMED_MQTT__PORT", str(settings.mqtt.port))
    monkeypatch.setenv("TELEMED_MQTT__ADMIN_DIR", str(settings.mqtt.admin_dir))
    monkeypatch.setenv("TELEMED_KEYS__DIR", str(settings.keys.dir))


class BundleEdge:
    """An edge client configured only from its bundle, as the edge service would be."""

    def __init__(self, bundle_dir: Path) -> None:
        self.config: dict[str, Any] = tomllib.loads((bundle_dir / "edge.toml").read_text())
        self.key = keys.read_private(bundle_dir / self.config["keys"]["private_key_file"])
        self.cloud = SignerKey(keys.public_from_text(self.config["keys"]["cloud_public_key"]))
        self.acks: queue.Queue[CommitAck] = queue.Queue()
        self.connack: queue.Queue[Any] = queue.Queue()
        self.sequence = 0

    @property
    def edge_id(self) -> str:
        return str(self.config["edge"]["id"])

    @property
    def site(self) -> str:
        return str(self.config["edge"]["site"])

    def connect(self) -> mqtt.Client:
        mq = self.config["mqtt"]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.edge_id}-{uuid.uuid4().hex[:6]}",
                             protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        client.username_pw_set(mq["username"], mq["password"])
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.connect(mq["host"], mq["port"])
        client.loop_start()
        return client

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connack.put(reason)
        if not reason.is_failure:
            client.subscribe(downlink_subscription(self.site, self.edge_id), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        env = open_envelope(bytes(message.payload), topic=message.topic,
                            keys=lambda s: self.cloud if s == CLOUD_SIGNER else None)
        assert isinstance(env.payload, CommitAck)
        self.acks.put(env.payload)

    def sealed_vitals(self, n: int) -> bytes:
        self.sequence += 1
        return seal(ward_batch(n), edge_id=self.edge_id, sequence=self.sequence, signer=self.key)


@pytest.fixture
def added(cli_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[BundleEdge]:
    out = tmp_path / "bundle"
    edge_id = f"edge-p{uuid.uuid4().hex[:6]}"
    assert cli.main(["edge", "add", "--site", "county-7", "--name", "县医院 Ward 3", "--id", edge_id,
                     "--out", str(out)]) == 0
    assert edge_id in capsys.readouterr().out
    yield BundleEdge(out)


def test_edge_add_writes_a_private_bundle_and_registers_the_public_key(
    added: BundleEdge, settings: CloudSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "bundle"
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    assert stat.S_IMODE((bundle / "edge.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE((bundle / "edge_ed25519.key").stat().st_mode) == 0o600
    cfg = added.config
    assert cfg["edge"] == {"id": added.edge_id, "site": "county-7", "name": "县医院 Ward 3"}
    assert cfg["mqtt"]["username"] == added.edge_id and cfg["mqtt"]["port"] == settings.mqtt.port
    assert len(cfg["mqtt"]["password"]) >= 43 and cfg["mqtt"]["tls"] is False
    rows = query(settings.database.url, "SELECT e.site_id, e.status, e.public_key, s.name FROM edges e "
                                        "JOIN sites s USING (site_id) WHERE edge_id = %s", (added.edge_id,))
    assert rows == [("county-7", "active", keys.public_to_text(added.key.public_key()), "county-7")]
    cloud_key = keys.read_private(settings.keys.cloud_key_path)
    assert cfg["keys"]["cloud_public_key"] == keys.public_to_text(cloud_key.public_key())
    assert stat.S_IMODE(settings.keys.cloud_key_path.stat().st_mode) == 0o600
    assert cli.main(["edge", "list", "--site", "county-7"]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["EDGE", "SITE", "STATUS"]
    assert line.split()[:4] == [added.edge_id, "county-7", "active", "-"]
    assert keys.fingerprint(added.key.public_key()) in line


def test_a_provisioned_edge_gets_its_messages_ingested_and_acked(added: BundleEdge, settings: CloudSettings) -> None:
    client = added.connect()
    try:
        assert not added.connack.get(timeout=TIMEOUT).is_failure
        with running_worker(settings):
            client.publish(build(added.site, added.edge_id, "vitals"), added.sealed_vitals(30), qos=1)
            ack = added.acks.get(timeout=TIMEOUT)
    finally:
        client.disconnect()
        client.loop_stop()

    assert [e.outcome for e in ack.acks] == ["committed"]
    assert query(settings.database.url, "SELECT count(*) FROM vitals WHERE edge_id = %s", (added.edge_id,)) == [(30,)]


def test_revocation_refuses_the_edge_at_the_broker_and_at_ingest(
    added: BundleEdge, settings: CloudSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_worker(settings):
        pass  # the worker's persistent session now exists: messages queue for it while it is down
    client = added.connect()
    assert not added.connack.get(timeout=TIMEOUT).is_failure
    queued = [added.sealed_vitals(5) for _ in range(3)]
    for raw in queued:
        client.publish(build(added.site, added.edge_id, "vitals"), raw, qos=1).wait_for_publish(TIMEOUT)

    assert cli.main(["edge", "revoke", added.edge_id]) == 0
    client.loop_stop()

    refused = added.connect()
    try:
        reason = added.connack.get(timeout=TIMEOUT)
        assert reason.is_failure and reason.value in (0x86, 0x87)  # bad user name or password / not authorised
    finally:
        refused.loop_stop()
    with running_worker(settings):
        deadline = time.monotonic() + TIMEOUT
        # Retained last wills of other tests' edges (up/status) reach every new subscriber: not this test's concern.
        own = " FROM dead_letters WHERE topic NOT LIKE '%/up/status'"
        while query(settings.database.url, "SELECT count(*)" + own)[0][0] < 3:
            assert time.monotonic() < deadline, "queued messages were not processed"
            time.sleep(0.05)

    assert query(settings.database.url, "SELECT reason, raw" + own + " ORDER BY id") == [
        ("revoked_edge", raw) for raw in queued]
    assert query(settings.database.url, "SELECT count(*) FROM vitals") == [(0,)]
    assert added.acks.empty()

    capsys.readouterr()
    assert cli.main(["edge", "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [(e["edge_id"], e["status"]) for e in listing] == [(added.edge_id, "revoked")]


def test_a_failed_add_leaves_nothing_behind(settings: CloudSettings, tmp_path: Path) -> None:
    broker = InMemoryBrokerAdmin()
    address = provision.BrokerAddress("127.0.0.1", 1883)
    with psycopg.connect(settings.database.url, autocommit=True) as conn:
        provision.add_edge(conn, broker, site="s1", name="first", edge_id="edge-one", out_dir=tmp_path / "a",
                           cloud_public_key="x", address=address)
        broker.fail_next = BrokerAdminError("down")
        with pytest.raises(provision.ProvisioningError, match="down"):
            provision.add_edge(conn, broker, site="s2", name="second", edge_id="edge-two", out_dir=tmp_path / "b",
                               cloud_public_key="x", address=address)
        with pytest.raises(provision.ProvisioningError, match="already exists"):
            provision.add_edge(conn, broker, site="s1", name="again", edge_id="edge-one", out_dir=tmp_path / "c",
                               cloud_public_key="x", address=address)
        edges = conn.execute("SELECT edge_id FROM edges").fetchall()
        sites = conn.execute("SELECT site_id FROM sites ORDER BY 1").fetchall()

    assert edges == [("edge-one",)] and sites == [("s1",)]
    assert set(broker.users) == {"edge-one"}
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_mosquitto_admin_of_a_broker_run_by_this_process(mosquitto: MosquittoServer) -> None:
    admin = MosquittoAdmin(mosquitto)
    user = f"edge-m{uuid.uuid4().hex[:6]}"
    admin.add_user(user, "secret-password-1")
    assert mosquitto.credentials(user).password == "secret-password-1"
    assert admin.remove_user(user) is True
    assert admin.remove_user(user) is False
