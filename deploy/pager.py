"""The demo pager of `make run`: a local receiver for the alerting service's signed webhook pages.

`make run` points the on-call rotas' contact channel at this receiver, so the pages that the deteriorating
simulated patient causes are really delivered (HMAC-signed HTTP, retried by the cloud on failure) and the
launcher can show who was paged. A real site points the same channel at its WeCom or DingTalk robot or its
own paging gateway instead (docs/alerting.md).

The receiver checks each request's signature and freshness the way any webhook receiver should
(`cloud.alerting.notify.webhook.verify_signature`), answers 401 to a forged or stale one, and reports each
delivery once even when the cloud retries it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cloud.alerting.notify.webhook import DELIVERY_HEADER, verify_signature

log = logging.getLogger("deploy.pager")

MAX_BODY_BYTES = 256 * 1024
SEEN_DELIVERIES = 4096  # retries of one delivery arrive within minutes; remember this many ids


@dataclass(frozen=True, slots=True)
class ReceivedPage:
    """One page as the receiver saw it: who was paged, about what, at which escalation step."""

    delivery_id: str
    recipient: str
    priority: str
    site: str
    patient_id: str
    bed: str | None
    message: str
    step: int
    tier: str
    state: str

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ReceivedPage:
        """Parse a `telemed.page` document (raises KeyError or TypeError when it is not one)."""
        if document.get("type") != "telemed.page":
            raise TypeError(f"not a telemed.page document: {document.get('type')!r}")
        incident, recipient, escalation = document["incident"], document["recipient"], document["escalation"]
        return cls(
            delivery_id=str(document["delivery_id"]),
            recipient=str(recipient.get("display_name") or recipient["username"]),
            priority=str(incident["priority"]),
            site=str(incident.get("site_name") or incident["site_id"]),
            patient_id=str(incident["patient_id"]),
            bed=incident.get("bed"),
            message=str(incident["message"]),
            step=int(escalation["step"]),
            tier=str(escalation["tier"]),
            state=str(incident["state"]),
        )

    def line(self) -> str:
        """One terminal line: `PAGE high -> 李医生 (primary, step 1) 平乡县医院 P003 bed 3: ...`."""
        where = f"{self.site} {self.patient_id}" + (f" bed {self.bed}" if self.bed else "")
        return (f"PAGE {self.priority:<6} -> {self.recipient} ({self.tier}, step {self.step}) "
                f"{where}: {self.message} [{self.state}]")


class DemoPager:
    """A loopback HTTP server that verifies signed pages and hands each new one to `on_page`."""

    def __init__(self, secret: str, on_page: Callable[[ReceivedPage], None], *, host: str = "127.0.0.1",
                 port: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self._secret = secret.encode()
        self._on_page = on_page
        self._clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/pages"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-pager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DemoPager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def receive(self, headers: Mapping[str, str], body: bytes) -> int:
        """Check and record one delivery; the HTTP status to answer."""
        if not verify_signature(self._secret, headers, body, now=self._clock()):
            log.warning("pager.rejected reason=signature delivery=%s", headers.get(DELIVERY_HEADER, "-"))
            return 401
        try:
            page = ReceivedPage.from_document(json.loads(body))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("pager.rejected reason=document error=%s", exc)
            return 400
        with self._lock:
            if page.delivery_id in self._seen:
                return 200  # a retry of a delivery we already showed
            self._seen[page.delivery_id] = None
            if len(self._seen) > SEEN_DELIVERIES:
                self._seen.popitem(last=False)
        self._on_page(page)
        return 200


def _handler_for(pager: DemoPager) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/pages" or not 0 < length <= MAX_BODY_BYTES:
                self.send_error(404 if self.path != "/pages" else 413)
                return
            status = pager.receive(dict(self.headers.items()), self.rfile.read(length))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("pager.http " + format, *args)

    return Handler
