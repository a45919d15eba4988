"""Telling the site's edge to start or stop recording a consultation's call (a signed `signal` command of
type `record`, which addresses the consultation rather than one participant).

Sent when consent is recorded or revoked (consent_routes.py), and again by any open call whose periodic
re-check finds the consent changed (signalling.py), so a command lost to a broker outage is made good
within `video.revalidate_s`. The edge acts on the latest word: start only while consent stands.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from cloud.api.auth.store import Conn
from cloud.video.commands import PublishError
from cloud.video.messages import record_args
from cloud.video.participants import site_edge
from cloud.video.runtime import VideoRuntime
from proto.messages import Command

log = logging.getLogger(__name__)


async def tell_edge(conn: Conn, runtime: VideoRuntime, *, site_id: str, consultation_id: uuid.UUID, record: bool,
                    consent_id: str | None) -> bool:
    """Publish the `record` command to the site's edge; whether it went out (False: no edge or no broker)."""
    edge_id = await site_edge(conn, site_id)
    if edge_id is None:
        return False
    try:
        publisher = await runtime.publisher()
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=runtime.settings.command_ttl_s)
        command = Command(command_id=uuid.uuid4(), name="signal", expires_at=expires,
                          args=record_args(consultation_id=str(consultation_id), record=record,
                                           consent_id=consent_id))
        publisher.publish(site_id=site_id, edge_id=edge_id, command=command)
    except PublishError as exc:
        log.error("video.record_command_not_sent", extra={"consultation_id": str(consultation_id),
                                                          "record": record, "error": str(exc)})
        return False
    log.info("video.record_command_sent", extra={"consultation_id": str(consultation_id), "record": record,
                                                 "edge_id": edge_id})
    return True
