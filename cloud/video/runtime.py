"""What the call routes share inside one API process: settings and the command publisher (started lazily).

Nothing connects to the broker until the first call: API processes that never carry a call (and the test
suites of other features) open no MQTT connection and need no cloud key.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from cloud.edges import cloud_key
from cloud.settings import CloudSettings
from cloud.video.commands import CommandPublisher, PublishError
from cloud.video.settings import VideoSettings


@dataclass(eq=False)
class VideoRuntime:
    cloud: CloudSettings
    settings: VideoSettings
    _publisher: CommandPublisher | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def publisher(self) -> CommandPublisher:
        """The connected publisher; PublishError when the broker or the cloud key is unusable."""
        async with self._lock:
            if self._publisher is None:
                try:
                    signer = cloud_key.load_or_create(self.cloud.keys.cloud_key_path)
                except cloud_key.CloudKeyError as exc:
                    raise PublishError(str(exc)) from exc
                publisher = CommandPublisher(self.cloud.mqtt, signer)
                await asyncio.to_thread(publisher.start, self.settings.mqtt_connect_timeout_s)
                self._publisher = publisher
            return self._publisher

    async def close(self) -> None:
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._publisher.stop)
            self._publisher = None
