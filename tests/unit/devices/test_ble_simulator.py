"""The simulated radio behaves like the air: async delivery, drops without subscribers, full timeouts for
absent devices, and it scales to a hospital's worth of wearables."""

from __future__ import annotations

import asyncio
import random

import pytest

from devices.ble import (
    AirFault,
    LinkState,
    OutOfConnectionSlotsError,
    RetryPolicy,
    SimulatedPeripheral,
    SimulatedRadio,
    SimulatedTransport,
    SimulationError,
)
from devices.ble.sim_radio import AirError
from devices.ble.uuids import BATTERY_LEVEL, HEART_RATE_MEASUREMENT, HEART_RATE_SERVICE, PULSE_OXIMETER_SERVICE
from tests.unit.devices.test_ble_transport import HR, FakeClock, Inbox, heart_rate_strap, settle

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_notifications_arrive_asynchronously_like_a_real_stack() -> None:
    clock = FakeClock()
    radio = SimulatedRadio(clock=clock)
    strap = radio.add(heart_rate_strap())
    received: list[bytes] = []
    link = await radio.establish(HR, timeout=5.0, on_lost=lambda: None)
    await link.enable(HEART_RATE_MEASUREMENT, received.append)

    assert strap.notify(HEART_RATE_MEASUREMENT, b"\x00\x42") == 1
    assert received == []  # handed over on the next loop iteration, not inside notify()
    await asyncio.sleep(0)
    assert received == [b"\x00\x42"]


async def test_absent_device_costs_the_full_connect_timeout() -> None:
    clock = FakeClock()
    radio = SimulatedRadio(clock=clock, connect_latency=0.1)
    strap = radio.add(heart_rate_strap())
    strap.go_out_of_range()
    with pytest.raises(AirError) as raised:
        await radio.establish(HR, timeout=5.0, on_lost=lambda: None)
    assert raised.value.fault is AirFault.NO_RESPONSE
    assert sum(clock.sleeps) == pytest.approx(5.0)


async def test_connected_peripheral_stops_advertising_unless_told_otherwise() -> None:
    radio = SimulatedRadio(clock=FakeClock())
    strap = radio.add(heart_rate_strap())
    lost: list[bool] = []
    link = await radio.establish(HR, timeout=5.0, on_lost=lambda: lost.append(True))
    assert not strap.advertising
    assert await radio.scan(service_uuids=frozenset(), duration=1.0) == []
    strap.advertises_while_connected = True
    assert [d.address for d in await radio.scan(service_uuids=frozenset(), duration=1.0)] == [HR]
    await link.close()
    await asyncio.sleep(0)
    assert lost == [True]  # like bleak, a local disconnect also reports the drop
    assert radio.active_links == 0


async def test_adapter_slots_limit_links() -> None:
    radio = SimulatedRadio(clock=FakeClock(), connection_slots=1)
    radio.add(heart_rate_strap())
    radio.add(heart_rate_strap("AA:00:00:00:00:09"))
    await radio.establish(HR, timeout=5.0, on_lost=lambda: None)
    with pytest.raises(AirError) as raised:
        await radio.establish("AA:00:00:00:00:09", timeout=5.0, on_lost=lambda: None)
    assert raised.value.fault is AirFault.OUT_OF_SLOTS


async def test_refusing_until_accepted() -> None:
    clock = FakeClock()
    radio = SimulatedRadio(clock=clock)
    strap = radio.add(heart_rate_strap())
    strap.refuse_connections(None)
    policy = RetryPolicy(max_attempts=3, jitter=0.0)
    async with SimulatedTransport(radio, policy=policy, clock=clock) as transport:
        with pytest.raises(OutOfConnectionSlotsError):
            await transport.connect(HR)
        strap.accept_connections()
        link = await transport.connect(HR)
        assert link.state is LinkState.CONNECTED


def test_simulator_misuse_is_reported() -> None:
    radio = SimulatedRadio()
    strap = radio.add(heart_rate_strap())
    with pytest.raises(SimulationError):
        radio.add(heart_rate_strap())  # same address
    with pytest.raises(SimulationError):
        strap.notify(0x2A5F, b"")  # no such characteristic
    with pytest.raises(SimulationError):
        strap.set_value(0x2A5F, b"")
    with pytest.raises(SimulationError):
        strap.refuse_connections(1, AirFault.NOT_PERMITTED)
    reader = SimulatedPeripheral("AA:00:00:00:00:0A", None, [0x180F], {BATTERY_LEVEL: ["read"]})
    with pytest.raises(SimulationError):
        reader.notify(BATTERY_LEVEL, b"\x50")  # read-only
    with pytest.raises(ValueError):
        SimulatedPeripheral("AA:00:00:00:00:0B", None, [0x180F], {BATTERY_LEVEL: ["teleport"]})


async def test_a_ward_of_500_devices_with_a_burst_of_notifications() -> None:
    clock = FakeClock()
    radio = SimulatedRadio(clock=clock)
    straps = [heart_rate_strap(f"AA:00:00:00:{index // 256:02X}:{index % 256:02X}") for index in range(500)]
    oximeters = [
        SimulatedPeripheral(f"BB:00:00:00:00:{index:02X}", "PLX", [PULSE_OXIMETER_SERVICE], {0x2A5F: ["notify"]})
        for index in range(20)
    ]
    for peripheral in [*straps, *oximeters]:
        radio.add(peripheral)
    inboxes = {strap.address: Inbox() for strap in straps}
    async with SimulatedTransport(radio, clock=clock, rng=random.Random(3), max_concurrent_connects=8) as transport:
        found = await transport.scan(service_uuids=[HEART_RATE_SERVICE], timeout=5.0)
        assert len(found) == 500
        await asyncio.gather(
            *(
                transport.connect(device.address, subscriptions={HEART_RATE_MEASUREMENT: inboxes[device.address]})
                for device in found
            )
        )
        assert radio.active_links == 500
        tasks_before = len(asyncio.all_tasks())

        for beat in range(20):
            for strap in straps:
                strap.notify(HEART_RATE_MEASUREMENT, bytes([0, beat]))
        assert len(asyncio.all_tasks()) == tasks_before  # no task per notification
        await settle()

        expected = [bytes([0, beat]) for beat in range(20)]
        assert all(inbox.payloads == expected for inbox in inboxes.values())
    assert radio.active_links == 0
