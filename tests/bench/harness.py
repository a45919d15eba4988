"""The benchmark harness behind `make bench`: discovers tests/bench/bench_*.py, runs them, prints a table, writes JSON.

Each benchmark module defines `run(ctx: BenchContext) -> None` and reports figures with `ctx.record(...)`.
Absolute numbers move on shared 2-vCPU machines, so a figure is recorded next to a baseline measured in
the same run where one exists (../shared/BENCHMARKS.md); the ratio is what counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parents[1]


@dataclass
class Figure:
    """One measured figure, optionally with a same-run baseline and a target."""

    bench: str
    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    target: float | None = None
    higher_is_better: bool = True
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.value / self.baseline

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target


@dataclass
class BenchContext:
    """What a benchmark gets: a quick flag (tiny inputs, used by the test that checks benches run) and a recorder."""

    quick: bool = False
    figures: list[Figure] = field(default_factory=list)
    current: str = ""
    services: dict[str, Any] = field(default_factory=dict)

    def record(self, name: str, value: float, unit: str, **extra: Any) -> Figure:
        figure = Figure(bench=self.current, name=name, value=float(value), unit=unit, **extra)
        self.figures.append(figure)
        return figure

    def scale(self, full: int, quick: int) -> int:
        """A workload size: `full` for real runs, `quick` for the smoke test."""
        return quick if self.quick else full


def best_of(fn: Callable[[], float], *, rounds: int = 5, warmup: int = 1) -> list[float]:
    """Run `fn` (which returns a measured figure) warmup + rounds times; return the measured rounds."""
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(rounds)]


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[index]


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def _version(cmd: list[str]) -> str:
    exe = shutil.which(cmd[0])
    if exe is None:
        return "not found"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict[str, Any]:
    from deploy.binaries import find_postgres_bin

    pg_bin = find_postgres_bin()
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgresql": _version([str(pg_bin / "postgres"), "--version"]) if pg_bin else "not found",
        "mosquitto": _version(["mosquitto", "-h"]),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def discover(selected: list[str]) -> list[str]:
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if selected:
        names = [n for n in names if any(s in n for s in selected)]
    return names


def run_all(names: list[str], *, quick: bool) -> tuple[BenchContext, list[str]]:
    ctx = BenchContext(quick=quick)
    failures: list[str] = []
    for name in names:
        ctx.current = name.removeprefix("bench_")
        try:
            module = importlib.import_module(f"tests.bench.{name}")
            module.run(ctx)
        except Exception:
            failures.append(name)
            traceback.print_exc()
    return ctx, failures


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def render_table(figures: list[Figure]) -> str:
    header = ("bench", "figure", "value", "unit", "baseline", "ratio", "target", "ok")
    rows = [header]
    for f in figures:
        ok = f.meets_target
        rows.append((
            f.bench, f.name, _fmt(f.value), f.unit,
            f"{_fmt(f.baseline)} ({f.baseline_name})" if f.baseline is not None else "-",
            f"{f.ratio:.2f}" if f.ratio is not None else "-",
            ("≥ " if f.higher_is_better else "≤ ") + _fmt(f.target) if f.target is not None else "-",
            "-" if ok is None else ("yes" if ok else "NO"),
        ))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("only", nargs="*", help="run only benchmarks whose name contains one of these")
    parser.add_argument("--quick", action="store_true", help="tiny inputs: checks that every benchmark runs")
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    args = parser.parse_args(argv)

    ctx, failures = run_all(discover(args.only), quick=args.quick)
    info = machine_info()
    print(f"\nmachine: {info['cores']} cores, Python {info['python']}, {info['postgresql']}, {info['mosquitto']}")
    print(render_table(ctx.figures))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {
        "machine": info,
        "quick": args.quick,
        "figures": [asdict(f) | {"ratio": f.ratio, "meets_target": f.meets_target} for f in ctx.figures],
        "failures": failures,
    }
    for path in (args.out / f"bench-{stamp}.json", args.out / "latest.json"):
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    print(f"\nwrote {args.out / 'latest.json'}")
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
