"""Notification channels' secrets encrypted at rest under the identity key ring (pure: no I/O).

A channel's configuration holds credentials: a webhook's HMAC secret, an SMTP password, a WeCom or DingTalk
robot URL (its access key is in the query). They are stored as `{"$sealed": "<base64>"}` in place of the
value, encrypted with the ring's current data key (cloud/identity/crypto.py: AES-256-GCM, the key version in
the ciphertext) and bound to the channel and the config key as associated data, so a sealed value copied to
another channel or key does not open. Old key versions stay in the ring after a rotation, so sealed values
keep opening; saving the channel again re-seals under the current key.

Values stored before sealing (plain strings) still open as they are: nothing is lost on upgrade, and the
next save seals them.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from typing import Any, Final

from cloud.alerting.errors import ChannelConfigError
from cloud.alerting.notify.channels import SECRET_KEYS
from cloud.identity.crypto import IdentityCryptoError, KeyRing, decrypt_field, encrypt_field

SEALED: Final = "$sealed"
_TABLE: Final = "notification_channels"


def _column(key: str) -> str:
    return f"config.{key}"


def is_sealed(value: Any) -> bool:
    """Whether a stored config value is a sealed secret."""
    return isinstance(value, dict) and set(value) == {SEALED}


def seal_config(ring: KeyRing, channel_id: uuid.UUID, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as stored: every non-empty secret sealed, everything else as given."""
    sealed: dict[str, Any] = {}
    for key, value in config.items():
        if key in SECRET_KEYS and isinstance(value, str) and value:
            blob = encrypt_field(ring, value, table=_TABLE, column=_column(key), row_id=str(channel_id))
            sealed[key] = {SEALED: base64.b64encode(blob).decode("ascii")}
        else:
            sealed[key] = value
    return sealed


def open_config(ring: KeyRing | None, channel_id: uuid.UUID, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config a channel is built from; ChannelConfigError when a sealed secret cannot be opened."""
    opened: dict[str, Any] = {}
    for key, value in config.items():
        if not is_sealed(value):
            opened[key] = value
            continue
        if ring is None:
            raise ChannelConfigError(f"the channel's {key} is encrypted and this process has no identity keys")
        try:
            blob = base64.b64decode(value[SEALED], validate=True)
            opened[key] = decrypt_field(ring, blob, table=_TABLE, column=_column(key), row_id=str(channel_id))
        except (binascii.Error, ValueError, IdentityCryptoError) as exc:
            raise ChannelConfigError(f"the channel's {key} cannot be decrypted: {exc}") from None
    return opened
