"""deploy.stack settings and endpoints documents, deploy.__main__ output (no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.__main__ import describe
from deploy.mosquitto import MqttCredentials
from deploy.stack import DatabaseEndpoints, DatabaseSettings, Endpoints, MqttEndpoints, MqttSettings, StackSettings
from proto.settings import SettingsError, load_settings


def test_flat_environment_names_point_the_stack_at_existing_servers() -> None:
    settings = load_settings(
        StackSettings,
        environ={
            "TELEMED_DATABASE_URL": "postgresql://app:pw@db:5432/telemed",
            "TELEMED_MQTT_HOST": "broker",
            "TELEMED_MQTT_PORT": "8883",
            "TELEMED_MQTT_PASSWORD": "cloud-pw",
            "TELEMED_EDGES": "county-a,county-b",
            "TELEMED_VAR_DIR": "/srv/var",
        },
    )
    assert settings == StackSettings(
        var_dir=Path("/srv/var"),
        edges=("county-a", "county-b"),
        database=DatabaseSettings(url="postgresql://app:pw@db:5432/telemed"),
        mqtt=MqttSettings(host="broker", port=8883, password="cloud-pw"),
    )


def test_toml_settings(tmp_path: Path) -> None:
    path = tmp_path / "stack.toml"
    path.write_text('edges = ["county-a"]\n[database]\nport = 25432\n[mqtt]\nport = 21883\n')
    settings = load_settings(StackSettings, path=path, environ={})
    assert (settings.database.port, settings.mqtt.port, settings.edges) == (25432, 21883, ("county-a",))
    assert settings.database.url is None and settings.mqtt.host is None


def test_an_edge_id_unusable_in_topics_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="invalid broker username") as info:
        load_settings(StackSettings, environ={"TELEMED_EDGES": "county/a"})
    assert info.value.key == "edges"


def endpoints() -> Endpoints:
    return Endpoints(
        database=DatabaseEndpoints(url="postgresql://telemed:dbsecret@127.0.0.1:25432/telemed", mode="plain",
                                   managed=True, admin_url="postgresql://postgres:admsecret@127.0.0.1:25432/telemed"),
        mqtt=MqttEndpoints(host="127.0.0.1", port=21883, cloud=MqttCredentials("cloud", "mqsecret"), managed=True,
                           edges={"county-a": MqttCredentials("county-a", "edgesecret")}),
    )


def test_endpoints_document_carries_every_login() -> None:
    assert endpoints().to_dict() == {
        "database": {
            "url": "postgresql://telemed:dbsecret@127.0.0.1:25432/telemed",
            "mode": "plain",
            "managed": True,
            "admin_url": "postgresql://postgres:admsecret@127.0.0.1:25432/telemed",
        },
        "mqtt": {
            "host": "127.0.0.1",
            "port": 21883,
            "cloud": {"username": "cloud", "password": "mqsecret"},
            "managed": True,
            "edges": {"county-a": {"username": "county-a", "password": "edgesecret"}},
        },
    }


def test_printed_summary_has_no_password() -> None:
    text = describe(endpoints(), Path("/v/endpoints.json"))
    assert "postgresql://telemed:***@127.0.0.1:25432/telemed" in text
    assert "127.0.0.1:21883" in text and "county-a" in text
    assert not any(secret in text for secret in ("dbsecret", "admsecret", "mqsecret", "edgesecret"))
    assert "hidden" not in repr(MqttCredentials("u", "hidden"))
