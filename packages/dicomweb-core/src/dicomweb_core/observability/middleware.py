"""One ASGI middleware for the three signals of a request: the access line, the metrics, and
the request id (taken from ``X-Request-ID`` or ``traceparent``, else generated; returned in
``X-Request-ID``). Everything is decided in ``__init__``; a request costs a header scan, two
small closures and a few increments."""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .routes import ROUTE_KEY, UNMATCHED
from .tracing import TRACE_ID_KEY

if TYPE_CHECKING:
    from .metrics import Metrics

#: Scope key holding the request id (``str``).
REQUEST_ID_KEY = "dicomweb.request_id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")
_TRACEPARENT = re.compile(rb"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_ZERO_TRACE = b"0" * 32

access_log = logging.getLogger("dicomweb.access")
#: The request being served, for every log line written while serving it (JSON logs).
current_request_id: ContextVar[str | None] = ContextVar("dicomweb_request_id", default=None)


def request_id(headers: list[tuple[bytes, bytes]], trace_id: str | None = None) -> bytes:
    """A client's ``X-Request-ID`` (when it is a short token), else the trace id of a valid
    ``traceparent`` (W3C Trace Context), else ``trace_id`` (this request's span, when tracing),
    else a new random id. Never trusts length or bytes."""
    trace = b""
    for name, value in headers:
        if name == b"x-request-id":
            if _REQUEST_ID.fullmatch(value):
                return value
        elif name == b"traceparent":
            m = _TRACEPARENT.fullmatch(value.strip())
            if m and m.group(1) != _ZERO_TRACE:
                trace = m.group(1)
    if trace:
        return trace
    return trace_id.encode() if trace_id else os.urandom(16).hex().encode()


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, access: bool, metrics: Metrics | None, fields: bool = False) -> None:
        self.app = app
        self.access = access
        self.metrics = metrics
        #: Pass the access line's fields as ``extra`` (for the JSON formatter; text has them
        #: in the message, and building the dict costs a few microseconds per request).
        self.fields = fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        path = scope["path"]  # before routing rewrites the scope
        rid = request_id(scope["headers"], scope.get(TRACE_ID_KEY))
        scope[REQUEST_ID_KEY] = rid_text = rid.decode()
        token = current_request_id.set(rid_text)
        id_header = (b"x-request-id", rid)
        counts = [0, 0, 0]  # status, bytes in, bytes out

        async def counting_receive() -> Message:
            message = await receive()
            body = message.get("body")
            if body:
                counts[1] += len(body)
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                counts[2] += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                counts[0] = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        metrics = self.metrics
        if metrics is not None:
            metrics.in_flight += 1
        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            seconds = perf_counter() - start
            status = counts[0] or 500  # no response started: the error handler answers 500
            route = scope.get(ROUTE_KEY, UNMATCHED)
            if metrics is not None:
                metrics.in_flight -= 1
                metrics.observe(route, scope["method"], status, counts[1], counts[2], seconds)
            if self.access and access_log.isEnabledFor(logging.INFO):
                self._log(scope, path, route, status, counts[1], counts[2], seconds, self.fields)
            current_request_id.reset(token)

    @staticmethod
    def _log(
        scope: Scope,
        path: str,
        route: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        seconds: float,
        fields: bool,
    ) -> None:
        # The path, never the query string: QIDO queries carry patient names and IDs.
        ms = round(seconds * 1000, 2)
        rid = scope[REQUEST_ID_KEY]
        if not fields:
            access_log.info("%s %s %d %dB in %dB out %.2fms id=%s", scope["method"], path, status, bytes_in,
                            bytes_out, ms, rid)  # fmt: skip
            return
        client = scope.get("client")
        access_log.info(
            "%s %s %d %dB in %dB out %.2fms id=%s",
            scope["method"],
            path,
            status,
            bytes_in,
            bytes_out,
            ms,
            scope[REQUEST_ID_KEY],
            extra={
                "request_id": scope[REQUEST_ID_KEY],
                "method": scope["method"],
                "path": path,
                "route": route,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": ms,
                "client": client[0] if client else None,
            },
        )
