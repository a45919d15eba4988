"""Pre-consultation triage of chief complaints in Chinese and English (docs/consultations.md)."""
