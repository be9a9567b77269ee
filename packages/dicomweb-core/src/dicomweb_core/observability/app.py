"""Wires logs, metrics and traces into the app: one middleware, ``/metrics``, the store and
catalog timings. :func:`setup` takes the parsed settings and gives the app builder what it
mounts; nothing here runs per request except :class:`~.middleware.ObservabilityMiddleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..catalog.base import Outbox
from ..errors import DicomwebError
from .config import ObservabilitySettings
from .middleware import ObservabilityMiddleware

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from ..runtime import Runtime
    from .metrics import Metrics

__all__ = ["Observability", "service_metrics", "setup"]

log = logging.getLogger("dicomweb")
#: How often request metrics move from plain numbers into the Prometheus families.
FLUSH_SECONDS = 1.0
#: The outbox count is one query; a scrape never waits longer for it.
BACKLOG_TIMEOUT = 2.0


@dataclass
class Observability:
    settings: ObservabilitySettings
    roots: tuple[str, ...]

    def __post_init__(self) -> None:
        self._flusher: asyncio.Task[None] | None = None
        self.tracer: Tracer | None = None
        if self.settings.otlp_endpoint:
            from .tracing import configure_tracing

            name = "dicomweb" if "/dicomweb" in self.roots else "dicomweb-" + self.roots[0].strip("/")[:4]
            self.tracer = configure_tracing(name)
        self.metrics: Metrics | None
        if self.settings.metrics:
            from .metrics import process_metrics

            self.metrics = process_metrics()
        else:
            self.metrics = None

    def instrument(self, runtime: Runtime) -> None:
        """Time the store's and the catalog's operations (before the services take them)."""
        if self.metrics is None:
            return
        from .instrumented import InstrumentedReader, InstrumentedStore, InstrumentedWriter

        runtime.store = InstrumentedStore(runtime.store, self.metrics.store_ops)
        runtime.catalog = InstrumentedReader(runtime.catalog, self.metrics.catalog_ops)
        if runtime.writer is not None:
            runtime.writer = InstrumentedWriter(runtime.writer, self.metrics.catalog_ops)

    def middleware(self) -> list[Middleware]:
        stack = []
        if self.tracer is not None:
            from .tracing import TracingMiddleware

            stack.append(Middleware(TracingMiddleware, tracer=self.tracer))
        access = self.settings.access_log
        fields = self.settings.log_format == "json"
        stack.append(Middleware(ObservabilityMiddleware, access=access, metrics=self.metrics, fields=fields))
        return stack

    def routes(self, outbox: Outbox | None) -> list[BaseRoute]:
        if self.metrics is None:
            return []
        from .metrics import CONTENT_TYPE, exposition

        metrics_ = self.metrics

        async def metrics(request: Request) -> Response:
            backlog: tuple[int, float | None] | None = None
            if outbox is not None:
                try:
                    async with asyncio.timeout(BACKLOG_TIMEOUT):
                        backlog = await outbox.outbox_backlog()
                except (DicomwebError, TimeoutError) as exc:
                    log.warning("outbox backlog for /metrics: %s", getattr(exc, "reason", "timed out"))
            metrics_.flush(scrapes=1)
            return Response(exposition(backlog), media_type=CONTENT_TYPE)

        return [Route("/metrics", metrics)]

    def links(self) -> dict[str, str]:
        return {"/metrics": "Prometheus metrics"} if self.metrics is not None else {}

    def start(self) -> None:
        """Flush the request metrics every second (from the app's lifespan)."""
        if self.metrics is not None:
            self._flusher = asyncio.create_task(_flush_every(self.metrics, FLUSH_SECONDS), name="metrics")

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if self.metrics is not None:
            self.metrics.flush()
        self.shutdown()

    def shutdown(self) -> None:
        if self.tracer is not None:
            from .tracing import shutdown_tracing

            shutdown_tracing()
        if self.metrics is not None:
            from .metrics import process_exited

            process_exited()


async def _flush_every(metrics: Metrics, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        metrics.flush()


def setup(settings: ObservabilitySettings, roots: Sequence[str]) -> Observability:
    return Observability(settings, tuple(roots))


def service_metrics(settings: ObservabilitySettings) -> Metrics | None:
    """The process's metrics for a service's own counters (STOW), or ``None`` when off."""
    if not settings.metrics:
        return None
    from .metrics import process_metrics

    return process_metrics()
