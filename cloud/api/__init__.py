"""The cloud's HTTP API: authentication, vitals, FHIR R4 export and live updates (FastAPI)."""
