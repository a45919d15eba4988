"""Which patients a user may see: the one place that decides (the consultation issue narrows it here).

The rule:
- admin: every site;
- county_doctor: only patients of their own site (`users.site_id`); without a site, none;
- expert and on_call: patients of the sites they serve. Until assignments exist, an expert or on-call
  doctor bound to a site (`site_id` set) serves that site, and one without a site (the city hospital's
  specialists) serves every site.
A user with several roles sees the union. Patients outside the scope are reported as not found (404),
never as forbidden, so their existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass

from cloud.api.auth.models import Role, User


@dataclass(frozen=True, slots=True)
class SiteScope:
    """A set of sites, or all of them."""

    all_sites: bool
    site_ids: frozenset[str]

    def allows(self, site_id: str | None) -> bool:
        """Whether data of `site_id` is visible (data with no site is visible only to all-site scopes)."""
        return self.all_sites or (site_id is not None and site_id in self.site_ids)

    @property
    def is_empty(self) -> bool:
        """Whether nothing at all is visible."""
        return not self.all_sites and not self.site_ids

    def sql_params(self) -> dict[str, object]:
        """Parameters for the predicate `(%(scope_all)s OR site_id = ANY(%(scope_sites)s))`."""
        return {"scope_all": self.all_sites, "scope_sites": sorted(self.site_ids)}


SCOPE_PREDICATE = "(%(scope_all)s OR {column} = ANY(%(scope_sites)s))"


def scope_predicate(column: str) -> str:
    """The SQL predicate restricting `column` (a site id column) to a scope's sites (see `sql_params`)."""
    return SCOPE_PREDICATE.format(column=column)


def site_scope(user: User) -> SiteScope:
    """The sites whose patients `user` may see (the rule in the module docstring)."""
    if Role.ADMIN in user.roles:
        return SiteScope(all_sites=True, site_ids=frozenset())
    sites: set[str] = set()
    if Role.COUNTY_DOCTOR in user.roles and user.site_id is not None:
        sites.add(user.site_id)
    if user.has_any(frozenset({Role.EXPERT, Role.ON_CALL})):
        if user.site_id is None:
            return SiteScope(all_sites=True, site_ids=frozenset())
        sites.add(user.site_id)
    return SiteScope(all_sites=False, site_ids=frozenset(sites))
