"""Authentication core without a database: password hashes, tokens, throttling, scoping, token extraction."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid

import pytest

from cloud.api.auth.models import Role, User, parse_roles
from cloud.api.auth.passwords import (
    SALT_BYTES,
    PasswordHashError,
    hash_password,
    needs_rehash,
    verify_password,
)
from cloud.api.auth.ratelimit import LoginLimit, retry_after
from cloud.api.auth.scoping import SiteScope, site_scope
from cloud.api.auth.tokens import new_token, token_hash
from cloud.api.deps import request_token
from cloud.api.policy import load_policy
from proto.settings import SettingsError


def user(*roles: Role, site: str | None = None) -> User:
    return User(uuid.uuid4(), "u", "U", frozenset(roles), site)


def test_a_password_hash_is_salted_scrypt_and_not_the_password() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert "correct horse" not in first
    assert first != second  # fresh salt each time
    scheme, n, r, p, salt, digest = first.split("$")
    assert len(base64.b64decode(digest + "=" * (-len(digest) % 4))) == 32
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(base64.b64decode(salt + "=" * (-len(salt) % 4))) == SALT_BYTES
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horse!", first)
    assert not needs_rehash(first)


def test_verification_reads_the_cost_from_the_stored_hash() -> None:
    salt = b"s" * 16
    weak = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=8, p=1, dklen=32)
    stored = "$".join(["scrypt", "1024", "8", "1", base64_text(salt), base64_text(weak)])
    assert verify_password("pw", stored)
    assert needs_rehash(stored)


def base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("stored", ["", "bcrypt$x", "scrypt$3$8$1$c2FsdA$ZGln", "scrypt$1024$8$1$!!$ZGln",
                                    "scrypt$1024$0$1$c2FsdA$ZGln"])
def test_malformed_hashes_are_refused(stored: str) -> None:
    with pytest.raises(PasswordHashError):
        verify_password("pw", stored)


def test_tokens_are_random_and_stored_as_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) >= 43 and token_hash(token) == token_hash(token)
    assert len(token_hash(token)) == 32 and token.encode() not in token_hash(token)


def test_login_throttle_is_a_sliding_window() -> None:
    limit = LoginLimit(max_failures=3, window=dt.timedelta(minutes=10))
    now = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    minutes = [now - dt.timedelta(minutes=m) for m in (9, 5, 1)]
    assert retry_after(minutes[:2], now=now, limit=limit) is None
    assert retry_after(minutes, now=now, limit=limit) == dt.timedelta(minutes=1)  # the oldest leaves in 1 min
    old = [now - dt.timedelta(minutes=m) for m in (30, 20, 11)]
    assert retry_after(old, now=now, limit=limit) is None
    with pytest.raises(ValueError):
        LoginLimit(max_failures=0)


@pytest.mark.parametrize(
    ("roles", "site", "expected"),
    [
        ((Role.ADMIN,), None, SiteScope(True, frozenset())),
        ((Role.COUNTY_DOCTOR,), "a", SiteScope(False, frozenset({"a"}))),
        ((Role.EXPERT,), None, SiteScope(False, frozenset())),
        ((Role.ON_CALL,), "b", SiteScope(False, frozenset({"b"}))),
        ((Role.COUNTY_DOCTOR, Role.EXPERT), "a", SiteScope(False, frozenset({"a"}))),
        ((), "a", SiteScope(False, frozenset())),
    ],
)
def test_site_scope_rule(roles: tuple[Role, ...], site: str | None, expected: SiteScope) -> None:
    assert site_scope(user(*roles, site=site)) == expected


def test_scopes_allow_their_sites_only() -> None:
    county = site_scope(user(Role.COUNTY_DOCTOR, site="a"))
    assert county.allows("a") and not county.allows("b") and not county.allows(None)
    assert site_scope(user(Role.ADMIN)).allows(None)
    assert site_scope(user()).is_empty


def test_unknown_role_names_grant_nothing() -> None:
    assert parse_roles(["expert", "superuser"]) == frozenset({Role.EXPERT})


def test_token_comes_from_bearer_header_then_cookie() -> None:
    assert request_token("Bearer abc", "cookie") == "abc"
    assert request_token("bearer  abc ", None) == "abc"
    assert request_token("Basic dXNlcjpwdw==", "cookie") is None  # a wrong scheme is not silently replaced
    assert request_token(None, "cookie") == "cookie"
    assert request_token(None, None) is None


def test_policy_reads_nested_api_variables() -> None:
    policy = load_policy({"TELEMED_API__SESSION_TTL_S": "3600", "TELEMED_API__HOST": "0.0.0.0"})
    assert policy.session_ttl == dt.timedelta(hours=1)
    with pytest.raises(SettingsError):
        load_policy({"TELEMED_API__FHIR_TIMEZONE": "Mars/Olympus"})
    with pytest.raises(SettingsError):
        load_policy({"TELEMED_API__LOGIN_MAX_FAILURES": "many"})
