"""The Prometheus registry's text format, and the edge settings loaded from a config bundle."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.metrics import MetricError, Registry
from edge.outbox import Lane, Outbox, OutboxPolicy
from edge.settings import MqttSettings, SettingsError, load_edge_settings
from edge.uplink import Uplink
from proto import envelope, keys, topics
from proto.messages import AckEntry, CommitAck

# --- metrics ----------------------------------------------------------------------------------------------


def test_render_is_the_prometheus_text_format() -> None:
    registry = Registry()
    sent = registry.counter("telemed_sent_total", "Messages sent", ("lane",))
    depth = registry.gauge("telemed_depth", "Queued messages")
    sent.inc(lane="vitals")
    sent.inc(2, lane="alerts")
    depth.set(3.5)
    assert registry.render() == (
        "# HELP telemed_sent_total Messages sent\n"
        "# TYPE telemed_sent_total counter\n"
        'telemed_sent_total{lane="alerts"} 2\n'
        'telemed_sent_total{lane="vitals"} 1\n'
        "# HELP telemed_depth Queued messages\n"
        "# TYPE telemed_depth gauge\n"
        "telemed_depth 3.5\n"
    )


def test_label_values_are_escaped() -> None:
    registry = Registry()
    registry.gauge("g", "help\nwith newline", ("reason",)).set(1, reason='say "hi"\\\n')
    text = registry.render()
    assert "# HELP g help\\nwith newline" in text
    assert 'g{reason="say \\"hi\\"\\\\\\n"} 1' in text


def test_collectors_refresh_values_at_render_time() -> None:
    registry = Registry()
    gauge = registry.gauge("queue_depth", "depth")
    source = [1]
    registry.add_collector(lambda: gauge.set(source[0]))
    assert "queue_depth 1\n" in registry.render()
    source[0] = 7
    assert "queue_depth 7\n" in registry.render()


def test_counters_only_go_up_and_labels_must_match() -> None:
    registry = Registry()
    counter = registry.counter("c_total", "c", ("lane",))
    with pytest.raises(MetricError):
        counter.inc(-1, lane="x")
    counter.set_total(5, lane="x")
    with pytest.raises(MetricError):
        counter.set_total(4, lane="x")
    with pytest.raises(MetricError):
        counter.inc(stream="x")
    with pytest.raises(MetricError):
        registry.gauge("c_total", "now a gauge?", ("lane",))
    assert registry.counter("c_total", "c", ("lane",)) is counter
    with pytest.raises(MetricError):
        registry.gauge("bad-name", "x")


# --- settings ---------------------------------------------------------------------------------------------


def write_bundle(directory: Path, extra: str = "", cloud_key: Ed25519PrivateKey | None = None) -> Path:
    """A bundle as `telemed-cloud edge add` writes it (edge-bundle.md), plus optional edge sections."""
    directory.mkdir(parents=True, exist_ok=True)
    keys.write_private(directory / "edge_ed25519.key", keys.generate())
    cloud = keys.public_to_text((cloud_key or keys.generate()).public_key())
    path = directory / "edge.toml"
    path.write_text(
        '[edge]\nid = "edge-01"\nsite = "county-a"\nname = "Ward 3"\n'
        '[mqtt]\nhost = "127.0.0.1"\nport = 18830\nusername = "edge-01"\npassword = "s3cret"\ntls = false\n'
        'cafile = ""\n'
        f'[keys]\nprivate_key_file = "edge_ed25519.key"\ncloud_public_key = "{cloud}"\n' + extra
    )
    return path


def test_a_bundle_loads_with_relative_files_resolved(tmp_path: Path) -> None:
    path = write_bundle(tmp_path / "bundle", '[outbox]\npath = "var/outbox.db"\nmax_bytes = 1000000\nlinger_ms = 2\n')
    settings = load_edge_settings(path, environ={})
    assert (settings.edge.id, settings.edge.site, settings.client_id) == ("edge-01", "county-a", "edge-01")
    assert (settings.mqtt.port, settings.mqtt.username, settings.mqtt.cafile) == (18830, "edge-01", "")
    assert settings.keys.private_key_file == str(tmp_path / "bundle" / "edge_ed25519.key")
    assert settings.outbox.path == tmp_path / "bundle" / "var" / "outbox.db"
    settings.keys.signing_key()  # readable
    settings.keys.cloud_key()
    policy = OutboxPolicy.from_settings(settings.outbox)
    assert (policy.max_bytes, policy.linger_s) == (1_000_000, 0.002)
    assert "s3cret" not in repr(settings)


def test_environment_overrides_the_bundle(tmp_path: Path) -> None:
    path = write_bundle(tmp_path)
    settings = load_edge_settings(path, environ={"TELEMED_MQTT__PORT": "1999", "TELEMED_OUTBOX_MAX_BYTES": "5000",
                                                  "TELEMED_MQTT_TLS": "true", "TELEMED_MQTT_CAFILE": "/etc/ca.pem"})
    assert (settings.mqtt.port, settings.outbox.max_bytes, settings.mqtt.tls) == (1999, 5000, True)
    assert settings.mqtt.cafile == "/etc/ca.pem"


@pytest.mark.parametrize(("extra", "key"), [
    ('[outbox]\nmax_bytes = 0\n', "outbox"),
    ('[outbox]\nmax_byte = 10\n', "outbox.max_byte"),
    ('[mqtt2]\nport = 1\n', "mqtt2"),
])
def test_bad_settings_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    path = write_bundle(tmp_path, extra)
    with pytest.raises(SettingsError) as err:
        load_edge_settings(path, environ={})
    assert err.value.key == key


def test_an_edge_id_must_be_a_topic_segment(tmp_path: Path) -> None:
    path = write_bundle(tmp_path)
    with pytest.raises(SettingsError):
        load_edge_settings(path, environ={"TELEMED_EDGE__ID": "edge/01"})


def test_a_window_needs_room_beyond_the_alert_reserve() -> None:
    assert MqttSettings(inflight_window=4, alerts_reserved=3).inflight_window == 4
    with pytest.raises(ValueError):
        MqttSettings(inflight_window=4, alerts_reserved=4)


def test_an_uplink_wired_from_the_bundle_signs_with_its_key_and_trusts_its_cloud(tmp_path: Path) -> None:
    from tests.unit.edge.test_outbox_queue import alert

    cloud_key = keys.generate()
    settings = load_edge_settings(write_bundle(tmp_path, cloud_key=cloud_key), environ={})
    signer = settings.keys.signing_key()
    with Outbox(settings.outbox.path, edge_id=settings.edge.id, signer=signer,
                policy=OutboxPolicy.from_settings(settings.outbox)) as box:
        uplink = Uplink.from_settings(settings, box)
        try:
            box.enqueue(alert()).result(5)
            [queued] = box.pending(Lane.ALERTS).messages
            topic = topics.build(settings.edge.site, settings.edge.id, "alerts")
            opened = envelope.open_envelope(queued.envelope, topic=topic,
                                            keys={settings.edge.id: envelope.SignerKey(signer.public_key())}.get)
            assert opened.message_id == queued.message_id
            entry = AckEntry(queued.message_id, queued.stream, queued.sequence, "committed")
            ack = envelope.seal(CommitAck((entry,)), edge_id=settings.edge.id, sequence=1, signer=cloud_key)
            uplink.receive(topics.build(settings.edge.site, settings.edge.id, "ack"), ack)
            box.flush(5)
            assert box.depth() == 0
        finally:
            uplink.stop()
