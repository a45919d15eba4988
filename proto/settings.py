"""Service settings: a (nested) frozen dataclass filled from a TOML file, then from `TELEMED_*` variables.

Precedence, lowest first: the dataclass defaults, the TOML file, the environment. A nested field
`database.url` is read from the TOML table `[database]` key `url`, and from the environment as
`TELEMED_DATABASE__URL` (double underscore between levels, always unambiguous) or `TELEMED_DATABASE_URL`
(the flat form, offered for every field whose flat name no other field shares).
Environment strings are coerced to the field type:

- `str`, `int`, `float`, `Path`; `bool` from 1/0, true/false, yes/no, on/off (any case);
- `tuple[X, ...]` from a comma-separated list (an empty string is the empty tuple);
- `X | None` from the empty string (None) or an X; `Literal[...]` and `Enum` (by value or by name).

Unknown keys in the TOML file are errors (they are typos); unknown `TELEMED_*` variables are ignored, because
edge and cloud share the prefix. Every error is a `SettingsError` naming the offending key.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["SettingsError", "env_names", "load_settings"]

T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MISSING = object()


class SettingsError(ValueError):
    """A setting is missing, unknown or malformed; `key` is its dotted path (or the file if unparsable)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"setting {key!r}: {message}")
        self.key = key
        self.message = message


def load_settings(
    cls: type[T],
    *,
    path: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    prefix: str = "TELEMED_",
) -> T:
    """Build `cls` from its defaults, the TOML file at `path` (if given) and the environment."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    table = _read_toml(path) if path is not None else {}
    names = env_names(cls, prefix=prefix)
    env = {key: value for key, value in environ.items() if key.startswith(prefix)}
    return typing.cast(T, _build(cls, table, (), _EnvView(env, names), base=None))


def env_names(cls: type[Any], *, prefix: str = "TELEMED_") -> dict[tuple[str, ...], tuple[str, ...]]:
    """Map each leaf field path to the environment variable names that set it (nested form first)."""
    paths = list(_leaf_paths(cls, ()))
    flat_count: dict[str, int] = {}
    for p in paths:
        flat = _flat_name(prefix, p)
        flat_count[flat] = flat_count.get(flat, 0) + 1
    names: dict[tuple[str, ...], tuple[str, ...]] = {}
    for p in paths:
        nested = prefix + "__".join(part.upper() for part in p)
        flat = _flat_name(prefix, p)
        # The flat form is dropped when two fields share it (`a_b.c` and `a.b_c`): only `__` is unambiguous.
        names[p] = (nested,) if flat == nested or flat_count[flat] > 1 else (nested, flat)
    return names


class _EnvView:
    """The prefixed environment, looked up by field path."""

    def __init__(self, env: Mapping[str, str], names: Mapping[tuple[str, ...], tuple[str, ...]]) -> None:
        self._env = env
        self._names = names

    def get(self, path: tuple[str, ...]) -> tuple[str, str] | None:
        """The (variable name, value) setting `path`, or None; conflicting spellings are an error."""
        found = [(name, self._env[name]) for name in self._names.get(path, ()) if name in self._env]
        if len({value for _, value in found}) > 1:
            raise SettingsError(_dotted(path), f"set differently by {found[0][0]} and {found[1][0]}")
        return found[0] if found else None

    def names_hint(self, path: tuple[str, ...]) -> str:
        """The variable names for `path`, for error messages."""
        return " or ".join(self._names.get(path, ()))

    def any_under(self, path: tuple[str, ...]) -> bool:
        """Whether any variable sets a field at or below `path`."""
        return any(p[: len(path)] == path and self.get(p) is not None for p in self._names)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(str(path), "settings file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(str(path), f"invalid TOML: {exc}") from exc
    except OSError as exc:
        raise SettingsError(str(path), f"cannot read settings file: {exc.strerror}") from exc


def _build(
    cls: type[Any], table: Mapping[str, Any], path: tuple[str, ...], env: _EnvView, base: object | None
) -> Any:
    """Instantiate `cls` at `path`; unset fields come from `base` (a default instance) or the defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise SettingsError(_dotted((*path, unknown[0])), f"unknown setting (known: {known})")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        field_path = (*path, name)
        key = _dotted(field_path)
        hint = hints[name]
        default = _default_of(field)
        inherited = getattr(base, name) if base is not None else _MISSING
        if _is_dataclass_type(hint):
            sub = table.get(name, _MISSING)
            if sub is not _MISSING and not isinstance(sub, dict):
                raise SettingsError(key, f"expected a table, got {type(sub).__name__}")
            if sub is _MISSING and not env.any_under(field_path):
                if inherited is not _MISSING:
                    kwargs[name] = inherited
                elif default is _MISSING:
                    kwargs[name] = _build(hint, {}, field_path, env, None)
                continue
            sub_base = inherited if inherited is not _MISSING else (None if default is _MISSING else default)
            kwargs[name] = _build(hint, sub if isinstance(sub, dict) else {}, field_path, env, sub_base)
            continue
        from_env = env.get(field_path)
        if from_env is not None:
            try:
                kwargs[name] = _coerce_env(from_env[1], hint, key)
            except SettingsError as exc:
                raise SettingsError(exc.key, f"{exc.message} (from {from_env[0]})") from None
        elif name in table:
            kwargs[name] = _coerce_toml(table[name], hint, key)
        elif inherited is not _MISSING:
            kwargs[name] = inherited
        elif default is _MISSING:
            where = env.names_hint(field_path)
            raise SettingsError(key, f"required: set it in the settings file or as {where}")
    try:
        return cls(**kwargs)
    except SettingsError:
        raise
    except (TypeError, ValueError) as exc:
        raise SettingsError(_dotted(path) or cls.__name__, str(exc)) from exc


