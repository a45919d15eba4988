"""Expert matching: hard filters, explainable scores and optional learned re-ranking (docs/consultations.md)."""
