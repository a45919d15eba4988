"""Free loopback ports and waiting for a server to accept connections."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

LOOPBACK = "127.0.0.1"

# Below Linux's default ephemeral range (32768-60999, net.ipv4.ip_local_port_range), so a port we pick is
# not also handed out as the source port of some outgoing connection before our server binds it.
_PICK_RANGE = (20000, 32000)
_PICK_ATTEMPTS = 50


def is_port_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a TCP listener could bind `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_loopback_port(host: str = LOOPBACK, *, avoid: frozenset[int] = frozenset()) -> int:
    """A TCP port that is free on `host` now (the caller binds it soon; a retry covers the rare race)."""
    rng = random.SystemRandom()
    for _ in range(_PICK_ATTEMPTS):
        port = rng.randrange(*_PICK_RANGE)
        if port not in avoid and is_port_free(port, host):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def accepts_connections(host: str, port: int, *, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to `host:port` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
