"""`video.*` settings of the cloud: ICE servers for calls and the signalling relay's limits.

Read from `CloudSettings.video` when the cloud settings carry that section, else from the environment
(`TELEMED_VIDEO__STUN_URLS=stun:stun.example.cn:3478`, `TELEMED_VIDEO__TURN_SECRET=...`), so the feature
works before the section is added to the cloud's settings file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from proto.settings import load_settings


@dataclass(frozen=True)
class VideoSettings:
    """ICE servers handed to both peers of a call, and limits of the signalling WebSocket."""

    stun_urls: tuple[str, ...] = ()  # e.g. stun:turn.example.cn:3478
    turn_urls: tuple[str, ...] = ()  # e.g. turn:turn.example.cn:3478?transport=udp, turns:turn.example.cn:5349
    turn_secret: str = field(default="", repr=False)  # coturn `static-auth-secret` (use-auth-secret)
    turn_ttl_s: int = 3600  # lifetime of issued TURN credentials
    command_ttl_s: float = 30.0  # a signal the edge has not run by then is dropped (a stale offer is useless)
    revalidate_s: float = 30.0  # how often an open call re-checks the login session and the participation
    max_message_bytes: int = 65_536
    messages_per_s: float = 20.0  # per connection (token bucket, burst 3 s worth): trickled candidates fit
    mqtt_connect_timeout_s: float = 10.0
    recording_dir: str = ""  # sealed recordings; "" = `recordings` beside the DICOM store (dicom.store_dir)
    max_recording_bytes: int = 4 << 30  # one upload; a 2-hour call at the recording's 1 Mbit/s is ~1 GB

    def __post_init__(self) -> None:
        for url in self.stun_urls:
            if not url.startswith("stun:"):
                raise ValueError(f"video.stun_urls: {url!r} is not a stun: URL")
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"video.turn_urls: {url!r} is not a turn:/turns: URL")
        if self.turn_urls and not self.turn_secret:
            raise ValueError("video.turn_secret is required with turn_urls (coturn use-auth-secret)")
        if not 60 <= self.turn_ttl_s <= 86_400:
            raise ValueError("video.turn_ttl_s must be 60..86400")
        for name in ("command_ttl_s", "revalidate_s", "messages_per_s", "mqtt_connect_timeout_s",
                     "max_recording_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"video.{name} must be positive")


@dataclass(frozen=True)
class _Root:
    video: VideoSettings = field(default_factory=VideoSettings)


def video_settings(cloud: object, *, environ: Mapping[str, str] = os.environ) -> VideoSettings:
    """The video section of the cloud settings, or one read from `TELEMED_VIDEO__*` variables."""
    section = getattr(cloud, "video", None)
    if isinstance(section, VideoSettings):
        return section
    return load_settings(_Root, environ=environ).video
