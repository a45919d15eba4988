"""Typed errors of the edge's video relay. Each carries a short machine-readable `reason` for the caller."""

from __future__ import annotations


class VideoError(Exception):
    """Base class; `reason` is what the signalling reply tells the browser."""

    reason = "video_error"


class SourceError(VideoError):
    """A local source could not be opened or is not configured."""

    reason = "source_unavailable"


class ViewersFullError(VideoError):
    """A source already has its maximum number of viewers."""

    reason = "viewers_full"

    def __init__(self, source: str, limit: int) -> None:
        super().__init__(f"source {source!r} already has its maximum of {limit} viewers")
        self.source = source
        self.limit = limit


class SignalError(VideoError):
    """A signalling message the edge cannot act on (malformed, unknown type, wrong state)."""

    reason = "bad_signal"


class NegotiationError(VideoError):
    """The WebRTC offer could not be answered (SDP the peer connection refuses)."""

    reason = "negotiation_failed"
