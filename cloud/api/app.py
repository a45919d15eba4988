"""The FastAPI application: composition root for the pool, the live hub, the routers and error mapping."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.alerting import routes as alerting_routes
from cloud.api import fhir, live, vitals
from cloud.api.auth import routes as auth_routes
from cloud.api.deps import pooled_connection
from cloud.api.errors import ApiError, InvalidParameterError, RateLimitedError
from cloud.api.fhir import FhirResponse
from cloud.api.fhir_resources import operation_outcome
from cloud.api.fhir_search import SearchParameterError
from cloud.api.live_hub import LiveHub
from cloud.api.policy import ApiPolicy, load_policy
from cloud.audit import routes as audit_routes
from cloud.consult import routes as consult_routes
from cloud.consult.runtime import start_consult, stop_consult
from cloud.db.pool import create_async_pool
from cloud.dicomweb import qido as dicomweb_qido
from cloud.dicomweb import stow as dicomweb_stow
from cloud.dicomweb import wado as dicomweb_wado
from cloud.dicomweb.store import FileObjectStore
from cloud.identity import routes as identity_routes
from cloud.identity.keys import KeySource
from cloud.identity.keystore import VerifiedKeys
from cloud.settings import CloudSettings
from cloud.users import routes as users_routes
from cloud.video import routes as video_routes
from cloud.web import admin_routes as web_admin_routes
from cloud.web import routes as web_routes
from cloud.web import ward_routes as web_ward_routes

log = logging.getLogger(__name__)

# R4 IssueType codes (http://hl7.org/fhir/R4/valueset-issue-type.html) for our HTTP statuses.
_ISSUE_CODES = {
    400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 406: "not-supported", 422: "invalid",
    429: "throttled",
}


def create_app(settings: CloudSettings, *, policy: ApiPolicy | None = None, freeze_gc: bool = False) -> FastAPI:
    """The API application for `settings` (the pool and the live hub start in the lifespan).

    `freeze_gc` (the server process, not tests that build many apps in one process): once started, move
    everything alive into the collector's permanent generation. The app's ~200,000 long-lived objects
    otherwise make each full collection cost 80-120 ms, landing in whichever request triggers it (measured
    as the ward overview's p95; docs/dashboard.md).
    """
    policy = policy if policy is not None else load_policy()
    conninfo = settings.require_database()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = create_async_pool(settings.database, name="telemed-api")
        await pool.open(wait=True, timeout=settings.database.connect_timeout_s)
        hub = LiveHub(conninfo, queue_size=policy.live_queue_size)
        try:
            await hub.start()
            app.state.pool = pool
            app.state.live_hub = hub
            app.state.identity_keys = VerifiedKeys(KeySource.from_settings(settings))  # read on first use
            await start_consult(app, settings, pool)
            if freeze_gc:
                gc.collect()
                gc.freeze()
            log.info("api.started")
            yield
        finally:
            await stop_consult(app)
            await hub.stop()
            await pool.close()
            log.info("api.stopped")

    app = FastAPI(title="telemed cloud API", version="1", lifespan=lifespan)
    app.state.policy = policy
    app.include_router(auth_routes.router)
    app.include_router(vitals.router)
    app.include_router(fhir.router)
    app.include_router(live.router)
    app.include_router(identity_routes.router)
    app.include_router(users_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(dicomweb_qido.router)
    app.include_router(dicomweb_wado.router)
    app.include_router(web_ward_routes.router)
    app.include_router(web_admin_routes.router)
    app.include_router(web_routes.router)
    app.include_router(consult_routes.router)
    app.include_router(consult_routes.reference_router)
    app.include_router(alerting_routes.router)
    app.include_router(video_routes.router_for(settings))
    dicomweb_stow.install(app, store=FileObjectStore(settings.dicom.store_dir))
    _install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> dict[str, str]:
        """Liveness for load balancers: the database answers. No data, no login."""
        async with pooled_connection(request.app.state.pool) as conn:
            await conn.execute("SELECT 1")
        return {"status": "ok"}

    @app.middleware("http")
    async def no_store(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Patient data must not linger in browser or proxy caches."""
        response = await call_next(request)
        if request.url.path.startswith(("/api", "/fhir")):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _is_fhir(request: Request) -> bool:
    return request.url.path.startswith("/fhir")


def _error(request: Request, status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
    if _is_fhir(request):
        text = detail if isinstance(detail, str) else "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in detail
        )
        return FhirResponse(operation_outcome(_ISSUE_CODES.get(status, "processing"), text), status_code=status,
                            headers=headers)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers: dict[str, str] = {}
        if exc.status_code == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, RateLimitedError):
            headers["Retry-After"] = str(max(1, int(exc.retry_after.total_seconds() + 0.999)))
        if isinstance(exc, InvalidParameterError):
            status = 400 if _is_fhir(request) else 422
            detail = [{"loc": [exc.location, exc.field], "msg": exc.message, "type": "value_error"}]
            return _error(request, status, detail)
        return _error(request, exc.status_code, exc.message, headers)

    async def search_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SearchParameterError)
        detail = [{"loc": ["query", exc.parameter], "msg": str(exc), "type": "value_error"}]
        return _error(request, 400 if _is_fhir(request) else 422, detail)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _error(request, 400 if _is_fhir(request) else 422, detail)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _error(request, exc.status_code, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(SearchParameterError, search_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