def _coerce_env(raw: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if _is_optional(hint):
        inner = _strip_none(hint, key)
        return None if raw.strip() == "" else _coerce_env(raw, inner, key)
    if origin is tuple:
        item = _homogeneous_item(args, key)
        parts = [part.strip() for part in raw.split(",")] if raw.strip() else []
        return tuple(_coerce_env(part, item, key) for part in parts)
    if origin is typing.Literal:
        for choice in args:
            if raw.strip() == str(choice):
                return choice
        raise SettingsError(key, f"expected one of {', '.join(repr(c) for c in args)}, got {raw!r}")
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise SettingsError(key, f"expected a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")
    if hint is int:
        try:
            return int(raw.strip())
        except ValueError as exc:
            raise SettingsError(key, f"expected an integer, got {raw!r}") from exc
    if hint is float:
        try:
            return float(raw.strip())
        except ValueError as exc:
            raise SettingsError(key, f"expected a number, got {raw!r}") from exc
    if hint is str:
        return raw
    if hint is Path:
        return Path(raw)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _coerce_enum(raw.strip(), hint, key)
    raise SettingsError(key, f"unsupported settings type {hint!r}")


def _coerce_toml(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if _is_optional(hint):
        return _coerce_toml(value, _strip_none(hint, key), key)
    if origin is tuple:
        item = _homogeneous_item(args, key)
        if not isinstance(value, list):
            raise SettingsError(key, f"expected an array, got {type(value).__name__}")
        return tuple(_coerce_toml(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is typing.Literal:
        if value in args and any(type(value) is type(choice) for choice in args):
            return value
        raise SettingsError(key, f"expected one of {', '.join(repr(c) for c in args)}, got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected a boolean, got {type(value).__name__}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SettingsError(key, f"expected an integer, got {type(value).__name__}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise SettingsError(key, f"expected a number, got {type(value).__name__}")
    if hint is str or hint is Path:
        if isinstance(value, str):
            return Path(value) if hint is Path else value
        raise SettingsError(key, f"expected a string, got {type(value).__name__}")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _coerce_enum(value, hint, key)
    raise SettingsError(key, f"unsupported settings type {hint!r}")


def _coerce_enum(value: Any, hint: type[enum.Enum], key: str) -> enum.Enum:
    for member in hint:
        if member.value == value or member.name == value or str(member.value) == str(value):
            return member
    choices = ", ".join(repr(m.value) for m in hint)
    raise SettingsError(key, f"expected one of {choices}, got {value!r}")


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _strip_none(hint: Any, key: str) -> Any:
    rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if len(rest) != 1:
        raise SettingsError(key, f"unsupported union type {hint!r}")
    return rest[0]


def _homogeneous_item(args: tuple[Any, ...], key: str) -> Any:
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    raise SettingsError(key, "only homogeneous tuples (tuple[X, ...]) are supported")


def _leaf_paths(cls: type[Any], path: tuple[str, ...]) -> typing.Iterator[tuple[str, ...]]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        if _is_dataclass_type(hints[field.name]):
            yield from _leaf_paths(hints[field.name], (*path, field.name))
        else:
            yield (*path, field.name)


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return _MISSING


def _is_dataclass_type(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _flat_name(prefix: str, path: tuple[str, ...]) -> str:
    return prefix + "_".join(part.upper() for part in path)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)
