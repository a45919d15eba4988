"""Adapter admission: bounded concurrent connection attempts, scans alone and ahead of new attempts."""

from __future__ import annotations

import asyncio

import pytest

from devices.ble.gate import AdapterGate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _ticks(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_connect_permits_are_bounded() -> None:
    gate = AdapterGate(2)
    release = asyncio.Event()
    peak = 0

    async def attempt() -> None:
        nonlocal peak
        async with gate.connect_permit():
            peak = max(peak, gate.connecting)
            await release.wait()

    tasks = [asyncio.ensure_future(attempt()) for _ in range(5)]
    await _ticks()
    assert gate.connecting == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2 and gate.connecting == 0


async def test_scan_waits_for_attempts_and_goes_before_later_attempts() -> None:
    gate = AdapterGate(3)
    order: list[str] = []
    finish_first = asyncio.Event()

    async def first_attempt() -> None:
        async with gate.connect_permit():
            order.append("connect-1")
            await finish_first.wait()

    async def scan() -> None:
        async with gate.scan_permit():
            order.append("scan")
            assert gate.connecting == 0
            await _ticks()
            order.append("scan-done")

    async def later_attempt() -> None:
        async with gate.connect_permit():
            order.append("connect-2")
            assert not gate.scanning

    tasks = [asyncio.ensure_future(first_attempt())]
    await _ticks()
    tasks.append(asyncio.ensure_future(scan()))
    await _ticks()
    tasks.append(asyncio.ensure_future(later_attempt()))  # a permit is free, but a scan is waiting
    await _ticks()
    assert order == ["connect-1"]
    finish_first.set()
    await asyncio.gather(*tasks)
    assert order == ["connect-1", "scan", "scan-done", "connect-2"]


async def test_cancelled_waiters_leave_no_permit_behind() -> None:
    gate = AdapterGate(1)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold() -> None:
        async with gate.connect_permit():
            held.set()
            await release.wait()

    async def wait_connect() -> None:
        async with gate.connect_permit():
            pass

    async def wait_scan() -> None:
        async with gate.scan_permit():
            pass

    holder = asyncio.ensure_future(hold())
    await held.wait()
    waiting_connect = asyncio.ensure_future(wait_connect())
    waiting_scan = asyncio.ensure_future(wait_scan())
    await _ticks()
    waiting_connect.cancel()
    waiting_scan.cancel()
    await asyncio.gather(waiting_connect, waiting_scan, return_exceptions=True)
    release.set()
    await holder

    assert gate.connecting == 0 and not gate.scanning
    await asyncio.wait_for(wait_connect(), 1.0)
    await asyncio.wait_for(wait_scan(), 1.0)


async def test_permit_is_released_when_the_holder_fails() -> None:
    gate = AdapterGate(1)
    with pytest.raises(RuntimeError):
        async with gate.connect_permit():
            raise RuntimeError("connect blew up")
    assert gate.connecting == 0
    async with gate.scan_permit():
        assert gate.scanning


def test_at_least_one_permit() -> None:
    with pytest.raises(ValueError):
        AdapterGate(0)
