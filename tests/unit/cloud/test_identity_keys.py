"""The identity key ring on disk: creation (0600), loading, reloading, rotation, keys from the environment."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cloud.identity.crypto import KeyRing
from cloud.identity.keys import (
    IdentitySettings,
    KeyFileError,
    KeySource,
    create_ring_file,
    load_identity_settings,
    read_ring_file,
    ring_from_json,
    ring_to_json,
    write_ring_file,
)
from cloud.identity.keystore import KeyMismatchError, compare
from proto.settings import SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_ring_survives_its_file_format() -> None:
    ring = KeyRing.generate().rotated(index=True)
    assert ring_from_json(ring_to_json(ring), source="x") == ring


@pytest.mark.parametrize("text", ["{}", "not json", json.dumps({"format": "telemed.identity-keys.v1"}),
                                  json.dumps({"format": "telemed.identity-keys.v1",
                                              "data": {"current": 1, "keys": {"1": "AAAA"}},
                                              "index": {"current": 1, "keys": {"1": "AAAA"}}})])
def test_malformed_rings_name_their_source(text: str) -> None:
    with pytest.raises(KeyFileError, match="the-source"):
        ring_from_json(text, source="the-source")


def test_created_file_is_private_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "identity_keys.json"
    first = create_ring_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    second = create_ring_file(path)  # a second process starting at the same time
    assert second == first
    assert read_ring_file(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["identity_keys.json"]  # no temporary files left


def test_the_source_creates_only_when_asked(tmp_path: Path) -> None:
    source = KeySource(IdentitySettings(), keys_dir=tmp_path)
    assert not source.exists()
    with pytest.raises(KeyFileError, match="no identity key ring"):
        source.ring()
    ring = source.ring(create=True)
    assert source.path == tmp_path / "identity_keys.json"
    assert source.exists()
    assert source.ring() is ring


def test_the_source_rereads_a_changed_file_after_the_reload_interval(tmp_path: Path) -> None:
    clock = Clock()
    source = KeySource(IdentitySettings(reload_s=5.0), keys_dir=tmp_path, clock=clock)
    first = source.ring(create=True)
    path = tmp_path / "identity_keys.json"
    newer = first.rotated()
    write_ring_file(path, newer)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    clock.now = 1.0
    assert source.ring() is first  # within the interval: no stat at all
    clock.now = 6.0
    assert source.ring() == newer
    assert source.refresh() == newer


def test_rotation_writes_a_new_current_version_and_keeps_the_old(tmp_path: Path) -> None:
    source = KeySource(IdentitySettings(), keys_dir=tmp_path)
    first = source.ring(create=True)
    rotated = source.rotate(index=True)
    assert (rotated.current_data, rotated.current_index) == (2, 2)
    assert rotated.data[1] == first.data[1]
    on_disk = read_ring_file(tmp_path / "identity_keys.json")
    assert on_disk == rotated
    assert stat.S_IMODE((tmp_path / "identity_keys.json").stat().st_mode) == 0o600


def test_keys_from_the_environment_are_read_only(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    settings = load_identity_settings({"TELEMED_IDENTITY__KEYS": ring_to_json(ring), "TELEMED_OTHER": "x"})
    source = KeySource(settings, keys_dir=tmp_path)
    assert source.ring() == ring
    assert source.path is None
    with pytest.raises(KeyFileError, match="secret store"):
        source.rotate()
    assert list(tmp_path.iterdir()) == []


def test_a_key_file_setting_overrides_the_keys_dir(tmp_path: Path) -> None:
    settings = load_identity_settings({"TELEMED_IDENTITY__KEY_FILE": str(tmp_path / "elsewhere.json")})
    source = KeySource(settings, keys_dir=tmp_path / "unused")
    source.ring(create=True)
    assert (tmp_path / "elsewhere.json").exists()
    assert not (tmp_path / "unused").exists()
    with pytest.raises(SettingsError):
        load_identity_settings({"TELEMED_IDENTITY__RELOAD_S": "0"})


def test_a_ring_must_match_the_check_values_the_database_recorded() -> None:
    ring = KeyRing.generate()
    compare(ring, dict(ring.check_values))
    compare(ring.rotated(), dict(ring.check_values))  # a newer ring still holds the recorded versions
    with pytest.raises(KeyMismatchError, match="differs"):
        compare(KeyRing.generate(), dict(ring.check_values))
    with pytest.raises(KeyMismatchError, match="lacks"):
        compare(ring, dict(ring.rotated().check_values))
