"""Edge registry cache, config bundle, cloud key file and the cloud settings (pure or local files only)."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from cloud.edges import cloud_key
from cloud.edges.bundle import BundleError, BundleSpec, render_edge_toml, write_bundle
from cloud.edges.registry import EdgeRecord, EdgeRegistry
from cloud.settings import CloudSettings, load
from proto import keys
from proto.settings import SettingsError


class Source:
    def __init__(self, *records: EdgeRecord) -> None:
        self.records = list(records)
        self.calls = 0

    def __call__(self) -> list[EdgeRecord]:
        self.calls += 1
        return list(self.records)


def record(edge_id: str, status: str = "active", site: str = "s1") -> EdgeRecord:
    return EdgeRecord(edge_id, site, keys.public_to_text(keys.generate().public_key()), status)  # type: ignore[arg-type]


def test_registry_serves_from_cache_until_the_ttl() -> None:
    now = [0.0]
    source = Source(record("e1"))
    registry = EdgeRegistry(source, ttl_s=5, unknown_refresh_s=1, clock=lambda: now[0])

    assert registry("e1") is not None and registry("e1") is not None
    assert source.calls == 1
    source.records[0] = record("e1", "revoked")
    now[0] = 4.9
    assert registry("e1") is not None and not registry("e1").revoked  # type: ignore[union-attr]
    now[0] = 5.0
    entry = registry("e1")
    assert entry is not None and entry.revoked and source.calls == 2


def test_an_unknown_edge_triggers_a_refresh_at_most_once_per_interval() -> None:
    now = [0.0]
    source = Source()
    registry = EdgeRegistry(source, ttl_s=60, unknown_refresh_s=1, clock=lambda: now[0])
    assert registry("new") is None
    source.records.append(record("new", site="s9"))

    now[0] = 0.5
    assert registry("new") is None  # a flood of unknown-edge messages costs one query per interval
    now[0] = 1.0
    entry = registry("new")
    assert entry is not None and entry.site == "s9"
    assert source.calls == 2


def test_observed_rows_override_the_cache_at_once() -> None:
    registry = EdgeRegistry(Source(record("e1"), record("e2")), ttl_s=3600)
    assert registry("e1") is not None

    registry.observe(["e1", "e2"], [record("e1", "revoked")])

    entry = registry.lookup("e1")
    assert entry is not None and entry.revoked
    assert registry._entries.get("e2") is None


def test_a_malformed_public_key_makes_the_edge_unknown() -> None:
    registry = EdgeRegistry(Source(EdgeRecord("bad", "s1", "not-base64!", "active")))

    assert registry("bad") is None


SPEC = BundleSpec(edge_id="edge-7", site="county-7", name='县医院 "北" ward\\3', mqtt_host="127.0.0.1",
                  mqtt_port=18830, password="p@ss/word=", cloud_public_key="Q0xPVUQ=")


def test_edge_toml_parses_back_to_the_bundle_contract() -> None:
    config = tomllib.loads(render_edge_toml(SPEC))

    assert config == {
        "edge": {"id": "edge-7", "site": "county-7", "name": '县医院 "北" ward\\3'},
        "mqtt": {"host": "127.0.0.1", "port": 18830, "username": "edge-7", "password": "p@ss/word=", "tls": False,
                 "cafile": ""},
        "keys": {"private_key_file": "edge_ed25519.key", "cloud_public_key": "Q0xPVUQ="},
    }
    assert "p@ss" not in repr(SPEC)


def test_bundle_files_are_private(tmp_path: Path) -> None:
    key = keys.generate()
    path = write_bundle(tmp_path / "b", SPEC, key)

    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b" / "edge_ed25519.key").stat().st_mode) == 0o600
    assert keys.private_to_text(keys.read_private(tmp_path / "b" / "edge_ed25519.key")) == keys.private_to_text(key)


def test_an_existing_bundle_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "edge.toml").write_text("precious")

    with pytest.raises(BundleError, match="not an empty directory"):
        write_bundle(tmp_path / "b", SPEC, keys.generate())
    assert (tmp_path / "b" / "edge.toml").read_text() == "precious"


def test_the_cloud_key_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "cloud_ed25519.key"

    first = cloud_key.load_or_create(path)
    second = cloud_key.load_or_create(path)

    assert keys.private_to_text(first) == keys.private_to_text(second)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["cloud_ed25519.key"]


def test_a_cloud_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cloud_ed25519.key"
    cloud_key.load_or_create(path)
    os.chmod(path, 0o644)

    with pytest.raises(cloud_key.CloudKeyError, match="chmod 600"):
        cloud_key.load(path)


def test_settings_come_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "cloud.toml"
    config.write_text('[database]\nurl = "postgresql://file"\n[ingest]\nworkers = 4\n[partitions]\nahead_days = 3\n')

    settings = load(config, environ={"TELEMED_INGEST__WORKERS": "6", "TELEMED_MQTT_PORT": "18830",
                                     "TELEMED_KEYS__DIR": "/srv/keys"})

    assert settings.require_database() == "postgresql://file"
    assert (settings.ingest.workers, settings.mqtt.port, settings.partitions.ahead_days) == (6, 18830, 3)
    assert settings.keys.cloud_key_path == Path("/srv/keys/cloud_ed25519.key")
    assert settings.ingest.client_id(2).endswith("-2")


def test_settings_errors_name_the_key() -> None:
    with pytest.raises(SettingsError, match=r"database\.url"):
        CloudSettings().require_database()
    with pytest.raises(SettingsError, match="ingest"):
        load(environ={"TELEMED_INGEST__RECEIVE_MAXIMUM": "0"})
