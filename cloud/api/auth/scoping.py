"""Which patients a user may see: the one place that decides.

The rule:
- admin: every site;
- county_doctor: only patients of their own site (`users.site_id`); without a site, none;
- on_call: patients of the sites they serve: the site they are bound to (`site_id` set), or every site for
  one without a site (the city hospital's on-call team);
- expert: only the patients of consultations offered to them (a pending offer) or assigned to them
  (accepted, in session, reported or closed); no site as a whole (cloud/consult, migration 0005);
- several roles: the union.
Patients outside the scope are reported as not found (404), never as forbidden, so their existence does not
leak.

`site_scope(user)` is the part that needs no database (sites); `access_scope(conn, user)` adds the experts'
consultation patients and is what patient reads use. A scope with patients needs the patient-aware predicate
`scope_predicate(site_column, patient_column=...)`; a site-only predicate never shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

from cloud.api.auth.models import Role, User


@dataclass(frozen=True, slots=True)
class SiteScope:
    """A set of sites (or all of them), plus individual patients visible beyond those sites."""

    all_sites: bool
    site_ids: frozenset[str]
    patient_ids: frozenset[str] = field(default_factory=frozenset)

    def allows(self, site_id: str | None) -> bool:
        """Whether all data of `site_id` is visible (data with no site is visible only to all-site scopes)."""
        return self.all_sites or (site_id is not None and site_id in self.site_ids)

    def allows_patient(self, site_id: str | None, patient_id: str | None) -> bool:
        """Whether data of `patient_id` (at `site_id`) is visible."""
        return self.allows(site_id) or (patient_id is not None and patient_id in self.patient_ids)

    @property
    def is_empty(self) -> bool:
        """Whether nothing at all is visible."""
        return not self.all_sites and not self.site_ids and not self.patient_ids

    def sql_params(self) -> dict[str, object]:
        """Parameters for the predicates of `scope_predicate`."""
        return {"scope_all": self.all_sites, "scope_sites": sorted(self.site_ids),
                "scope_patients": sorted(self.patient_ids)}

    def union(self, other: SiteScope) -> SiteScope:
        """What either scope shows."""
        return SiteScope(all_sites=self.all_sites or other.all_sites, site_ids=self.site_ids | other.site_ids,
                         patient_ids=self.patient_ids | other.patient_ids)


SCOPE_PREDICATE = "(%(scope_all)s OR {column} = ANY(%(scope_sites)s))"
PATIENT_SCOPE_PREDICATE = "(%(scope_all)s OR {column} = ANY(%(scope_sites)s) OR {patient} = ANY(%(scope_patients)s))"


def scope_predicate(column: str, *, patient_column: str | None = None) -> str:
    """The SQL predicate restricting rows to a scope (see `sql_params`): by their site id `column`, and with
    `patient_column` also admitting the scope's individual patients."""
    if patient_column is None:
        return SCOPE_PREDICATE.format(column=column)
    return PATIENT_SCOPE_PREDICATE.format(column=column, patient=patient_column)


def site_scope(user: User) -> SiteScope:
    """The sites whose patients `user` may see (the rule in the module docstring, without experts' patients)."""
    if Role.ADMIN in user.roles:
        return SiteScope(all_sites=True, site_ids=frozenset())
    sites: set[str] = set()
    if Role.COUNTY_DOCTOR in user.roles and user.site_id is not None:
        sites.add(user.site_id)
    if Role.ON_CALL in user.roles:
        if user.site_id is None:
            return SiteScope(all_sites=True, site_ids=frozenset())
        sites.add(user.site_id)
    return SiteScope(all_sites=False, site_ids=frozenset(sites))


# Patients of the consultations an expert holds an offer for or is assigned to (cloud/consult/store.py
# `visibility` is the same rule for consultations themselves).
_EXPERT_PATIENTS = """
SELECT DISTINCT c.patient_id FROM consultations c
 WHERE c.assigned_expert_id = %(expert)s
    OR EXISTS (SELECT 1 FROM consultation_offers o
                WHERE o.consultation_id = c.consultation_id AND o.expert_id = %(expert)s AND o.outcome = 'pending')
"""


async def expert_patients(conn: AsyncConnection[Any], user: User) -> frozenset[str]:
    """The patients of consultations offered or assigned to `user` (none unless they are an expert)."""
    if Role.EXPERT not in user.roles:
        return frozenset()
    cur = await conn.execute(_EXPERT_PATIENTS, {"expert": user.user_id})
    return frozenset(row[0] for row in await cur.fetchall())


async def access_scope(conn: AsyncConnection[Any], user: User) -> SiteScope:
    """Everything `user` may see: `site_scope` plus, for experts, their consultations' patients."""
    scope = site_scope(user)
    if scope.all_sites:
        return scope
    patients = await expert_patients(conn, user)
    return scope.union(SiteScope(all_sites=False, site_ids=frozenset(), patient_ids=patients))
