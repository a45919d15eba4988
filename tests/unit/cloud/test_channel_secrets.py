"""Channels' secrets are sealed at rest under the identity key ring and open only where they were sealed."""

from __future__ import annotations

import json
import uuid

import pytest

from cloud.alerting.channel_secrets import SEALED, is_sealed, open_config, seal_config
from cloud.alerting.errors import ChannelConfigError
from cloud.identity.crypto import KeyRing

CHANNEL = uuid.UUID(int=11)
CONFIG = {"url": "https://oapi.dingtalk.com/robot/send?access_token=TOKEN123", "secret": "SECabc", "timeout_s": 5}


def test_secrets_are_sealed_and_open_again() -> None:
    ring = KeyRing.generate()
    stored = seal_config(ring, CHANNEL, CONFIG)
    assert is_sealed(stored["url"]) and is_sealed(stored["secret"]) and stored["timeout_s"] == 5
    text = json.dumps(stored)
    assert "TOKEN123" not in text and "SECabc" not in text
    assert seal_config(ring, CHANNEL, CONFIG)["secret"] != stored["secret"]  # a fresh nonce every time
    assert open_config(ring, CHANNEL, stored) == CONFIG


def test_a_sealed_secret_opens_only_for_its_channel_and_key_and_ring() -> None:
    ring = KeyRing.generate()
    stored = seal_config(ring, CHANNEL, CONFIG)
    with pytest.raises(ChannelConfigError, match="url cannot be decrypted"):
        open_config(ring, uuid.UUID(int=12), stored)  # copied to another channel
    with pytest.raises(ChannelConfigError, match="url cannot be decrypted"):
        open_config(ring, CHANNEL, {"url": stored["secret"]})  # moved to another key
    with pytest.raises(ChannelConfigError, match="cannot be decrypted"):
        open_config(KeyRing.generate(), CHANNEL, stored)
    with pytest.raises(ChannelConfigError, match="no identity keys"):
        open_config(None, CHANNEL, stored)
    with pytest.raises(ChannelConfigError, match="cannot be decrypted"):
        open_config(ring, CHANNEL, {"secret": {SEALED: "not base64!"}})


def test_rotation_keeps_sealed_secrets_readable_and_plain_legacy_values_open_as_they_are() -> None:
    ring = KeyRing.generate()
    stored = seal_config(ring, CHANNEL, CONFIG)
    assert open_config(ring.rotated(), CHANNEL, stored) == CONFIG
    assert open_config(None, CHANNEL, CONFIG) == CONFIG
