"""Strict conversion between wire dictionaries (decoded JSON) and the message dataclasses.

One mechanism for every JSON-bodied message: a dataclass's type hints are its schema. `from_wire`
rejects missing, unknown and mistyped fields with a ValidationError that names the dotted path of
the field ("series[0].instances[2].sha256"), so a dead letter tells an operator exactly what was wrong.
Per-class rules that types cannot express live in a `validate()` method, run after construction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import types
import typing
import uuid
from collections.abc import Mapping
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")

JSONValue = Any  # str | int | float | bool | None | list[JSONValue] | dict[str, JSONValue]


class ValidationError(ValueError):
    """A message field that is missing, unexpected or invalid; `field` is its dotted path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field or '<message>'}: {problem}")
        self.field = field
        self.problem = problem

    def within(self, prefix: str) -> ValidationError:
        """The same error seen from an enclosing structure."""
        path = f"{prefix}.{self.field}" if self.field and not self.field.startswith("[") else f"{prefix}{self.field}"
        return ValidationError(path, self.problem)


def format_time(value: dt.datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z, the only time format on the wire."""
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not allowed on the wire")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp that carries an offset; naive times are rejected."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("timestamp has no UTC offset")
    return value.astimezone(dt.UTC)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def to_wire(obj: Any) -> JSONValue:
    """A message dataclass (or any value inside one) as plain JSON-compatible data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_wire(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dt.datetime):
        return format_time(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, tuple | list):
        return [to_wire(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_wire(v) for k, v in obj.items()}
    return obj


def from_wire(cls: type[T], data: JSONValue) -> T:
    """Build and validate a `cls` instance from wire data; raises ValidationError naming the field."""
    return typing.cast(T, _convert(cls, data, ""))


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return _json_value(value, path)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValidationError(path, "must not be null")
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:
            return _convert(non_null[0], value, path)
        raise TypeError(f"unsupported union {tp}")  # pragma: no cover - schema authoring error
    if value is None:
        raise ValidationError(path, "must not be null")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ValidationError(path, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValidationError(path, "must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        raise TypeError(f"unsupported tuple {tp}")  # pragma: no cover
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, dict):
            raise ValidationError(path, "must be an object")
        value_type = (typing.get_args(tp) or (str, Any))[1]
        return {k: _convert(value_type, v, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ValidationError(path, f"must be one of {choices}, got {value!r}") from None
    if tp is bool:
        if not isinstance(value, bool):
            raise ValidationError(path, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(path, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError(path, "must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValidationError(path, "must be a string")
        return value
    if tp is dt.datetime:
        if not isinstance(value, str):
            raise ValidationError(path, "must be an RFC 3339 timestamp string")
        try:
            return parse_time(value)
        except ValueError as exc:
            raise ValidationError(path, f"invalid timestamp: {exc}") from None
    if tp is uuid.UUID:
        try:
            return uuid.UUID(value)
        except (ValueError, AttributeError, TypeError):
            raise ValidationError(path, "must be a UUID") from None
    raise TypeError(f"unsupported schema type {tp!r} at {path}")  # pragma: no cover


def _dataclass(cls: type, value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise ValidationError(path, "must be an object")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValidationError(f"{path}.{unknown[0]}" if path else unknown[0], "unknown field")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValidationError(sub, "is required")
            continue
        kwargs[name] = _convert(hints[name], value[name], sub)
    try:
        obj = cls(**kwargs)
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate()
    except ValidationError as exc:
        raise exc.within(path) if path else exc from None
    return obj


def _json_value(value: Any, path: str) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(path, "must be a finite number")
        return value
    if isinstance(value, list):
        return [_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _json_value(v, f"{path}.{k}") for k, v in value.items()}
    raise ValidationError(path, f"unsupported value of type {type(value).__name__}")
