"""Clinical scenarios from the simulated ward through the cloud's alerting: evaluation, incidents, paging.

The service runs without MQTT here (the evaluator is fed the batches an edge would upload) and with a fake
wall clock that follows the samples, as it would live; the webhook receiver checks every signature.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from cloud.alerting.service import AlertingService
from deploy.postgres import PostgresEndpoint
from devices.sim import ArtefactProfile, Cohort, EpisodeRate, PatientSpec, scenario
from devices.sim.devices import WARD_DEVICES
from proto.alerting import AlarmEngine
from tests.integration.test_alerting_support import (
    CST,
    FakeClock,
    add_patients,
    alert_in,
    migrate_and_seed,
    newest,
    rows,
    running_service,
    vitals_in,
    ward_batches,
    webhook_sink,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=CST)
SCALE = 1 / 12  # the 12 h sepsis course in one hour
COURSE_S = 12 * 3600 * SCALE


def clinical_pages(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pages if p["incident"]["category"] == "clinical"]


async def feed(service: AlertingService, clock: FakeClock, cohort: Cohort, seconds: int, *,
               batch_s: int = 5, edge_alerts: AlarmEngine | None = None) -> int:
    """Stream the ward into the service as an edge would (the clock follows the samples, and the timers are
    swept after every batch as the service's own timer would); optionally an edge-side engine evaluates the
    same samples and its alerts are sent too, before the vitals."""
    samples = 0
    for batch in ward_batches(cohort, seconds, batch_s=batch_s):
        clock.set(newest(batch))
        items = []
        if edge_alerts is not None:
            changes = edge_alerts.observe_batch(batch) + edge_alerts.tick(newest(batch))
            items += [alert_in(c.alert) for c in changes]  # alerts travel first
        items.append(vitals_in(batch))
        await service.process(items)
        await service.sweep()
        samples += len(batch)
    return samples


def sepsis_cohort(seed: int = 3) -> Cohort:
    return Cohort([PatientSpec("pt-sepsis", scenario("sepsis").time_scaled(SCALE), WARD_DEVICES)], seed=seed,
                  start=START)


async def test_sepsis_raises_medium_then_high_and_escalates_to_the_secondary(database: PostgresEndpoint) -> None:
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-sepsis")
        clock = FakeClock(START)
        async with running_service(database.url, clock) as service:
            await feed(service, clock, sepsis_cohort(), int(COURSE_S * 0.95))
            news2 = rows(database.url, "SELECT incident_id, priority, state FROM incidents WHERE rule = 'news2'")
            assert len(news2) == 1 and news2[0][1:] == ("high", "triggered")
            opened = {m[0]: m[1] for m in rows(
                database.url, "SELECT priority, min(raised_at) FROM incident_messages WHERE incident_id = %s"
                " AND state = 'active' GROUP BY priority", (news2[0][0],))}
            medium_s = (opened["medium"] - START).total_seconds()
            high_s = (opened["high"] - START).total_seconds()
            # RCP 2017: sepsis walks NEWS2 through medium (5-6) into high (>= 7). The course puts medium at
            # 5-8 h and high at 7-10 h of the 12 h (unscaled); allow a margin either side.
            assert 0.3 * COURSE_S < medium_s < 0.75 * COURSE_S
            assert medium_s < high_s < 0.9 * COURSE_S

            pages = await sink.wait_for(lambda p: sum(x["incident"]["rule"] == "news2" for x in p) >= 3)
            news2_pages = [p for p in pages if p["incident"]["rule"] == "news2"]
            # Medium paged the primary; the escalation to high paged the primary again, then, unacknowledged
            # for the high priority's 2 minutes, the secondary.
            assert [(p["incident"]["priority"], p["recipient"]["username"], p["escalation"]["tier"])
                    for p in news2_pages[:3]] == [
                ("medium", "dr-primary", "primary"), ("high", "dr-primary", "primary"),
                ("high", "dr-secondary", "secondary")]
            assert all(r.valid for r in sink.received)
            high_page, secondary_page = news2_pages[1], news2_pages[2]
            assert secondary_page["incident"]["incident_id"] == str(news2[0][0])
            assert high_page["incident"]["patient_id"] == "pt-sepsis"
            assert high_page["incident"]["link"] == f"https://telemed.example/incidents/{news2[0][0]}"

            # The fake clock drives the rest: two more minutes unacknowledged page the department head.
            clock.advance(121)
            await service.sweep()
            pages = await sink.wait_for(lambda p: any(x["escalation"]["tier"] == "department_head" for x in p))
            head = [p for p in pages if p["escalation"]["tier"] == "department_head"]
            assert {p["recipient"]["username"] for p in head} >= {"dr-head"}
            delivered = rows(database.url, "SELECT count(*) FROM notification_deliveries WHERE status = 'delivered'")
            assert delivered[0][0] == len(sink.received)


async def test_edge_and_cloud_alerts_of_one_episode_are_one_incident_and_one_page(
        database: PostgresEndpoint) -> None:
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, "pt-sepsis")
        clock = FakeClock(START)
        async with running_service(database.url, clock) as service:
            edge = AlarmEngine()  # the edge evaluated the same samples and sent its alerts
            await feed(service, clock, sepsis_cohort(), int(COURSE_S * 0.8), edge_alerts=edge)
            incidents = rows(database.url, "SELECT rule, sources FROM incidents WHERE category = 'clinical'")
            assert incidents, "the deterioration raised clinical alarms"
            assert all(sorted(sources) == ["cloud", "edge"] for _, sources in incidents)
            per_message = rows(database.url, "SELECT count(*), bool_and(m.sources = '{cloud,edge}')"
                                             " FROM incident_messages m JOIN incidents USING (incident_id)"
                                             " WHERE category = 'clinical'")
            assert per_message[0][1] is True  # every message was seen by both and stored once
            await asyncio.sleep(0.5)
            pages = clinical_pages(sink.pages())
            steps = [(p["incident"]["incident_id"], p["incident"]["priority"], p["escalation"]["step"],
                      p["recipient"]["username"]) for p in pages]
            assert len(steps) == len(set(steps)), "a step paged twice"
            raised = {r[0] for r in rows(database.url, "SELECT incident_id::text FROM incidents"
                                                      " WHERE category = 'clinical' AND priority <> 'low'")}
            assert {p["incident"]["incident_id"] for p in pages} == raised


async def test_motion_artefacts_raise_no_clinical_page(database: PostgresEndpoint) -> None:
    restless = ArtefactProfile(motion=EpisodeRate(40.0, 40.0), low_perfusion=EpisodeRate(2.0, 120.0))
    cohort = Cohort([PatientSpec(f"pt-move-{i}", "stable", WARD_DEVICES) for i in range(3)], seed=11,
                    start=START, artefacts=restless)
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, *cohort.patient_ids)
        clock = FakeClock(START)
        async with running_service(database.url, clock) as service:
            await feed(service, clock, cohort, 3600, batch_s=10)
            clock.advance(3600)
            await service.sweep()
        technical = rows(database.url, "SELECT DISTINCT rule FROM incidents WHERE category = 'technical'")
        assert {"signal_artefact"} <= {r[0] for r in technical}, "the artefacts were seen, as technical alarms"
        assert rows(database.url, "SELECT rule, message FROM incidents WHERE category = 'clinical'") == []
        assert rows(database.url, "SELECT count(*) FROM notification_deliveries")[0][0] == 0
        assert sink.pages() == []


async def test_stable_patients_raise_no_clinical_page_over_a_patient_day(database: PostgresEndpoint) -> None:
    # 24 simulated patient-hours: twelve stable patients for two hours each, at 1 Hz, with the default
    # ward artefacts (tests/bench/bench_alerting_latency.py runs whole patient-days).
    cohort = Cohort([PatientSpec(f"pt-stable-{i}", "stable", WARD_DEVICES) for i in range(12)], seed=5,
                    start=START)
    with webhook_sink() as sink:
        migrate_and_seed(database.url, sink.url)
        add_patients(database.url, *cohort.patient_ids)
        clock = FakeClock(START)
        async with running_service(database.url, clock) as service:
            samples = await feed(service, clock, cohort, 2 * 3600, batch_s=30)
            clock.advance(3600)
            await service.sweep()
        assert samples > 12 * 2 * 3600 * 3  # HR, SpO2 and RR at 1 Hz, plus the rest
        assert rows(database.url, "SELECT rule, message FROM incidents WHERE category = 'clinical'") == []
        assert clinical_pages(sink.pages()) == []
