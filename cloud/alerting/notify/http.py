"""One HTTP POST with the standard library (the cloud does not ship an HTTP client), errors classified.

Worth another attempt: connection failures, timeouts, 408 Request Timeout (RFC 9110 section 15.5.9),
429 Too Many Requests (RFC 6585 section 4) and 5xx. Other 4xx answers are permanent: the request itself is
wrong (bad URL, revoked key) and repeating it cannot help.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cloud.alerting.errors import DeliveryError

_RETRY_STATUS: Final = frozenset({408, 429})
_MAX_RESPONSE: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: bytes


def transient_status(status: int) -> bool:
    return status in _RETRY_STATUS or status >= 500


def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float) -> HttpResponse:
    """POST `body`; the response of a 2xx answer, else DeliveryError (transient or not, see module doc)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # channels check the scheme at setup
            return HttpResponse(response.status, response.read(_MAX_RESPONSE))
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} from {_host(url)}", transient=transient_status(exc.code)) from None
    except OSError as exc:  # URLError, timeouts, refused and reset connections
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"cannot reach {_host(url)}: {reason}", transient=True) from None


def _host(url: str) -> str:
    """The URL without path and query (which may carry an access token) for messages and logs."""
    return urllib.parse.urlsplit(url).netloc or "?"


def check_url(url: str, what: str) -> str:
    """`url` if it is http(s) with a host; raises ValueError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what} must be an http(s) URL, got {url!r}")
    return url
