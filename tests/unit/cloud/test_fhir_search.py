"""FHIR search parameters: date prefixes and precision, code tokens, _count and the paging cursor."""

from __future__ import annotations

import datetime as dt

import pytest

from cloud.api.fhir_resources import LOINC, loinc_index
from cloud.api.fhir_search import (
    Cursor,
    SearchParameterError,
    TimeRange,
    parse_codes,
    parse_count,
    parse_cursor,
    parse_dates,
    parse_reference,
)

UTC = dt.UTC
SHANGHAI = "Asia/Shanghai"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T08:00:00Z", TimeRange(utc(2024, 5, 1, 8), utc(2024, 5, 1, 8, 0, 1))),
        ("eq2024-05-01T08:00Z", TimeRange(utc(2024, 5, 1, 8), utc(2024, 5, 1, 8, 1))),
        ("ge2024-05-01T08:00:00Z", TimeRange(lower=utc(2024, 5, 1, 8))),
        ("gt2024-05-01T08:00:00Z", TimeRange(lower=utc(2024, 5, 1, 8, 0, 1))),
        ("le2024-05-01T08:00:00Z", TimeRange(upper=utc(2024, 5, 1, 8, 0, 1))),
        ("lt2024-05-01T08:00:00Z", TimeRange(upper=utc(2024, 5, 1, 8))),
        ("2024-05-01T08:00:00.5+08:00", TimeRange(utc(2024, 5, 1, 0, 0, 0, 500000), utc(2024, 5, 1, 0, 0, 0, 600000))),
        # Without an offset, dates are local to the configured zone (UTC+8, no DST).
        ("2024-05-01", TimeRange(utc(2024, 4, 30, 16), utc(2024, 5, 1, 16))),
        ("2024-12", TimeRange(utc(2024, 11, 30, 16), utc(2024, 12, 31, 16))),
        ("2024", TimeRange(utc(2023, 12, 31, 16), utc(2024, 12, 31, 16))),
    ],
)
def test_a_date_selects_the_interval_its_precision_implies(value: str, expected: TimeRange) -> None:
    assert parse_dates([value], default_tz=SHANGHAI) == expected


def test_repeated_dates_are_anded() -> None:
    got = parse_dates(["ge2024-05-01T00:00:00Z", "lt2024-05-02T00:00:00Z"], default_tz=SHANGHAI)
    assert got == TimeRange(utc(2024, 5, 1), utc(2024, 5, 2))
    assert parse_dates(["ge2024-05-02T00:00:00Z", "lt2024-05-01T00:00:00Z"], default_tz=SHANGHAI).empty


@pytest.mark.parametrize("value", ["ne2024-05-01", "sa2024", "2024-13-01", "2024-02-30", "yesterday", "2024-05-01T08"])
def test_bad_dates_name_the_parameter(value: str) -> None:
    with pytest.raises(SearchParameterError) as err:
        parse_dates([value], default_tz=SHANGHAI)
    assert err.value.parameter == "date"


def test_codes_accept_bare_and_system_qualified_tokens() -> None:
    index = loinc_index()
    assert parse_codes([], loinc_index=index, loinc_system=LOINC) is None
    assert parse_codes(["8867-4"], loinc_index=index, loinc_system=LOINC) == frozenset({"heart_rate"})
    both = parse_codes([f"{LOINC}|8867-4,2708-6"], loinc_index=index, loinc_system=LOINC)
    assert both == frozenset({"heart_rate", "spo2"})
    assert parse_codes(["http://snomed.info/sct|8867-4"], loinc_index=index, loinc_system=LOINC) == frozenset()
    assert parse_codes(["|8867-4"], loinc_index=index, loinc_system=LOINC) == frozenset()
    assert parse_codes(["99999-9"], loinc_index=index, loinc_system=LOINC) == frozenset()
    assert parse_codes([f"{LOINC}|"], loinc_index=index, loinc_system=LOINC) == frozenset(index.values())
    # Repeated parameters are ANDed: an Observation has one code, so different codes match nothing.
    assert parse_codes(["8867-4", "59408-5"], loinc_index=index, loinc_system=LOINC) == frozenset()


def test_count_bounds() -> None:
    assert parse_count(None) == 100
    assert parse_count("1000") == 1000
    for bad in ("0", "1001", "ten"):
        with pytest.raises(SearchParameterError):
            parse_count(bad)


def test_cursor_round_trips_and_rejects_garbage() -> None:
    cursor = Cursor(1_714_550_400_000_000, 1, "hrm-7")
    assert parse_cursor(cursor.encode()) == cursor
    assert parse_cursor(None) is None
    for bad in ("!!", "bm90IGpzb24", "WzEsMl0"):
        with pytest.raises(SearchParameterError):
            parse_cursor(bad)


def test_references_take_bare_ids_typed_ids_and_urls() -> None:
    assert parse_reference("P-001", "Patient") == "P-001"
    assert parse_reference("Patient/P-001", "Patient") == "P-001"
    assert parse_reference("https://x/fhir/Patient/P-001", "Patient") == "P-001"
    with pytest.raises(SearchParameterError):
        parse_reference("Device/hrm-7", "Patient")
