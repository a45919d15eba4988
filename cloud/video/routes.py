"""Routes of video consultation: the call WebSocket, the browser module the dashboard imports, recording
consent (consent_routes.py) and recordings (cloud/recordings/routes.py).

Included in the app with `app.include_router(video_routes.router_for(settings))`; the router's lifespan
(merged into the app's by FastAPI) owns the runtime and stops its MQTT connection at shutdown.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.responses import FileResponse

from cloud.recordings import routes as recording_routes
from cloud.settings import CloudSettings
from cloud.video import consent_routes
from cloud.video.runtime import VideoRuntime
from cloud.video.settings import video_settings
from cloud.video.signalling import serve_call

CALL_JS: Final = Path(__file__).parent / "static" / "call.js"
CALL_CSS: Final = CALL_JS.with_name("call.css")


def router_for(settings: CloudSettings) -> APIRouter:
    """The video router for an app built from `settings`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = VideoRuntime(cloud=settings, settings=video_settings(settings))
        app.state.video = runtime
        try:
            yield
        finally:
            await runtime.close()

    router = APIRouter(tags=["video"], lifespan=lifespan)
    router.include_router(consent_routes.router)
    router.include_router(recording_routes.router_for(settings))

    @router.websocket("/api/consultations/{consultation_id}/call")
    async def call(websocket: WebSocket, consultation_id: str) -> None:
        """Signalling for the consultation's video call (see cloud/video/signalling.py)."""
        await serve_call(websocket, consultation_id)

    @router.get("/video/call.js", include_in_schema=False)
    async def call_js() -> FileResponse:
        """The call panel module (ES module; no patient data, cacheable for an hour)."""
        return FileResponse(CALL_JS, media_type="text/javascript; charset=utf-8",
                            headers={"Cache-Control": "public, max-age=3600"})

    @router.get("/video/call.css", include_in_schema=False)
    async def call_css() -> FileResponse:
        """The call panel's stylesheet (linked by call.js)."""
        return FileResponse(CALL_CSS, media_type="text/css; charset=utf-8",
                            headers={"Cache-Control": "public, max-age=3600"})

    return router
