"""On-call schedules: rotations with local handoffs, overrides, departments, and who is on call now and next."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest

from cloud.alerting.errors import ScheduleError
from cloud.alerting.oncall import Department, OnCallBook, Override, Rotation, department_for

SHANGHAI = ZoneInfo("Asia/Shanghai")
WANG, LI, ZHAO, CHEN = (uuid.uuid5(uuid.NAMESPACE_DNS, n) for n in ("wang", "li", "zhao", "chen"))


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: ZoneInfo = SHANGHAI
          ) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=tz)


def daily(*members: uuid.UUID, **kwargs: object) -> Rotation:
    fields: dict[str, object] = {"anchor": dt.date(2026, 3, 2), "handoff": dt.time(8, 0)}
    fields.update(kwargs)
    return Rotation(uuid.uuid4(), "anxian", "icu", "primary", members, **fields)  # type: ignore[arg-type]


def test_a_daily_rota_hands_over_at_eight_in_the_morning_local_time() -> None:
    rota = daily(WANG, LI, ZHAO)
    assert rota.shift_at(local(2026, 3, 2, 8, 0)).user_id == WANG
    assert rota.shift_at(local(2026, 3, 3, 7, 59)).user_id == WANG  # night shift until the handoff
    shift = rota.shift_at(local(2026, 3, 3, 8, 0))
    assert shift.user_id == LI
    assert (shift.starts_at, shift.ends_at) == (local(2026, 3, 3, 8).astimezone(dt.UTC),
                                                local(2026, 3, 4, 8).astimezone(dt.UTC))
    assert rota.shift_at(local(2026, 3, 5, 12, 0)).user_id == WANG  # round and round
    assert rota.shift_at(local(2026, 3, 1, 12, 0)).user_id == ZHAO  # before the anchor, backwards


def test_the_answer_does_not_depend_on_the_zone_the_question_is_asked_in() -> None:
    rota = daily(WANG, LI)
    instant = local(2026, 3, 3, 7, 30)
    assert rota.shift_at(instant).user_id == rota.shift_at(instant.astimezone(dt.UTC)).user_id == WANG
    with pytest.raises(ScheduleError):
        rota.shift_at(dt.datetime(2026, 3, 3, 7, 30))  # naive: which 07:30?


def test_a_weekly_rota_hands_over_on_its_weekday() -> None:
    rota = daily(WANG, LI, period="weekly", handoff_weekday=0, handoff=dt.time(9, 0), anchor=dt.date(2026, 3, 4))
    # The first handoff on or after the anchor (a Wednesday) is Monday 9 March, 09:00.
    assert rota.shift_at(local(2026, 3, 9, 9, 0)).user_id == WANG
    assert rota.shift_at(local(2026, 3, 15, 23, 0)).user_id == WANG
    assert rota.shift_at(local(2026, 3, 16, 8, 59)).user_id == WANG
    shift = rota.shift_at(local(2026, 3, 16, 9, 0))
    assert shift.user_id == LI and shift.ends_at - shift.starts_at == dt.timedelta(days=7)


def test_handoffs_keep_their_local_time_across_a_daylight_saving_change() -> None:
    new_york = ZoneInfo("America/New_York")  # DST began 2026-03-08 at 02:00
    rota = daily(WANG, LI, timezone="America/New_York", anchor=dt.date(2026, 3, 7))
    shift = rota.shift_at(local(2026, 3, 7, 12, tz=new_york))
    assert shift.user_id == WANG
    assert shift.ends_at - shift.starts_at == dt.timedelta(hours=23)
    assert shift.ends_at == local(2026, 3, 8, 8, tz=new_york).astimezone(dt.UTC)


def test_an_override_wins_while_it_lasts_and_cuts_the_rota_shift_around_it() -> None:
    rota = daily(WANG, LI)
    sick = Override(uuid.uuid4(), "anxian", "icu", "primary", CHEN, local(2026, 3, 2, 14), local(2026, 3, 2, 20),
                    reason="swap")
    book = OnCallBook([], [rota], [sick])
    assert book.on_call("anxian", "icu", "primary", local(2026, 3, 2, 15)).user_id == CHEN  # type: ignore[union-attr]
    before = book.on_call("anxian", "icu", "primary", local(2026, 3, 2, 10))
    assert before is not None and before.user_id == WANG and before.ends_at == sick.starts_at
    after = book.on_call("anxian", "icu", "primary", local(2026, 3, 2, 21))
    assert after is not None and after.user_id == WANG and after.starts_at == sick.ends_at
    assert book.on_call("anxian", "icu", "secondary", local(2026, 3, 2, 15)) is None


def test_next_is_the_following_shift_with_another_person() -> None:
    rota = daily(WANG, LI)
    book = OnCallBook([], [rota], [])
    now = book.who("anxian", "icu", "primary", local(2026, 3, 2, 10))
    assert now.now is not None and now.next is not None
    assert (now.now.user_id, now.next.user_id) == (WANG, LI) and now.next.starts_at == now.now.ends_at
    override = Override(uuid.uuid4(), "anxian", "icu", "primary", CHEN, local(2026, 3, 2, 12), local(2026, 3, 2, 13))
    book = OnCallBook([], [rota], [override])
    following = book.next_shift("anxian", "icu", "primary", local(2026, 3, 2, 10))
    assert following is not None and following.user_id == CHEN and following.source == "override"
    alone = OnCallBook([], [daily(WANG)], [])
    single = alone.next_shift("anxian", "icu", "primary", local(2026, 3, 2, 10))
    assert single is not None and single.user_id == WANG and single.starts_at == local(2026, 3, 3, 8).astimezone(dt.UTC)


def test_departments_cover_their_wards_and_the_default_covers_the_rest() -> None:
    icu = Department("anxian", "icu", "ICU", "重症医学科", WANG, ("ICU", "CCU"))
    general = Department("anxian", "general", "General", "综合病区", LI, (), is_default=True)
    other = Department("pingxiang", "general", "General", None, None, (), is_default=True)
    departments = [icu, general, other]
    assert department_for(departments, "anxian", "CCU") == icu
    assert department_for(departments, "anxian", "Ward 3") == general
    assert department_for(departments, "anxian", None) == general
    assert department_for(departments, "pingxiang", "ICU") == other
    assert department_for(departments, "nowhere", "ICU") is None


@pytest.mark.parametrize("bad", [
    {"members": ()}, {"timezone": "Mars/Olympus"}, {"handoff_weekday": 7}, {"period": "monthly"},
    {"handoff": dt.time(8, 0, tzinfo=dt.UTC)},
])
def test_malformed_rotations_are_refused(bad: dict[str, object]) -> None:
    bad = dict(bad)
    members = bad.pop("members", (WANG,))
    assert isinstance(members, tuple)
    with pytest.raises(ScheduleError):
        daily(*members, **bad)


def test_an_override_must_end_after_it_starts() -> None:
    with pytest.raises(ScheduleError):
        Override(uuid.uuid4(), "anxian", "icu", "primary", CHEN, local(2026, 3, 2, 14), local(2026, 3, 2, 14))
