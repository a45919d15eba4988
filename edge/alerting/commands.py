"""The cloud's `configure` command for local alerting.

    configure {"alerting": {...rule overrides...}}                          the site's rules
    configure {"alerting": {...} | null, "patient_id": "pt-0001"}          one patient's rules (null: the site's)

The override mapping is proto.alerting's (RuleConfig.overridden): thresholds, rates, news2, technical, timing,
history_bucket_s. Overrides that do not validate fail the command (logged by the CommandRegistry) and change
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from edge.alerting.local import LocalAlerting
from edge.uplink.commands import CommandRegistry
from proto.alerting import AlarmChange
from proto.messages import Command

_ARGS = frozenset({"alerting", "patient_id"})


class ConfigureArgsError(ValueError):
    """A configure command whose arguments are missing, unknown or of the wrong type."""


def configure(alerting: LocalAlerting, command: Command) -> list[AlarmChange]:
    """Apply a configure command; raises ConfigureArgsError or proto.alerting.RuleConfigError."""
    args = command.args
    unknown = sorted(set(args) - _ARGS)
    if unknown:
        raise ConfigureArgsError(f"unknown configure arguments {unknown} (known: {sorted(_ARGS)})")
    if "alerting" not in args:
        raise ConfigureArgsError("configure needs an 'alerting' argument (rule overrides, or null)")
    overrides = args["alerting"]
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigureArgsError(f"'alerting' must be a mapping of rule overrides or null, got {overrides!r}")
    patient = args.get("patient_id")
    if patient is not None and not isinstance(patient, str):
        raise ConfigureArgsError(f"'patient_id' must be a string, got {patient!r}")
    patch: Mapping[str, Any] | None = overrides
    return alerting.configure(patch, patient_id=patient)


def register_alerting_commands(commands: CommandRegistry, alerting: LocalAlerting) -> None:
    commands.register("configure", lambda command: configure(alerting, command))
