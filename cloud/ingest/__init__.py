"""MQTT ingest: verified, deduplicated, micro-batched writes of every uplink message, then commit acks."""
