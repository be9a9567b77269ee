"""The middleware in-process (httpx's ASGI transport): a line an endpoint logs while serving a
request carries that request's id in JSON logs; the request id parser never trusts its input."""

from __future__ import annotations

import io
import json
import logging

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from dicomweb_core.observability.logs import JsonFormatter
from dicomweb_core.observability.middleware import ObservabilityMiddleware, request_id


async def test_lines_logged_inside_a_request_carry_its_id() -> None:
    async def endpoint(request: Request) -> Response:
        logging.getLogger("dicomweb.test").warning("inside %s", request.url.path)
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/x", endpoint)],
        middleware=[Middleware(ObservabilityMiddleware, access=False, metrics=None)],
    )
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dicomweb.test")
    logger.addHandler(handler)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.get("/x", headers={"X-Request-ID": "inner-1"})
        logger.warning("outside any request")
    finally:
        logger.removeHandler(handler)
    assert r.headers["x-request-id"] == "inner-1"
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside["message"] == "inside /x" and inside["request_id"] == "inner-1"
    assert inside["logger"] == "dicomweb.test" and inside["level"] == "warning"
    assert "request_id" not in outside


def test_request_id_sources_and_limits() -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (
        request_id(
            [(b"x-request-id", b"abc-1"), (b"traceparent", f"00-{trace}-00f067aa0ba902b7-01".encode())]
        )
        == b"abc-1"
    )
    assert request_id([(b"traceparent", f"00-{trace}-00f067aa0ba902b7-01".encode())]) == trace.encode()
    # An all-zero trace id is invalid (W3C Trace Context); so are malformed headers.
    for bad in (b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", b"00-xyz-1-01", b"\xff" * 60):
        assert len(request_id([(b"traceparent", bad)])) == 32
    for bad in (b"", b"a" * 129, b"new\nline", "é".encode()):
        rid = request_id([(b"x-request-id", bad)])
        assert rid != bad and len(rid) == 32
