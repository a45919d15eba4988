"""Which roles may use which part of the API (role checks are dependencies: `require_roles(...)`)."""

from __future__ import annotations

from cloud.api.auth.models import Role

# Every clinical role and admins read vitals, NEWS2 and live updates (site scoping still applies).
READ_VITALS: frozenset[Role] = frozenset({Role.ADMIN, Role.COUNTY_DOCTOR, Role.EXPERT, Role.ON_CALL})
# Bulk export for interoperability (FHIR) is for the treating and consulting doctors and admins;
# on-call doctors act on alerts and the dashboard, they do not export records.
EXPORT_FHIR: frozenset[Role] = frozenset({Role.ADMIN, Role.COUNTY_DOCTOR, Role.EXPERT})
