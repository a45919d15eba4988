"""Backoff is a pure function of the error type and the attempt number (plus a supplied jitter draw)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.ble.backoff import RetryPolicy, backoff_delay, is_retryable, retry_delay
from devices.ble.errors import (
    AdapterUnavailableError,
    BleTransportError,
    CharacteristicNotFoundError,
    ConnectionTimeoutError,
    DeviceGoneError,
    DeviceNotFoundError,
    NotConnectedError,
    OutOfConnectionSlotsError,
    PairingRequiredError,
    TransportClosedError,
)

EXACT = RetryPolicy(jitter=0.0, max_delay=60.0, factor=2.0, max_attempts=6)


@pytest.mark.parametrize(
    ("error_type", "first"),
    [
        (BleTransportError, 0.25),
        (DeviceGoneError, 0.5),
        (NotConnectedError, 0.5),  # inherits DeviceGoneError's entry
        (ConnectionTimeoutError, 1.0),
        (DeviceNotFoundError, 2.0),
        (OutOfConnectionSlotsError, 4.0),
        (AdapterUnavailableError, 5.0),
    ],
)
def test_first_delay_depends_on_the_error_type(error_type: type[BleTransportError], first: float) -> None:
    assert backoff_delay(error_type, 1, jitter_sample=0.5, policy=EXACT) == first


def test_delay_doubles_per_attempt_up_to_the_cap() -> None:
    delays = [backoff_delay(OutOfConnectionSlotsError, n, jitter_sample=0.0, policy=EXACT) for n in range(1, 7)]
    assert delays == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_unknown_exception_types_back_off_like_transient_errors() -> None:
    assert backoff_delay(RuntimeError, 2, jitter_sample=0.0, policy=EXACT) == 0.5


@given(
    attempt=st.integers(min_value=1, max_value=30),
    sample=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_jitter_stays_within_its_fraction(attempt: int, sample: float) -> None:
    policy = RetryPolicy(jitter=0.2)
    plain = backoff_delay(DeviceGoneError, attempt, jitter_sample=0.5, policy=policy)
    jittered = backoff_delay(DeviceGoneError, attempt, jitter_sample=sample, policy=policy)
    assert plain * 0.8 - 1e-9 <= jittered <= plain * 1.2 + 1e-9
    assert jittered == backoff_delay(DeviceGoneError, attempt, jitter_sample=sample, policy=policy)


@pytest.mark.parametrize("error_type", [CharacteristicNotFoundError, PairingRequiredError, TransportClosedError])
def test_errors_needing_an_operator_are_not_retried(error_type: type[BleTransportError]) -> None:
    assert not is_retryable(error_type, EXACT)
    assert retry_delay(error_type, 1, jitter_sample=0.5, policy=EXACT) is None
    with pytest.raises(ValueError, match="not retryable"):
        backoff_delay(error_type, 1, jitter_sample=0.5, policy=EXACT)


def test_retry_gives_up_when_attempts_are_exhausted() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=0.0)
    assert retry_delay(DeviceGoneError, 2, jitter_sample=0.5, policy=policy) == 1.0
    assert retry_delay(DeviceGoneError, 3, jitter_sample=0.5, policy=policy) is None
    forever = RetryPolicy(max_attempts=None, jitter=0.0, max_delay=30.0)
    assert retry_delay(DeviceGoneError, 1000, jitter_sample=0.5, policy=forever) == 30.0


def test_policy_overrides_base_delays() -> None:
    policy = RetryPolicy(jitter=0.0, base_delays={BleTransportError: 0.1, DeviceNotFoundError: None})
    assert backoff_delay(OutOfConnectionSlotsError, 1, jitter_sample=0.5, policy=policy) == 0.1
    assert retry_delay(DeviceNotFoundError, 1, jitter_sample=0.5, policy=policy) is None


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"jitter": 1.0}, {"jitter": -0.1}, {"factor": 0.5}, {"max_delay": -1.0}]
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_attempts_are_one_based() -> None:
    with pytest.raises(ValueError):
        backoff_delay(DeviceGoneError, 0, jitter_sample=0.5, policy=EXACT)
