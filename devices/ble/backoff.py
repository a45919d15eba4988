"""Retry policy and backoff: pure functions of the error type and the attempt number.

Base delays follow field experience collected in bleak-retry-connector (Home Assistant): BlueZ and D-Bus need
about 0.25 s to clean up after a transient failure, and a full adapter needs seconds for a slot to free up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from devices.ble.errors import (
    AdapterUnavailableError,
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionTimeoutError,
    DeviceGoneError,
    DeviceNotFoundError,
    OutOfConnectionSlotsError,
    PairingRequiredError,
    TransportClosedError,
)

# First-attempt delay in seconds per error type; None means retrying cannot help (operator action needed).
DEFAULT_BASE_DELAYS: Mapping[type[BleTransportError], float | None] = MappingProxyType(
    {
        BleTransportError: 0.25,  # transient (le-connection-abort-by-local, InProgress)
        DeviceGoneError: 0.5,  # dropped link; many wearables re-advertise within a second
        ConnectionTimeoutError: 1.0,
        DeviceNotFoundError: 2.0,  # wait for the next advertising cycle
        OutOfConnectionSlotsError: 4.0,  # a slot has to be released first
        AdapterUnavailableError: 5.0,  # adapter reset, bluetoothd restart
        CharacteristicNotFoundError: None,
        PairingRequiredError: None,
        TransportClosedError: None,
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a link retries connects and reconnects, and how long single operations may take."""

    max_attempts: int | None = 6  # connect attempts per (re)connect cycle; None retries forever
    factor: float = 2.0
    max_delay: float = 60.0
    jitter: float = 0.2  # +/- fraction of the delay, spreads reconnects of a ward after a power blip
    connect_timeout: float = 20.0
    operation_timeout: float = 10.0
    base_delays: Mapping[type[BleTransportError], float | None] = field(default_factory=lambda: DEFAULT_BASE_DELAYS)

    def __post_init__(self) -> None:
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        if self.factor < 1.0 or self.max_delay < 0.0:
            raise ValueError("factor must be >= 1 and max_delay >= 0")


def base_delay(error_type: type[BaseException], policy: RetryPolicy) -> float | None:
    """The base delay of the most specific error type listed in the policy (walks the MRO)."""
    for klass in error_type.__mro__:
        if klass in policy.base_delays:
            return policy.base_delays[klass]
    return policy.base_delays.get(BleTransportError, 0.25)


def is_retryable(error_type: type[BaseException], policy: RetryPolicy) -> bool:
    """Whether another attempt can succeed without operator action."""
    return base_delay(error_type, policy) is not None


def backoff_delay(error_type: type[BaseException], attempt: int, *, jitter_sample: float, policy: RetryPolicy) -> float:
    """Delay before the attempt after failed attempt number `attempt` (1-based).

    Exponential in the attempt, capped at `policy.max_delay`, then spread by +/- `policy.jitter`;
    `jitter_sample` is a uniform draw in [0, 1) supplied by the caller so this stays pure.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    base = base_delay(error_type, policy)
    if base is None:
        raise ValueError(f"{error_type.__name__} is not retryable")
    delay = min(policy.max_delay, base * policy.factor ** (attempt - 1))
    return max(0.0, delay * (1.0 + policy.jitter * (2.0 * jitter_sample - 1.0)))


def retry_delay(
    error_type: type[BaseException], attempt: int, *, jitter_sample: float, policy: RetryPolicy
) -> float | None:
    """The backoff before the next attempt, or None to give up (not retryable or attempts exhausted)."""
    if not is_retryable(error_type, policy):
        return None
    if policy.max_attempts is not None and attempt >= policy.max_attempts:
        return None
    return backoff_delay(error_type, attempt, jitter_sample=jitter_sample, policy=policy)
