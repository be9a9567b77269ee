"""Composes the service apps into one Starlette application.

Service packages register a factory under the ``dicomweb.apps`` entry-point group
(``create_app(runtime) -> Service``); the core never imports them by name. ``dicomweb serve``
mounts every service at its own root and all of them together under ``/dicomweb``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from .auth.audit import audit_logger
from .auth.middleware import AuthMiddleware
from .auth.proxy import ForwardedHeadersMiddleware
from .errors import DicomwebError
from .landing import LandingPage
from .observability.app import setup as setup_observability
from .observability.routes import tag_routes
from .runtime import Runtime

log = logging.getLogger("dicomweb")

COMBINED_ROOT = "/dicomweb"
#: Where each service is mounted (the seed's split); the service's own ``Service.root`` agrees.
SERVICE_ROOTS = {"stow": "/stow-rs", "wado": "/wado-rs"}
#: Answered without a token whatever AUTH_MODE says (probes and scrapers carry none).
OPEN_PATHS = ("/healthz", "/readyz", "/metrics")


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("loading the services failed: %s", task.exception())


@dataclass
class Service:
    name: str
    #: The service's own root (``/stow-rs``, ``/wado-rs``).
    root: str
    routes: list[BaseRoute] = field(default_factory=list)


ServiceFactory = Callable[[Runtime], Service]


def discover_services() -> dict[str, EntryPoint]:
    """The installed services, not yet imported (see :class:`ServiceLoader`)."""
    return {ep.name: ep for ep in entry_points(group="dicomweb.apps")}


class ServiceLoader:
    """Imports the service packages off the start-up path.

    Their imports (pydicom, numpy, Pillow, ...) are most of a cold start, and Knative scales
    from zero on ``/readyz``: that answers as soon as the store and the catalog do, while the
    services load in a worker thread. A request that arrives earlier waits for them.
    """

    def __init__(self, runtime: Runtime, entries: dict[str, EntryPoint]) -> None:
        self._runtime = runtime
        self._entries = entries
        self._lock = threading.Lock()
        self._services: dict[str, Service] | None = None

    def load(self) -> dict[str, Service]:
        with self._lock:
            if self._services is None:
                self._services = {name: ep.load()(self._runtime) for name, ep in self._entries.items()}
                # Everything loaded so far lives as long as the process: move it out of the
                # collector's way, so full collections (they scan every tracked object) stay
                # short under the allocation churn of requests.
                gc.freeze()
            return self._services

    async def aload(self) -> dict[str, Service]:
        services = self._services
        return services if services is not None else await asyncio.to_thread(self.load)


class LazyRouter:
    """The routes of some services, built on first use (ASGI app for a :class:`Mount`)."""

    def __init__(self, loader: ServiceLoader, names: Sequence[str], prefix: str = "") -> None:
        self._loader = loader
        self._names = list(names)
        #: Where this router is mounted: route templates are labelled with it (metrics, logs).
        self._prefix = prefix
        self._router: Router | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._router is None:
            services = await self._loader.aload()
            routes: list[BaseRoute] = []
            for name in self._names:
                routes.extend(services[name].routes)
            self._router = Router(routes=tag_routes(routes, self._prefix))
        await self._router(scope, receive, send)


def error_response(exc: DicomwebError) -> Response:
    # One line, never a stack trace.
    return PlainTextResponse(exc.reason.replace("\n", " ") + "\n", status_code=exc.status)


async def _dicomweb_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomwebError)
    return error_response(exc)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return PlainTextResponse("internal error\n", status_code=500)


def build_app(runtime: Runtime, services: dict[str, EntryPoint], *, combined: bool) -> Starlette:
    """``services``: name -> entry point of the services to serve. Each is mounted at its own
    root (``/stow-rs``, ``/wado-rs``); with ``combined``, all of them also under ``/dicomweb``."""
    loader = ServiceLoader(runtime, services)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        try:
            await runtime.check()
        except DicomwebError as exc:
            return PlainTextResponse(f"not ready: {exc.reason}\n", status_code=503)
        return PlainTextResponse("ready\n")

    roots = ([COMBINED_ROOT] if combined else []) + [SERVICE_ROOTS[name] for name in services]
    observability = setup_observability(runtime.settings.observability, roots)
    if runtime.dispatcher is not None and observability.metrics is not None:
        runtime.dispatcher.on_result = observability.metrics.events
    observability.instrument(runtime)
    ui_links = {"/ui/": "web UI: search, upload, delete, open in a viewer"} if combined else {}
    landing = LandingPage(
        roots,
        {**ui_links, "/healthz": "liveness", "/readyz": "readiness", **observability.links()},
        browser_home="/ui/" if combined else "",
    )
    open_paths: tuple[str, ...] = OPEN_PATHS
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        *observability.routes(runtime.outbox),
        Route("/", landing.respond),
    ]
    if combined:
        from .ui.routes import public_paths, ui_routes

        ui = runtime.settings.ui
        routes.append(Route(COMBINED_ROOT + "/", landing.describe))
        routes.extend(ui_routes(ui, COMBINED_ROOT))
        open_paths = (*open_paths, "/", *public_paths(ui))
    routes = tag_routes(routes)
    for name in services:
        routes.append(Mount(SERVICE_ROOTS[name], app=LazyRouter(loader, [name], SERVICE_ROOTS[name])))
    if combined:
        routes.append(Mount(COMBINED_ROOT, app=LazyRouter(loader, list(services), COMBINED_ROOT)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        observability.start()
        warm = asyncio.create_task(loader.aload(), name="load-services")
        warm.add_done_callback(_log_failure)
        try:
            yield
        finally:
            await runtime.stop()
            await observability.stop()

    auth = runtime.settings.auth
    # Outermost first: proxy headers settle the client address and scheme; CORS answers
    # preflights and decorates refusals; access control runs before any route.
    middleware = [Middleware(ForwardedHeadersMiddleware, trusted=auth.forwarded_allow_ips)]
    # Then the access line, the metrics and the request id: they cover every answer (401s too).
    middleware.extend(observability.middleware())
    if runtime.settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(runtime.settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=[
                    "Warning",
                    "ETag",
                    "Last-Modified",
                    "Content-Type",
                    "Content-Location",
                    "WWW-Authenticate",
                    "X-Request-ID",
                ],
                max_age=600,
            )
        )
    if auth.enabled or auth.audit:
        middleware.append(
            Middleware(
                AuthMiddleware,
                settings=auth,
                roots=[*SERVICE_ROOTS.values(), COMBINED_ROOT],
                open_paths=open_paths,
                audit=audit_logger() if auth.audit else None,
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
    """Scheme://host[:port] as the client sees it, no trailing slash. ``X-Forwarded-*`` headers
    reach this point only from trusted proxies (:class:`~.auth.proxy.ForwardedHeadersMiddleware`)."""
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
