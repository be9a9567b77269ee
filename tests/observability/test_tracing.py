"""OpenTelemetry: a server span per request continuing the caller's ``traceparent``, child spans
for the STOW stages, the trace id as the request id; in-process with the SDK's in-memory
exporter, and end to end against a local OTLP/HTTP receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from dicomweb_core.config import load_settings
from dicomweb_core.runtime import build_runtime
from dicomweb_core.server import build_app, discover_services
from tests.dicomfiles import make_instance, multipart_related
from tests.httpserver import BackgroundServer, QuietHandler
from tests.servers import ServiceProcess

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
STAGES = {"stow.receive", "stow.store_commit", "stow.catalog_transaction"}


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    """The SDK provider of this test process (a process has one; set once)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


async def test_request_and_stow_stage_spans(exporter: InMemorySpanExporter, tmp_path: Path) -> None:
    env = {"DICOMWEB_DATA_DIR": str(tmp_path / "data"), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    runtime = build_runtime(load_settings(env))
    services = discover_services()
    app = build_app(runtime, {n: services[n] for n in ("stow", "wado")}, combined=True)
    body, ctype = multipart_related([make_instance(), make_instance()])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            exporter.clear()
            r = await client.post(
                "/dicomweb/studies",
                content=body,
                headers={"content-type": ctype, "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
            )
            assert r.status_code == 200, r.text
            stow_spans = exporter.get_finished_spans()
            exporter.clear()
            fresh = await client.get("/dicomweb/studies/1.2.3/metadata")
            assert fresh.status_code == 404
            wado_spans = exporter.get_finished_spans()

    spans = by_name(stow_spans)
    server = spans["POST /dicomweb/studies"]
    assert server.kind == trace.SpanKind.SERVER
    context = server.get_span_context()
    assert format(context.trace_id, "032x") == TRACE_ID  # the caller's trace continues
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_SPAN
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/dicomweb/studies"
    assert server.attributes["http.response.status_code"] == 200
    assert r.headers["x-request-id"] == TRACE_ID
    assert set(spans) >= STAGES
    for name in STAGES:
        assert spans[name].parent is not None and spans[name].parent.span_id == context.span_id
        assert spans[name].get_span_context().trace_id == context.trace_id

    (span,) = wado_spans  # no STOW stages on a read
    assert span.name == "GET /dicomweb/studies/{study}/metadata" and span.parent is None
    assert fresh.headers["x-request-id"] == format(span.get_span_context().trace_id, "032x")
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 404


class Receiver:
    """A local OTLP/HTTP trace receiver (protobuf bodies on ``/v1/traces``)."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if self.path == "/v1/traces":
                    message = ExportTraceServiceRequest()
                    message.ParseFromString(body)
                    receiver.requests.append(message)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = BackgroundServer()
        self.handler: type[BaseHTTPRequestHandler] = Handler

    def spans(self) -> list[tuple[str, str, str]]:
        """(service.name, span name, trace id hex) of everything received."""
        out = []
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append((attrs.get("service.name", ""), span.name, span.trace_id.hex()))
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.server.serve(r.handler)
    yield r
    r.server.stop()


def test_spans_reach_an_otlp_http_receiver(receiver: Receiver, tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    s = ServiceProcess(
        "serve", args=["--data-dir", str(tmp_path / "data")], env=env, log_path=tmp_path / "log"
    )
    s.start()
    try:
        body, ctype = multipart_related([make_instance()])
        r = httpx.post(
            s.base + "/dicomweb/studies",
            content=body,
            headers={"content-type": ctype, "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
        )
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while True:
            names = {name for service, name, trace_id in receiver.spans() if trace_id == TRACE_ID}
            if {"POST /dicomweb/studies", *STAGES} <= names:
                break
            assert time.monotonic() < deadline, f"spans received: {receiver.spans()}"
            time.sleep(0.1)
        assert {service for service, _, _ in receiver.spans()} == {"dicomweb"}
    finally:
        s.stop()


async def test_trace_context_reaches_the_cloudevent(exporter: InMemorySpanExporter, tmp_path: Path) -> None:
    """Drop-in mode (no outbox): STOW sends the event while serving the request, and the event
    carries the trace context (CloudEvents distributed-tracing extension)."""
    from tests.alvearie_fake import AlvearieFake

    fake = AlvearieFake().start()
    try:
        env = {
            "DICOMWEB_DATA_DIR": str(tmp_path / "data"),
            "QUERY_ENDPOINT": fake.query_endpoint,
            "K_SINK": fake.sink,
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        }
        runtime = build_runtime(load_settings(env))
        app = build_app(runtime, {"stow": discover_services()["stow"]}, combined=False)
        body, ctype = multipart_related([make_instance()])
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                exporter.clear()
                r = await client.post(
                    "/stow-rs/studies",
                    content=body,
                    headers={"content-type": ctype, "traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"},
                )
                assert r.status_code == 200, r.text
        delivery = by_name(exporter.get_finished_spans())["stow.event_delivery"]
        (event,) = fake.events
        span_id = format(delivery.get_span_context().span_id, "016x")
        assert event["ce-traceparent"] == f"00-{TRACE_ID}-{span_id}-01"
        assert event["traceparent"] == event["ce-traceparent"]
    finally:
        fake.stop()
