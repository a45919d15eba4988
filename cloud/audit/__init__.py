"""The tamper-evident audit trail: a SHA-256 hash chain over `access_log` (docs/security.md, "Audit chain")."""
