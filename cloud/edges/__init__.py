"""The edge registry (keys and status for ingest) and edge provisioning (keys, broker login, config bundle)."""
