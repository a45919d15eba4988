"""The cloud's device commands: `assign_device` and `unassign_device` (docs/protocol.md, "Command").

    assign_device   {"device_id": "plx-01", "patient_id": "pt-0001", "address"?: "C4:..", "device_type"?: "..."}
    unassign_device {"device_id": "plx-01"}

`device_id` may also be the device's address. A device the edge has never seen needs its address (or an
address as its id) and its device type. The registry tells the collector, which connects or lets go.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.collector.registry import DeviceRecord, DeviceRegistry, InvalidDeviceError
from edge.uplink.commands import CommandRegistry
from proto.messages import Command


class CommandArgsError(InvalidDeviceError):
    """A command whose arguments are missing or of the wrong type."""


def _text(args: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise CommandArgsError(f"argument {name!r} must be a non-empty string, got {value!r}")
    return value


def assign_device(registry: DeviceRegistry, command: Command) -> DeviceRecord:
    """Apply an assign_device command; raises RegistryError subclasses for bad arguments."""
    args = command.args
    device = _text(args, "device_id")
    patient = _text(args, "patient_id")
    assert device is not None and patient is not None
    return registry.assign(device, patient, address=_text(args, "address", required=False),
                           device_type=_text(args, "device_type", required=False), source="cloud")


def unassign_device(registry: DeviceRegistry, command: Command) -> DeviceRecord:
    """Apply an unassign_device command."""
    device = _text(command.args, "device_id")
    assert device is not None
    return registry.unassign(device)


def register_device_commands(commands: CommandRegistry, registry: DeviceRegistry) -> None:
    """Handle assign_device and unassign_device with this registry."""
    commands.register("assign_device", lambda command: assign_device(registry, command))
    commands.register("unassign_device", lambda command: unassign_device(registry, command))
