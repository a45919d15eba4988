"""Server child processes: spawned as a service account, tied to our lifetime, stopped by signal escalation.

Every child gets PR_SET_PDEATHSIG (prctl(2)), so when the launcher dies, even by SIGKILL, the kernel signals
the child and it shuts down instead of living on as an orphan. The kernel clears that setting when a process
changes credentials, so it is set in `preexec_fn`, which subprocess runs after switching user. Note that
the signal fires when the *thread* that spawned the child exits: spawn servers from a long-lived thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from deploy.accounts import ServiceUser
from deploy.errors import ServiceStartError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

# A stop plan: send each signal in turn, waiting up to the given seconds for the process to exit.
StopPlan = Sequence[tuple[signal.Signals, float]]

_LOG_MARKER = "--- telemed deploy: starting"

# Resolved once in the parent so the forked child only makes the call (nothing to import or look up there).
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def _tie_to_parent(death_signal: int, parent_pid: int) -> Callable[[], None]:
    def hook() -> None:
        if _prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl; then nobody would ever signal us.
        if os.getppid() != parent_pid:
            os._exit(125)

    return hook


def spawn(
    argv: Sequence[str],
    *,
    service: str,
    log_path: Path,
    user: ServiceUser | None,
    cwd: Path,
    env: Mapping[str, str],
    death_signal: signal.Signals,
) -> subprocess.Popen[bytes]:
    """Start a server child in its own session, output appended to `log_path` after a start marker."""
    # 0600: server logs may quote SQL statements, which may carry clinical data.
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "ab") as log_file:
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        log_file.write(f"{_LOG_MARKER} {service} at {stamp} ---\n".encode())
        log_file.flush()
        try:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                # Own session: a Ctrl-C in the terminal reaches the launcher only, which stops children in order.
                start_new_session=True,
                preexec_fn=_tie_to_parent(death_signal, os.getpid()),
                **(user.popen_kwargs() if user else {}),
            )
        except OSError as exc:
            raise ServiceStartError(service, f"cannot execute {argv[0]}: {exc.strerror}") from exc


def run_tool(
    argv: Sequence[str],
    *,
    service: str,
    user: ServiceUser | None,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
) -> str:
    """Run a short-lived tool (initdb) to completion as `user`; its output, or `ServiceStartError`."""
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=cwd,
            env=dict(env),
            timeout=timeout,
            preexec_fn=_tie_to_parent(signal.SIGKILL, os.getpid()),
            **(user.popen_kwargs() if user else {}),
        )
    except subprocess.TimeoutExpired as exc:
        raise ServiceStartError(service, f"{Path(argv[0]).name} timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise ServiceStartError(service, f"cannot execute {argv[0]}: {exc.strerror}") from exc
    output = f"{done.stdout}{done.stderr}".strip()
    if done.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise ServiceStartError(service, f"{Path(argv[0]).name} exited with {done.returncode}", tail)
    return output


def stop_child(proc: subprocess.Popen[bytes], plan: StopPlan) -> int | None:
    """Stop our child by escalating through `plan`; its exit status (None if it would not die)."""
    for sig, wait_s in plan:
        if proc.poll() is not None:
            break
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


def stop_pid(pid: int, plan: StopPlan) -> bool:
    """Stop a process that is not our child (a leftover from a crashed launcher); whether it is gone."""
    for sig, wait_s in plan:
        if not pid_running(pid):
            return True
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and pid_running(pid):
            time.sleep(0.05)
    return not pid_running(pid)


def pid_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except PermissionError:
        return True
    return fields[0] not in ("Z", "X")


def pid_cmdline(pid: int) -> list[str]:
    """The argument vector of `pid` ([] if gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_cwd(pid: int) -> Path | None:
    """The working directory of `pid` (None if gone or unreadable)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def processes() -> Iterator[int]:
    """The pids of all processes we can see."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def read_pid_file(path: Path) -> int | None:
    """The pid on the first line of `path` (None when absent or malformed)."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except OSError:
        return None
    return int(first) if first.isdigit() else None


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines a server wrote to `path` since its latest start marker."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    start = text.rfind(_LOG_MARKER)
    if start >= 0:
        text = text[start:].split("\n", 1)[1] if "\n" in text[start:] else ""
    return "\n".join(text.strip().splitlines()[-lines:])


def server_env(**extra: str) -> dict[str, str]:
    """A minimal, predictable environment for server children (no inherited PG*/TELEMED_* variables)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C", "LANG": "C"}
    env.update(extra)
    return env
