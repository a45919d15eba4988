"""The cloud's PostgreSQL layer: connection pools, the migration runner and the versioned schema."""
