"""Video consultation at the edge: local sources relayed over WebRTC (aiortc) to a consultation's participants.

Wiring (the edge service's composition root):

    send = event_sender(outbox.enqueue)               # replies become Event(event_type="signal")
    spool, uploader = recording_pipeline(settings, base_dir=..., signer=RequestSigner(edge_id, key))  # or None
    calls = VideoCalls(settings.video, send=send, spool=spool, on_sealed=uploader.wake)  # on the event loop
    register_video(commands, calls=calls, loop=asyncio.get_running_loop(), send=send)
    uploader.start()
    ...
    await calls.close()                                # on shutdown, before the uplink and the outbox stop
    uploader.stop()                                    # sealed recordings wait on disk for the next start

See docs/video.md for the signalling path, the quality ladder, the cost model and recording.
"""

from edge.settings import VideoSettings
from edge.video.calls import Participant, VideoCalls
from edge.video.errors import NegotiationError, SignalError, SourceError, VideoError, ViewersFullError
from edge.video.handlers import event_sender, register_video
from edge.video.ladder import DEFAULT_LADDER, LadderPolicy, LadderState, LinkReport, Rung
from edge.video.sources import SourceCatalog, SyntheticVideoTrack

__all__ = [
    "DEFAULT_LADDER",
    "LadderPolicy",
    "LadderState",
    "LinkReport",
    "NegotiationError",
    "Participant",
    "Rung",
    "SignalError",
    "SourceCatalog",
    "SourceError",
    "SyntheticVideoTrack",
    "VideoCalls",
    "VideoError",
    "VideoSettings",
    "ViewersFullError",
    "event_sender",
    "register_video",
]
