"""Composes the service apps into one Starlette application.

Service packages register a factory under the ``dicomweb.apps`` entry-point group
(``create_app(runtime) -> Service``); the core never imports them by name. ``dicomweb serve``
mounts every service at its own root and all of them together under ``/dicomweb``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from .errors import DicomwebError
from .runtime import Runtime

log = logging.getLogger("dicomweb")

COMBINED_ROOT = "/dicomweb"


@dataclass
class Service:
    name: str
    #: The service's own root (``/stow-rs``, ``/wado-rs``).
    root: str
    routes: list[BaseRoute] = field(default_factory=list)


ServiceFactory = Callable[[Runtime], Service]


def discover_services() -> dict[str, ServiceFactory]:
    found: dict[str, ServiceFactory] = {}
    for ep in entry_points(group="dicomweb.apps"):
        found[ep.name] = ep.load()
    return found


def error_response(exc: DicomwebError) -> Response:
    # One line, never a stack trace.
    return PlainTextResponse(exc.reason.replace("\n", " ") + "\n", status_code=exc.status)


async def _dicomweb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomwebError)
    return error_response(exc)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return PlainTextResponse("internal error\n", status_code=500)


def build_app(runtime: Runtime, services: Sequence[Service], *, combined: bool) -> Starlette:
    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        try:
            await runtime.check()
        except DicomwebError as exc:
            return PlainTextResponse(f"not ready: {exc.reason}\n", status_code=503)
        return PlainTextResponse("ready\n")

    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/readyz", readyz)]
    for service in services:
        routes.append(Mount(service.root, routes=service.routes))
    if combined:
        merged: list[BaseRoute] = []
        for service in services:
            merged.extend(service.routes)
        routes.append(Mount(COMBINED_ROOT, routes=merged))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    middleware = []
    if runtime.settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(runtime.settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["Warning", "ETag", "Last-Modified", "Content-Type", "Content-Location"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={DicomwebError: _dicomweb_error, Exception: _unexpected_error},
    )
    app.state.runtime = runtime
    return app


def request_base_url(request: Request, public_base_url: str = "") -> str:
    """Scheme://host[:port] as the client sees it (``X-Forwarded-*`` honoured), no trailing slash."""
    if public_base_url:
        return public_base_url
    headers = request.headers
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip() or request.url.scheme
    forwarded = headers.get("x-forwarded-host", "").split(",")[0].strip()
    host = forwarded or headers.get("host") or request.url.netloc
    server = request.scope.get("server")
    if not forwarded and server and host == server[0] and server[1] not in (80, 443):
        # Some clients (dicomweb-client) send Host without the port; when that host is the
        # very address we listen on (no proxy in between), the port is ours.
        host = f"{host}:{server[1]}"
    return f"{proto}://{host}"


def mount_root(request: Request) -> str:
    """The mount the request came through (``/dicomweb``, ``/stow-rs``, ``/wado-rs``)."""
    return str(request.scope.get("root_path", ""))
