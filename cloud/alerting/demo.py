"""`telemed-cloud oncall seed-demo`: departments, rotas and an escalation policy for every site, made from the
users who exist (role on_call / county_doctor), so a fresh demo pages someone. Idempotent.

Per site: one default department "general" (综合病区) covering the site's wards, headed by its first county
doctor; a daily primary rota of the on-call doctors serving the site (else its county doctors) and a daily
secondary rota of its county doctors (else the primary rota shifted by one), handing over at 08:00 in the
site's zone; and the default escalation policy when the site has none. Given a webhook, one "demo pager"
channel (a fixed id, so re-seeding re-points it) reaches every rota member; `rotas=False` only re-points it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from cloud.alerting import directory
from cloud.alerting.channel_secrets import seal_config
from cloud.alerting.directory import SITE_WIDE, ChannelRow, Conn, Person
from cloud.alerting.errors import ScheduleError
from cloud.alerting.escalation import EscalationPolicy
from cloud.alerting.oncall import Department, RotaTier, Rotation, zone
from cloud.identity.crypto import KeyRing

DEPARTMENT = "general"
DEMO_CHANNEL_ID = uuid.uuid5(uuid.NAMESPACE_URL, "telemed:demo-webhook")


@dataclass
class SeedReport:
    """What seeding did, per site: the department head and the rota members (usernames)."""

    sites: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    channel: uuid.UUID | None = None


def _serves(person: Person, site_id: str, role: str) -> bool:
    return role in person.roles and not person.disabled and person.site_id in (site_id, None)


async def seed_demo(conn: Conn, *, now: dt.datetime, webhook_url: str | None = None,
                    webhook_secret: str | None = None, rotas: bool = True, ring: KeyRing | None = None) -> SeedReport:
    """Seed on-call data for every site (and, given a webhook, a channel reaching every rota member).

    With `rotas=False` the rotas are left as they are (an admin may have changed them) and only the webhook
    channel is (re)pointed, reaching the members of the rotas that exist. The webhook's URL and secret are
    stored sealed under `ring` (cloud/alerting/channel_secrets.py); without one (tests), as given.
    """
    report = SeedReport()
    people = sorted((await directory.people(conn)).values(), key=lambda p: p.username)
    policies = await directory.policies(conn)
    reached: set[uuid.UUID] = set()
    if not rotas:
        cur = await conn.execute("SELECT DISTINCT unnest(members) FROM oncall_rotations")
        reached.update(user_id for (user_id,) in await cur.fetchall())
    for site in (await directory.sites(conn)).values() if rotas else ():
        doctors = [p for p in people if "county_doctor" in p.roles and not p.disabled and p.site_id == site.site_id]
        on_call = [p for p in people if _serves(p, site.site_id, "on_call")]
        primary = on_call or doctors
        if not primary:
            report.sites[site.site_id] = {"skipped": ["no on_call or county_doctor user for this site"]}
            continue
        secondary = [p for p in doctors if p not in primary] or primary[1:] + primary[:1]
        wards = await conn.execute("SELECT DISTINCT ward FROM patients WHERE site_id = %s AND ward IS NOT NULL"
                                   " ORDER BY ward", (site.site_id,))
        head = doctors[0] if doctors else primary[0]
        await directory.upsert_department(conn, Department(
            site.site_id, DEPARTMENT, "General ward", "综合病区", head.user_id,
            tuple(str(w) for (w,) in await wards.fetchall()), is_default=True))
        timezone = site.timezone if _known_zone(site.timezone) else "Asia/Shanghai"
        today = now.astimezone(ZoneInfo(timezone)).date()
        tiers: tuple[tuple[RotaTier, list[Person]], ...] = (("primary", primary), ("secondary", secondary))
        for tier, members in tiers:
            await directory.upsert_rotation(conn, Rotation(
                uuid.uuid4(), site.site_id, DEPARTMENT, tier, tuple(p.user_id for p in members), "daily",
                dt.time(8, 0), 0, today, timezone))
        if (site.site_id, SITE_WIDE) not in policies:
            await directory.put_policy(conn, site.site_id, SITE_WIDE, EscalationPolicy(), updated_by=None)
        report.sites[site.site_id] = {"head": [head.username], "primary": [p.username for p in primary],
                                      "secondary": [p.username for p in secondary]}
        reached.update(p.user_id for p in (head, *primary, *secondary))
    if webhook_url:
        config: dict[str, object] = {"url": webhook_url, "secret": webhook_secret or ""}
        if ring is not None:
            config = seal_config(ring, DEMO_CHANNEL_ID, config)
        await directory.upsert_channel(conn, ChannelRow(DEMO_CHANNEL_ID, "webhook", "demo pager", None, config, True))
        for user_id in sorted(reached, key=str):
            await directory.put_contact(conn, user_id, DEMO_CHANNEL_ID, "", True)
        report.channel = DEMO_CHANNEL_ID
    return report


def _known_zone(name: str) -> bool:
    try:
        zone(name)
    except ScheduleError:
        return False
    return True
