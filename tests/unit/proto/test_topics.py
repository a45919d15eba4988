"""Topic building and parsing: only the contract's topics are accepted."""

from __future__ import annotations

import pytest

from proto import topics
from proto.topics import Direction, Stream, Topic, TopicError


def test_build_and_parse_are_inverse() -> None:
    text = topics.build("county-a", "edge-01", Stream.VITALS)
    assert text == "telemed/v1/county-a/edge-01/up/vitals"
    assert topics.parse(text) == Topic("county-a", "edge-01", Stream.VITALS)
    assert topics.parse("telemed/v1/county-a/edge-01/down/cmd").direction is Direction.DOWN


@pytest.mark.parametrize("bad", [
    "telemed/v1/county-a/edge-01/up/cmd",  # downlink stream on the uplink
    "telemed/v1/county-a/edge-01/down/vitals",
    "telemed/v2/county-a/edge-01/up/vitals",
    "telemed/v1/county-a/+/up/vitals",
    "telemed/v1/county-a/#",
    "telemed/v1/county-a/edge-01/up/vitals/extra",
    "other/v1/county-a/edge-01/up/vitals",
    "telemed/v1//edge-01/up/vitals",
    "telemed/v1/county a/edge-01/up/vitals",
    "telemed/v1/county-a/edge-01/up/selfies",
])
def test_parse_rejects_anything_else(bad: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(bad)


@pytest.mark.parametrize(("site", "edge"), [("+", "e"), ("s", "#"), ("s/x", "e"), ("", "e"), ("s", "e" * 65)])
def test_build_rejects_wildcards_and_separators(site: str, edge: str) -> None:
    with pytest.raises(TopicError):
        topics.build(site, edge, "vitals")


def test_subscriptions() -> None:
    assert topics.ingest_subscription() == "$share/ingest/telemed/v1/+/+/up/#"
    assert topics.downlink_subscription("county-a", "edge-01") == "telemed/v1/county-a/edge-01/down/#"
