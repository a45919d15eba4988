"""Errors raised by the local stack launcher; callers catch `DeployError`."""

from __future__ import annotations


class DeployError(Exception):
    """Base class: the stack (or one of its services) could not be set up, started or stopped."""


class BinaryNotFoundError(DeployError):
    """A server binary is missing; the message names the Debian package that provides it."""

    def __init__(self, binary: str, package: str) -> None:
        hint = f"install the Debian package {package!r} (apt install {package})"
        super().__init__(f"{binary} not found: {hint}")
        self.binary = binary
        self.package = package


class ServiceUserError(DeployError):
    """Running as root, but the system account a server must run as does not exist."""


class ServiceStartError(DeployError):
    """A server did not come up; the message carries the tail of its log."""

    def __init__(self, service: str, reason: str, log_tail: str = "") -> None:
        detail = f"\n--- last lines of the {service} log ---\n{log_tail}" if log_tail else ""
        super().__init__(f"{service} did not start: {reason}{detail}")
        self.service = service
        self.reason = reason
        self.log_tail = log_tail


class ServiceStateError(DeployError):
    """A server's directory is in a state we cannot safely use (for example data without its credentials)."""
