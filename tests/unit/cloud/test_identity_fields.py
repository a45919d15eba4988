"""National ID numbers (GB 11643-1999), phone and name normalisation, and identity cross-checks."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.identity.fields import (
    Identity,
    IdentityFieldError,
    lookup_national_id,
    normalise_identity,
    normalise_name,
    normalise_phone,
)
from cloud.identity.national_id import NationalIdError, check_character, parse_national_id

TODAY = dt.date(2024, 5, 1)


@pytest.mark.parametrize(("number", "birth", "sex"), [
    ("11010519491231002X", dt.date(1949, 12, 31), "female"),  # the example in GB 11643-1999
    ("440524188001010014", dt.date(1880, 1, 1), "male"),  # the standard's second example
    ("11010519491231002x", dt.date(1949, 12, 31), "female"),  # lower-case x is normalised
    (" 4405 2418 8001 0100 14 ", dt.date(1880, 1, 1), "male"),
])
def test_valid_numbers_parse_with_birth_date_and_sex(number: str, birth: dt.date, sex: str) -> None:
    parsed = parse_national_id(number, today=TODAY)
    assert (parsed.birth_date, parsed.sex) == (birth, sex)
    assert parsed.number == "".join(number.split()).upper()


def test_the_check_character_follows_iso_7064_mod_11_2() -> None:
    # S = sum(d_i * W_i); check = CHECK_CHARS[S mod 11]; for 11010519491231002: S = 167, 167 mod 11 = 2 -> "X".
    digits = "11010519491231002"
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    assert sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 11 == 2
    assert check_character(digits) == "X"


@pytest.mark.parametrize(("number", "reason"), [
    ("110105194912310021", "check character"),
    ("11010519491231002", "17 digits"),
    ("1101051949123100211", "17 digits"),
    ("11010519491231002Y", "17 digits"),
    ("991051949123100201", "address code"),
    ("110105194902300029", "calendar date"),  # 30 February
    ("110105187912310026", "out of range"),  # born 1879
    ("110105203001010011", "out of range"),  # born in the future
])
def test_invalid_numbers_say_why_without_echoing_the_number(number: str, reason: str) -> None:
    body = number[:17]
    if reason not in ("check character", "17 digits"):
        number = body + check_character(body)  # a correct check character: the other rule must reject it
    with pytest.raises(NationalIdError) as caught:
        parse_national_id(number, today=TODAY)
    assert reason in str(caught.value)
    assert number not in str(caught.value)


@given(position=st.integers(min_value=0, max_value=16), delta=st.integers(min_value=1, max_value=9))
def test_every_single_digit_error_is_caught(position: int, delta: int) -> None:
    """MOD 11-2 detects all single substitution errors (ISO 7064 section 5)."""
    number = "11010519491231002X"
    wrong = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1:]
    with pytest.raises(NationalIdError):
        parse_national_id(wrong, today=TODAY)


def test_adjacent_transpositions_are_caught() -> None:
    number = "440524188001010014"
    for i in range(16):
        if number[i] != number[i + 1]:
            swapped = number[:i] + number[i + 1] + number[i] + number[i + 2:]
            with pytest.raises(NationalIdError):
                parse_national_id(swapped, today=TODAY)


@pytest.mark.parametrize(("typed", "normalised"), [
    ("138 0013 8000", "13800138000"), ("+86 138-0013-8000", "13800138000"), ("0086 13800138000", "13800138000"),
    ("010-12345678", "01012345678"), ("+86 10 1234 5678", "01012345678"), ("(0755) 1234-5678", "075512345678"),
    ("+1 415 555 0100", "+14155550100"), ("001 415 555 0100", "+14155550100"),
])
def test_phones_normalise_to_one_form(typed: str, normalised: str) -> None:
    assert normalise_phone(typed) == normalised


@pytest.mark.parametrize("bad", ["12345", "23800138000", "1380013800", "phone", "+0123456789"])
def test_impossible_phones_are_refused(bad: str) -> None:
    with pytest.raises(IdentityFieldError) as caught:
        normalise_phone(bad)
    assert caught.value.field == "phone"


def test_names_are_nfc_and_trimmed() -> None:
    assert normalise_name("  阿依古丽·买买提 ") == "阿依古丽·买买提"
    assert normalise_name("Ze\u0301 Li") == "Zé Li"
    for bad in ("", "   ", "张\x00三", "名" * 65):
        with pytest.raises(IdentityFieldError):
            normalise_name(bad)


def test_sex_and_birth_date_come_from_the_national_id() -> None:
    identity = normalise_identity(Identity(name="张三", national_id="440524188001010014"), today=TODAY)
    assert (identity.sex, identity.birth_date, identity.birth_year) == ("male", dt.date(1880, 1, 1), 1880)


def test_contradictions_with_the_national_id_are_refused() -> None:
    with pytest.raises(IdentityFieldError) as caught:
        normalise_identity(Identity(national_id="440524188001010014", sex="female"), today=TODAY)
    assert caught.value.field == "sex"
    with pytest.raises(IdentityFieldError) as caught:
        normalise_identity(Identity(national_id="440524188001010014", birth_date=dt.date(1980, 1, 1)), today=TODAY)
    assert caught.value.field == "birth_date"
    # "other" and "unknown" are administrative choices the number does not contradict.
    assert normalise_identity(Identity(national_id="440524188001010014", sex="unknown"), today=TODAY).sex == "unknown"


def test_future_birth_dates_are_refused() -> None:
    with pytest.raises(IdentityFieldError):
        normalise_identity(Identity(birth_date=TODAY + dt.timedelta(days=1)), today=TODAY)


def test_lookup_values_are_validated_so_typos_are_not_silent_misses() -> None:
    assert lookup_national_id("11010519491231002x") == "11010519491231002X"
    with pytest.raises(IdentityFieldError):
        lookup_national_id("110105194912310021")
