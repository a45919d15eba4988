"""deploy.pgconfig: the generated PostgreSQL configuration."""

from __future__ import annotations

from pathlib import Path

from deploy.pgconfig import INCLUDE_LINE, ClusterConfig, render_conf, render_hba, with_include


def settings(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_durable_cluster_listens_on_loopback_and_keeps_fsync() -> None:
    conf = settings(render_conf(ClusterConfig(port=25432, socket_dir=Path("/v/pg"), ephemeral=False,
                                              preload_timescaledb=False)))
    assert conf["listen_addresses"] == "'127.0.0.1'"
    assert conf["port"] == "25432"
    assert conf["unix_socket_directories"] == "'/v/pg'"
    assert "fsync" not in conf and "full_page_writes" not in conf
    assert "shared_preload_libraries" not in conf


def test_ephemeral_cluster_trades_durability_for_speed() -> None:
    conf = settings(render_conf(ClusterConfig(port=1, socket_dir=Path("/t"), ephemeral=True,
                                              preload_timescaledb=False)))
    assert (conf["fsync"], conf["synchronous_commit"], conf["full_page_writes"]) == ("off", "off", "off")


def test_timescaledb_is_preloaded_when_installed() -> None:
    conf = settings(render_conf(ClusterConfig(port=1, socket_dir=Path("/t"), ephemeral=False,
                                              preload_timescaledb=True)))
    assert conf["shared_preload_libraries"] == "'timescaledb'"


def test_quotes_in_paths_are_doubled() -> None:
    conf = settings(render_conf(ClusterConfig(port=1, socket_dir=Path("/o'brien"), ephemeral=False,
                                              preload_timescaledb=False)))
    assert conf["unix_socket_directories"] == "'/o''brien'"


def test_hba_allows_only_scram_logins() -> None:
    rules = [line.split() for line in render_hba().splitlines() if line and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules)
    assert {rule[0] for rule in rules} == {"local", "host"}


def test_include_line_is_appended_once() -> None:
    once = with_include("max_connections = 100\n")
    assert once.splitlines().count(INCLUDE_LINE) == 1
    assert with_include(once) == once
