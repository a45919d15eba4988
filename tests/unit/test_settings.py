"""proto.settings: defaults < TOML < environment, coercion to field types, errors naming the key."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from proto.settings import SettingsError, env_names, load_settings


class Level(enum.Enum):
    DEBUG = "debug"
    INFO = "info"


@dataclass(frozen=True)
class Database:
    url: str | None = None
    pool_size: int = 4
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Mqtt:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    topics: tuple[str, ...] = ()
    ca_file: Path | None = None


@dataclass(frozen=True)
class Service:
    name: str
    database: Database = field(default_factory=Database)
    mqtt: Mqtt = field(default_factory=lambda: Mqtt(port=8883, tls=True))
    var_dir: Path = Path("var")
    mode: Literal["timescale", "plain"] = "plain"
    level: Level = Level.INFO
    ports: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class Checked:
    port: int = 1883

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")


@dataclass(frozen=True)
class AmbiguousInner:
    c: int = 0


@dataclass(frozen=True)
class Ambiguous:
    a_b: AmbiguousInner = field(default_factory=AmbiguousInner)
    a: AmbiguousBInner = field(default_factory=lambda: AmbiguousBInner())


@dataclass(frozen=True)
class AmbiguousBInner:
    b_c: int = 0


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "telemed.toml"
    path.write_text(text)
    return path


def test_defaults_only_need_required_fields() -> None:
    settings = load_settings(Service, environ={"TELEMED_NAME": "cloud"})
    assert settings == Service(name="cloud")
    # A nested default built by a factory keeps its own values (not the nested class defaults).
    assert settings.mqtt == Mqtt(port=8883, tls=True)


def test_toml_then_environment_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name = "edge-a"
var_dir = "/srv/telemed"
[database]
url = "postgresql://toml"
pool_size = 8
[mqtt]
host = "broker.example"
topics = ["a/#", "b/+"]
""",
    )
    settings = load_settings(
        Service,
        path=path,
        environ={"TELEMED_DATABASE__URL": "postgresql://env", "TELEMED_MQTT_PORT": "1884", "OTHER": "x"},
    )
    assert settings.name == "edge-a"
    assert settings.var_dir == Path("/srv/telemed")
    assert settings.database == Database(url="postgresql://env", pool_size=8, timeout_s=5.0)
    # Unset nested keys fall back to the field's default instance (tls=True), not to Mqtt's class default.
    assert settings.mqtt == Mqtt(host="broker.example", port=1884, tls=True, topics=("a/#", "b/+"))


def test_environment_coercion_of_every_supported_type() -> None:
    settings = load_settings(
        Service,
        environ={
            "TELEMED_NAME": "x",
            "TELEMED_DATABASE__TIMEOUT_S": "2.5",
            "TELEMED_MQTT__TLS": "Yes",
            "TELEMED_MQTT__TOPICS": " a/# , b ",
            "TELEMED_MQTT__CA_FILE": "/etc/ca.pem",
            "TELEMED_MODE": "timescale",
            "TELEMED_LEVEL": "DEBUG",
            "TELEMED_PORTS": "",
        },
    )
    assert settings.database.timeout_s == 2.5
    assert settings.mqtt.tls is True
    assert settings.mqtt.topics == ("a/#", "b")
    assert settings.mqtt.ca_file == Path("/etc/ca.pem")
    assert settings.mode == "timescale"
    assert settings.level is Level.DEBUG
    assert settings.ports == ()


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("off", False), ("TRUE", True), ("no", False)])
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert load_settings(Mqtt, environ={"TELEMED_TLS": raw}).tls is expected


def test_empty_string_clears_an_optional() -> None:
    settings = load_settings(Database, environ={"TELEMED_URL": ""})
    assert settings.url is None


def test_custom_prefix() -> None:
    settings = load_settings(Mqtt, environ={"EDGE_PORT": "2000", "TELEMED_PORT": "3000"}, prefix="EDGE_")
    assert settings.port == 2000


@pytest.mark.parametrize(
    ("environ", "key", "fragment"),
    [
        ({"TELEMED_MQTT__PORT": "eighty"}, "mqtt.port", "expected an integer"),
        ({"TELEMED_MQTT__TLS": "maybe"}, "mqtt.tls", "expected a boolean"),
        ({"TELEMED_MODE": "fast"}, "mode", "expected one of"),
        ({"TELEMED_LEVEL": "loud"}, "level", "expected one of"),
        ({"TELEMED_PORTS": "1,x"}, "ports", "expected an integer"),
        ({"TELEMED_DATABASE__TIMEOUT_S": "soon"}, "database.timeout_s", "expected a number"),
    ],
)
def test_bad_environment_values_name_the_key(environ: dict[str, str], key: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Service, environ={"TELEMED_NAME": "x", **environ})
    assert info.value.key == key
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("toml", "key", "fragment"),
    [
        ('name = "x"\n[mqtt]\nport = "1883"', "mqtt.port", "expected an integer"),
        ('name = "x"\n[mqtt]\ntls = 1', "mqtt.tls", "expected a boolean"),
        ('name = "x"\n[mqtt]\nhots = "typo"', "mqtt.hots", "unknown setting"),
        ('name = "x"\nmqtt = "broker"', "mqtt", "expected a table"),
        ('name = "x"\n[mqtt]\ntopics = ["a", 2]', "mqtt.topics[1]", "expected a string"),
        ('name = "x"\n[database]\npool_size = true', "database.pool_size", "expected an integer"),
        ("name = 3", "name", "expected a string"),
    ],
)
def test_bad_toml_values_name_the_key(tmp_path: Path, toml: str, key: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Service, path=write(tmp_path, toml), environ={})
    assert info.value.key == key
    assert fragment in info.value.message


def test_toml_integer_is_accepted_for_a_float(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "x"\n[database]\ntimeout_s = 3')
    settings = load_settings(Service, path=path, environ={})
    assert settings.database.timeout_s == 3.0
    assert isinstance(settings.database.timeout_s, float)


def test_missing_required_field_names_the_variables() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Service, environ={})
    assert info.value.key == "name"
    assert "TELEMED_NAME" in info.value.message


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not found"):
        load_settings(Service, path=tmp_path / "absent.toml", environ={})
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings(Service, path=write(tmp_path, "name = "), environ={})


def test_validation_in_post_init_becomes_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="port out of range"):
        load_settings(Checked, environ={"TELEMED_PORT": "70000"})


def test_nested_and_flat_spellings_must_agree() -> None:
    same = load_settings(Mqtt, environ={"TELEMED_PORT": "1", "TELEMED_TLS": "1"})
    assert same.port == 1
    with pytest.raises(SettingsError, match="set differently") as info:
        environ = {"TELEMED_NAME": "x", "TELEMED_MQTT__PORT": "1", "TELEMED_MQTT_PORT": "2"}
        load_settings(Service, environ=environ)
    assert info.value.key == "mqtt.port"


def test_ambiguous_flat_names_are_not_offered() -> None:
    names = env_names(Ambiguous)
    assert names[("a_b", "c")] == ("TELEMED_A_B__C",)
    assert names[("a", "b_c")] == ("TELEMED_A__B_C",)
    # TELEMED_A_B_C would fit both fields, so it sets neither.
    settings = load_settings(Ambiguous, environ={"TELEMED_A_B_C": "5", "TELEMED_A__B_C": "7"})
    assert settings == Ambiguous(a_b=AmbiguousInner(c=0), a=AmbiguousBInner(b_c=7))


def test_only_dataclasses_are_accepted() -> None:
    with pytest.raises(TypeError):
        load_settings(dict, environ={})
