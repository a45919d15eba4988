"""The edge's uplink: MQTT v5 delivery of the outbox, commit-ack handling, commands, vitals batching."""

from edge.uplink.backoff import backoff_delay
from edge.uplink.batcher import VitalsBatcher
from edge.uplink.commands import CommandHandler, CommandRegistry
from edge.uplink.link import LinkState, Uplink
from edge.uplink.window import InflightWindow, Rewind

__all__ = [
    "CommandHandler",
    "CommandRegistry",
    "InflightWindow",
    "LinkState",
    "Rewind",
    "Uplink",
    "VitalsBatcher",
    "backoff_delay",
]
