"""deploy.mosquitto_files: password hashes, ACL and config text."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from deploy.mosquitto_files import (
    InvalidUsernameError,
    TlsListener,
    hash_password,
    parse_password_file,
    render_acl,
    render_config,
    render_password_file,
    validate_username,
    verify_password,
)

# Written by `mosquitto_passwd -b passwd alice s3cret` (mosquitto 2.0.11, Debian 12).
MOSQUITTO_PASSWD_LINE = (
    "alice:$7$101$p1abrpR0+mIJol3W$zJlw2Kzu5z3XliNMhSQiPRgXDB/HSywUSEdMLDb74F/K6T5k7s3sJoWgrnHxza50wH8oPZkZtSIaCtiTr3VmKA=="
)


def test_hash_matches_a_mosquitto_passwd_vector() -> None:
    encoded = parse_password_file(MOSQUITTO_PASSWD_LINE)["alice"]
    salt = base64.b64decode(encoded.split("$")[3])
    assert hash_password("s3cret", salt=salt) == encoded
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3creT", encoded)


def test_fresh_salts_give_distinct_hashes_that_all_verify() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second
    assert first.startswith("$7$101$")
    assert verify_password("pw", first) and verify_password("pw", second)


@pytest.mark.parametrize("encoded", ["", "plain", "$6$101$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!$AAAA"])
def test_malformed_hashes_never_verify(encoded: str) -> None:
    assert not verify_password("pw", encoded)


def test_password_file_round_trip() -> None:
    text = render_password_file({"edge-b": "two", "cloud": "one"})
    entries = parse_password_file(text)
    assert list(entries) == ["cloud", "edge-b"]
    assert verify_password("one", entries["cloud"]) and verify_password("two", entries["edge-b"])


@pytest.mark.parametrize("name", ["county-a", "edge_01", "a", "Site.7", "x" * 64])
def test_valid_usernames(name: str) -> None:
    assert validate_username(name) == name


@pytest.mark.parametrize("name", ["", "edge/a", "edge+", "edge#", "a:b", "-edge", "edge a", "x" * 65, "é"])
def test_usernames_unsafe_in_topics_or_password_file_are_rejected(name: str) -> None:
    with pytest.raises(InvalidUsernameError):
        validate_username(name)


def test_acl_confines_edges_and_opens_telemed_to_the_cloud() -> None:
    lines = [line for line in render_acl("cloud").splitlines() if line and not line.startswith("#")]
    assert lines == [
        "pattern write telemed/v1/+/%u/up/#",
        "pattern read telemed/v1/+/%u/down/#",
        "user cloud",
        "topic readwrite telemed/#",
    ]


def test_config_is_authenticated_loopback_with_persistence(tmp_path: Path) -> None:
    text = render_config(
        host="127.0.0.1", port=21883, password_file=tmp_path / "passwd", acl_file=tmp_path / "acl",
        persistence_dir=tmp_path / "data",
    )
    lines = text.splitlines()
    for expected in (
        "listener 21883 127.0.0.1",
        "allow_anonymous false",
        f"password_file {tmp_path / 'passwd'}",
        f"acl_file {tmp_path / 'acl'}",
        "persistence true",
        f"persistence_location {tmp_path / 'data'}/",
    ):
        assert expected in lines
    assert not any(line.startswith(("cafile", "certfile")) for line in lines)


def test_config_with_a_tls_listener(tmp_path: Path) -> None:
    tls = TlsListener(port=28883, cafile=tmp_path / "ca.pem", certfile=tmp_path / "c.pem", keyfile=tmp_path / "k.pem")
    text = render_config(
        host="127.0.0.1", port=21883, password_file=tmp_path / "p", acl_file=tmp_path / "a",
        persistence_dir=tmp_path / "d", tls=tls,
    )
    tail = text.splitlines()[-7:]
    assert tail == [
        "listener 21883 127.0.0.1",
        "listener 28883 127.0.0.1",
        f"cafile {tmp_path / 'ca.pem'}",
        f"certfile {tmp_path / 'c.pem'}",
        f"keyfile {tmp_path / 'k.pem'}",
        "require_certificate false",
        "tls_version tlsv1.2",
    ]
