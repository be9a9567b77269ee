"""OpenTelemetry tracing, on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``)
is set; needs the ``otel`` extra (``pip install 'dicomweb-core[otel]'``).

A server span per request (the W3C ``traceparent`` of the caller continued), child spans for
the STOW stages (:func:`stage`), and the trace context handed to the event sink in CloudEvents'
``traceparent`` extension when an event is sent while serving a request. Spans go to the OTLP/HTTP
exporter through a batch processor; an SDK tracer provider installed before start-up (by
``opentelemetry-instrument``, or a test's in-memory exporter) is used as it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

#: Scope key: the trace id (hex) of the request's server span, used as its request id.
TRACE_ID_KEY = "dicomweb.trace_id"
_tracer: Tracer | None = None


def configure_tracing(service_name: str) -> Tracer:
    """The process's tracer (an OTLP/HTTP exporter unless an SDK provider is installed)."""
    global _tracer
    try:
        import opentelemetry.trace as trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError:
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'dicomweb-core[otel]'"
        ) from None
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer("dicomweb")
    return _tracer


def shutdown_tracing() -> None:
    """Flush the spans still queued (a process that exits would lose them)."""
    if _tracer is None:
        return
    import opentelemetry.trace as trace

    provider: Any = trace.get_tracer_provider()
    flush = getattr(provider, "force_flush", None)
    if flush is not None:
        flush(5000)


def stage(name: str) -> contextlib.AbstractContextManager[object]:
    """A child span of the current one (a STOW stage); nothing when tracing is off."""
    if _tracer is None:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(name)


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Add the current span's context to an outgoing CloudEvent: the W3C ``traceparent``
    header and the CloudEvents distributed-tracing extension ``ce-traceparent``."""
    if _tracer is None:
        return
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    if "traceparent" in carrier:
        headers["traceparent"] = headers["ce-traceparent"] = carrier["traceparent"]
        if carrier.get("tracestate"):
            headers["ce-tracestate"] = carrier["tracestate"]


class TracingMiddleware:
    """One server span per HTTP request, named ``METHOD /route/{template}``."""

    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        import opentelemetry.context as context
        import opentelemetry.propagate as propagate
        import opentelemetry.trace as trace

        self.app = app
        self.tracer = tracer
        self._context = context
        self._propagate = propagate
        self._trace = trace
        self._server = trace.SpanKind.SERVER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from .routes import ROUTE_KEY, UNMATCHED

        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in (b"traceparent", b"tracestate")
        }
        parent = self._propagate.extract(carrier) if carrier else None
        method = scope["method"]
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=self._server,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        )
        scope[TRACE_ID_KEY] = format(span.get_span_context().trace_id, "032x")
        token = self._context.attach(self._trace.set_span_in_context(span))
        status = [0]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get(ROUTE_KEY, UNMATCHED)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status[0] or 500)
            if not status[0] or status[0] >= 500:
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR))
            span.end()
            self._context.detach(token)
