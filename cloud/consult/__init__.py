"""Tele-consultations: workflow, SLA timers, signed expert reports and their PDF (docs/consultations.md)."""
