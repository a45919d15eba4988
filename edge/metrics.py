"""A tiny Prometheus registry: counters and gauges with labels, rendered in the text exposition format 0.0.4.

Enough for the edge's /metrics endpoint without a dependency. Collectors registered with `add_collector`
run at render time to refresh values that live elsewhere (outbox depth, lifetime totals kept on disk).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterable
from typing import Final, Literal, TypeVar

_NAME: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]
M = TypeVar("M", "Counter", "Gauge")


class MetricError(ValueError):
    """A bad metric or label name, a label set that does not match, or a conflicting re-registration."""


def _escape_label(value: str) -> str:
    # Exposition format: backslash, double quote and line feed are escaped in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


class _Metric:
    kind: Literal["counter", "gauge"]

    def __init__(self, name: str, help_text: str, labelnames: tuple[str, ...]) -> None:
        if not _NAME.match(name):
            raise MetricError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL.match(label) or label.startswith("__"):
                raise MetricError(f"invalid label name {label!r} for {name}")
        self.name = name
        self.help = help_text
        self.labelnames = labelnames
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise MetricError(f"{self.name} takes labels {self.labelnames}, got {tuple(sorted(labels))}")
        return tuple(str(labels[name]) for name in self.labelnames)

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def remove(self, **labels: str) -> None:
        """Forget one labelled series (it disappears from the output)."""
        with self._lock:
            self._values.pop(self._key(labels), None)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        with self._lock:
            items = sorted(self._values.items())
        if not self.labelnames and not items:
            items = [((), 0.0)]
        for key, value in items:
            if key:
                labels = ",".join(f'{n}="{_escape_label(v)}"' for n, v in zip(self.labelnames, key, strict=True))
                yield f"{self.name}{{{labels}}} {_format_value(value)}"
            else:
                yield f"{self.name} {_format_value(value)}"


class Counter(_Metric):
    """A monotonically increasing count (names end in `_total` by convention)."""

    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise MetricError(f"{self.name}: a counter cannot decrease (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set_total(self, value: float, **labels: str) -> None:
        """Mirror a total counted elsewhere (e.g. kept on disk across restarts); it must not go down."""
        key = self._key(labels)
        with self._lock:
            if value < self._values.get(key, 0.0):
                raise MetricError(f"{self.name}: total went down from {self._values[key]} to {value}")
            self._values[key] = float(value)


class Gauge(_Metric):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)


class Registry:
    """Named metrics plus collectors; `render()` is the body of GET /metrics (text/plain; version=0.0.4)."""

    CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._collectors: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def counter(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()) -> Counter:
        return self._register(Counter, name, help_text, labelnames)

    def gauge(self, name: str, help_text: str, labelnames: tuple[str, ...] = ()) -> Gauge:
        return self._register(Gauge, name, help_text, labelnames)

    def add_collector(self, collect: Callable[[], None]) -> None:
        """Run `collect()` before each render to refresh metrics whose values live elsewhere."""
        with self._lock:
            self._collectors.append(collect)

    def render(self) -> str:
        with self._lock:
            collectors = list(self._collectors)
            metrics = list(self._metrics.values())
        for collect in collectors:
            collect()
        lines = [line for metric in metrics for line in metric.render()]
        return "\n".join(lines) + "\n" if lines else ""

    def _register(self, cls: type[M], name: str, help_text: str, labelnames: tuple[str, ...]) -> M:
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if type(existing) is not cls or existing.labelnames != labelnames:
                    raise MetricError(f"metric {name} already registered as {existing.kind} {existing.labelnames}")
                return existing
            metric = cls(name, help_text, labelnames)
            self._metrics[name] = metric
            return metric
