"""Typed errors raised by the physiological simulator at its boundary."""

from __future__ import annotations


class SimulationError(Exception):
    """Base class for simulator errors."""


class ScenarioError(SimulationError, ValueError):
    """A scenario description that cannot be simulated (unknown vital, course ending before it starts...)."""


class CohortError(SimulationError, ValueError):
    """A cohort that cannot be built (duplicate patient ids, a non-positive maximum step)."""


class UnknownScenarioError(SimulationError, KeyError):
    """A scenario name that is not in the registry."""

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else "unknown scenario"


class UnknownPatientError(SimulationError, KeyError):
    """A patient id or index that the cohort does not simulate."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown patient"


class UnknownDeviceError(SimulationError, KeyError):
    """A device type that is not in the sensor table, or that the patient does not wear."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown device"


class SimulationTimeError(SimulationError, ValueError):
    """A request to move simulated time backwards or by a non-finite amount."""
