"""The cloud's own evaluation: one alarm engine per edge, ticked in that edge's time, saved and restored."""

from __future__ import annotations

import datetime as dt

from cloud.alerting.evaluator import EdgeEngines
from proto.alerting import AlarmChange
from proto.vitals import VitalsBatch, VitalsBatchBuilder

T0 = dt.datetime(2026, 3, 2, 0, 0, tzinfo=dt.UTC)


def spo2(patient: str, value: float, start_s: int, seconds: int, *, offset: dt.datetime = T0) -> VitalsBatch:
    builder = VitalsBatchBuilder()
    for i in range(seconds):
        builder.add(offset + dt.timedelta(seconds=start_s + i), patient, "spo2", value, device_id=f"ox-{patient}")
    return builder.build()


def brief(changes: list[AlarmChange]) -> list[tuple[str, str, str]]:
    return [(c.change, c.alert.rule, c.alert.priority) for c in changes]


def test_each_edge_is_ticked_with_its_own_watermark_not_the_others() -> None:
    engines = EdgeEngines()
    # Edge A is live; edge B replays a backlog from an hour earlier.
    assert brief(engines.observe("edge-a", "site-a", spo2("pt-a", 85, 0, 20))) == [("raised", "spo2_low", "high")]
    backlog_start = T0 - dt.timedelta(hours=1)
    changes = engines.observe("edge-b", "site-b", spo2("pt-b", 85, 0, 10, offset=backlog_start))
    assert changes == []  # 10 s of SpO2 85: the 15 s delay has not elapsed in edge B's time
    assert engines.watermark("edge-b") == backlog_start + dt.timedelta(seconds=9)
    changes = engines.observe("edge-b", "site-b", spo2("pt-b", 85, 10, 10, offset=backlog_start))
    assert brief(changes) == [("raised", "spo2_low", "high")]
    assert changes[0].alert.raised_at == backlog_start + dt.timedelta(seconds=15)  # as the edge raised it
    assert engines.patients() == {"pt-a": ("site-a", "edge-a"), "pt-b": ("site-b", "edge-b")}


def test_saved_engines_resume_exactly_where_they_stopped() -> None:
    first, second = EdgeEngines(), EdgeEngines()
    head, tail = spo2("pt-1", 86, 0, 10), spo2("pt-1", 86, 10, 30)
    first.observe("edge-a", "site-a", head)
    second.restore(first.save())
    assert second.watermark("edge-a") == first.watermark("edge-a")
    expected = first.observe("edge-a", "site-a", tail)
    resumed = second.observe("edge-a", "site-a", tail)
    assert [c.alert for c in resumed] == [c.alert for c in expected] and expected
    assert first.save() and first.save() == []  # only what changed since the last save


def test_unreadable_state_is_reported_and_that_edge_starts_afresh() -> None:
    engines = EdgeEngines()
    engines.observe("edge-a", "site-a", spo2("pt-1", 97, 0, 5))
    saved = engines.save()
    broken = [type(saved[0])(saved[0].edge_id, saved[0].site_id, saved[0].watermark, b"not zlib")]
    fresh = EdgeEngines()
    assert fresh.restore(broken) == ["edge-a"] and fresh.edges == ()
