"""UUID constants and the 16-bit to 128-bit expansion."""

from __future__ import annotations

import uuid

import pytest

from devices.ble import uuids


def test_sig_uuid_expands_onto_the_bluetooth_base_uuid() -> None:
    assert uuids.uuid16(0x180D) == "0000180d-0000-1000-8000-00805f9b34fb"
    assert uuids.HEART_RATE_SERVICE == "0000180d-0000-1000-8000-00805f9b34fb"
    assert uuids.BATTERY_LEVEL == "00002a19-0000-1000-8000-00805f9b34fb"


@pytest.mark.parametrize(
    "form", [0x2A37, "2a37", "2A37", "0x2A37", " 00002A37-0000-1000-8000-00805F9B34FB ", "00002a37"]
)
def test_every_spelling_normalizes_to_one_form(form: str | int) -> None:
    assert uuids.normalize_uuid(form) == "00002a37-0000-1000-8000-00805f9b34fb"


@pytest.mark.parametrize("bad", [-1, 0x10000, "xyz", "12345", "0000180d-0000-1000-8000", ""])
def test_malformed_uuids_are_rejected(bad: str | int) -> None:
    with pytest.raises(ValueError):
        uuids.normalize_uuid(bad)


def test_short_uuid_recovers_the_sig_alias_only() -> None:
    assert uuids.short_uuid(uuids.GLUCOSE_SERVICE) == 0x1808
    assert uuids.short_uuid(uuids.CHEST_PATCH_SERVICE) is None


def test_health_filter_lists_the_health_services_and_the_chest_patch() -> None:
    expected = {0x180D, 0x1810, 0x1822, 0x1809, 0x1808, 0x181D}
    assert {uuids.short_uuid(u) for u in uuids.HEALTH_SERVICE_UUIDS} == expected | {None}
    assert uuids.CHEST_PATCH_SERVICE in uuids.HEALTH_SERVICE_UUIDS
    assert uuids.BATTERY_SERVICE not in uuids.HEALTH_SERVICE_UUIDS


def test_chest_patch_uuids_are_one_random_vendor_base() -> None:
    service = uuid.UUID(uuids.CHEST_PATCH_SERVICE)
    characteristic = uuid.UUID(uuids.CHEST_PATCH_RESPIRATORY_RATE)
    assert service.version == 4 and service.variant == uuid.RFC_4122
    assert service.hex[8:] == characteristic.hex[8:]
    assert service != characteristic
