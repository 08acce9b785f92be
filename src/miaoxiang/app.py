"""The app factory: the lifespan runs this process's `Services` and hands them to every handler."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, cast

import asyncpg
from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from alerting.admin_api import router as alarm_settings_router
from alerting.api import router as alarms_router
from alerting.dutychecks_api import router as duty_checks_router
from alerting.linkage.api import router as linkage_router
from alerting.overview_api import router as overview_router
from alerting.reports.monthly_api import router as monthly_report_router
from alerting.response.channels.store import router as channels_router
from alerting.response.dispatch import router as dispatch_router
from alerting.response.notifications_api import router as notifications_router
from alerting.response.page import router as responder_page_router
from alerting.response.photos import router as photos_router
from alerting.response.responders import router as responders_router
from alerting.response.stats import router as response_stats_router
from alerting.risk_api import router as risk_router
from alerting.risk_override import router as risk_override_router
from alerting.shields import router as shields_router
from alerting.shifts import router as shifts_router
from alerting.workorders.api import router as work_orders_router
from devices.api import router as devices_router
from devices.clock import Clock, wall_clock_ms
from devices.db_errors import UNAVAILABLE
from devices.floorplans_api import router as floorplans_router
from ingest.gb26875_api import router as gb26875_router
from ingest.readings_api import router as readings_router
from ingest.transports.http_push import router as push_router
from miaoxiang.console_router import console_router
from miaoxiang.http_limits import BodyLimits, body_caps
from miaoxiang.security_headers import SecurityHeaders
from miaoxiang.services import Services, running
from miaoxiang.settings import Settings

#: A session that can write: not a standby, not read-only (`default_transaction_read_only`).
_WRITABLE = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"


def services(request: Request) -> Services:
    """The running services (the root knows their full type)."""
    return cast(Services, request.state.services)


Running = Annotated[Services, Depends(services)]


def create_app(settings: Settings, *, clock: Clock = wall_clock_ms) -> FastAPI:
    """Build the service. Nothing is started until the lifespan runs; then `app.state.services`
    holds what runs, for the root (CLI, server, tests)."""
    registry = CollectorRegistry()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Services]]:
        async with running(settings, clock=clock, registry=registry) as built:
            app.state.services = built
            yield {"services": built}

    app = FastAPI(title="Miaoxiang 秒响", version="0.1.0", lifespan=lifespan)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(
        BodyLimits, caps=body_caps(settings), default_max=settings.http_max_body_bytes,
        timeout_s=settings.http_body_timeout_s,
    )
    app.add_middleware(SecurityHeaders)  # outermost of these: refusals get the headers too

    @app.exception_handler(asyncpg.DataError)
    async def refused_by_postgres(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        """Input PostgreSQL cannot store (a NUL character in text, a number out of its column's
        range) is the caller's error: 422 with the reason, never a 500."""
        reason = "text must not contain NUL characters" if "0x00" in str(exc) else str(exc).splitlines()[0]
        return JSONResponse({"detail": f"not storable: {reason}"}, status_code=422)

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """The database cannot serve now (`devices.db_errors`): 503 and when to retry, not a 500."""
        detail = f"数据库暂不可用，请稍后重试 / database unavailable, retry later ({type(exc).__name__})"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "5"})

    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, database_unavailable)

    app.include_router(push_router)  # first: a platform push is matched before the other routes are tried
    app.include_router(devices_router)
    app.include_router(floorplans_router)
    app.include_router(readings_router)
    app.include_router(overview_router)
    app.include_router(alarms_router)
    app.include_router(alarm_settings_router)
    app.include_router(channels_router)
    app.include_router(responders_router)
    app.include_router(notifications_router)
    app.include_router(dispatch_router)
    app.include_router(linkage_router)
    app.include_router(response_stats_router)
    app.include_router(responder_page_router)
    app.include_router(photos_router)
    app.include_router(risk_router)
    app.include_router(risk_override_router)
    app.include_router(duty_checks_router)
    app.include_router(shifts_router)
    app.include_router(shields_router)
    app.include_router(monthly_report_router)
    app.include_router(work_orders_router)
    app.include_router(gb26875_router)
    app.include_router(console_router(tiles=settings.tile_source()))

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(svc: Running, response: Response) -> dict[str, object]:
        checks: dict[str, bool] = {"database": False, "broker": False}
        with contextlib.suppress(Exception):
            checks["database"] = svc.database_writing and await asyncio.wait_for(svc.pool.fetchval(_WRITABLE), 2)
        checks["broker"] = svc.broker_ready
        checks["background"] = svc.background_error is None
        ready = all(checks.values())
        response.status_code = 200 if ready else 503
        return {"status": "ready" if ready else "not ready", **checks}

    @app.get("/metrics", tags=["health"])
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
