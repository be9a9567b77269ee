"""Connection limits uvicorn's httptools protocol does not enforce by itself.

uvicorn bounds nothing before a request's headers are complete: a client may send header
lines forever (httptools buffers them) or never finish them, and a connection that has
sent nothing is never closed. :class:`GuardedHttpToolsProtocol` adds, per connection:

* ``MAX_REQUEST_HEADER_SIZE``: a request line + header block larger than this gets
  ``431`` and the connection is closed (counted on the raw bytes, so one endless header
  line is caught as well as endless lines);
* ``HEADER_TIMEOUT``: the headers must be complete this long after the connection opens
  or the request begins, else ``408`` and close (slow-loris);
* ``BODY_IDLE_TIMEOUT``: a request body that stops arriving for this long closes the
  connection (not while the application itself has paused reading);
* ``SEND_IDLE_TIMEOUT``: a client that stops reading a response for this long is
  disconnected, so the response's resources are released.

Everything else is uvicorn's. The checks are a few comparisons per received chunk; the
timers are armed per request (the body timer re-arms itself for the idle time left), not
per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .limits import Limits, load_limits

log = logging.getLogger("dicomweb.http")


def _reply(status: bytes, text: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n\r\n" + text
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits] = Limits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers_done = False
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._in_body = False
        self._last_data = 0.0

    # ------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._header_timer, self._body_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        super().data_received(data)
        if self.transport.is_closing() or self._headers_done:
            return
        # The chunk ended with the headers still incomplete: all of it counts toward the cap.
        self._header_bytes += len(data)
        if self._header_bytes > self.limits.max_request_header_size:
            log.warning(
                "request headers over %d bytes from %s", self.limits.max_request_header_size, self.client
            )
            self._close_with(
                b"431 Request Header Fields Too Large",
                f"request line and headers are larger than {self.limits.max_request_header_size} bytes"
                " (MAX_REQUEST_HEADER_SIZE)\n".encode(),
            )

    # ------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_done = False
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._header_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._in_body = True
        self._arm_body_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # ------------------------------------------------------------ flow control

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_idle_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # ------------------------------------------------------------ timers

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_expired)

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_idle_timeout, self._body_expired)

    def _header_expired(self) -> None:
        self._header_timer = None
        if self._headers_done or self.transport.is_closing():
            return
        if self._header_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # nothing of a request arrived: just close
            return
        self._close_with(
            b"408 Request Timeout",
            f"request headers not complete within {self.limits.header_timeout:g} s"
            " (HEADER_TIMEOUT)\n".encode(),
        )

    def _body_expired(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        idle = self.loop.time() - self._last_data
        if idle < self.limits.body_idle_timeout:
            # Data came since the timer was armed: wait for the rest of the idle period only.
            self._body_timer = self.loop.call_later(self.limits.body_idle_timeout - idle, self._body_expired)
            return
        if self.flow is not None and self.flow.read_paused:
            self._arm_body_timer()  # the application is not reading: not the client's fault
            return
        log.warning("request body idle for %ss from %s: closing", self.limits.body_idle_timeout, self.client)
        self.transport.close()

    def _send_stalled(self) -> None:
        self._send_timer = None
        if not self.transport.is_closing():
            log.warning("client %s read nothing for %ss: closing", self.client, self.limits.send_idle_timeout)
            self.transport.abort()

    def _close_with(self, status: bytes, text: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_reply(status, text))
        self.transport.close()


def guarded_protocol(limits: Limits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for one process with these limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class EnvGuardedHttpToolsProtocol(GuardedHttpToolsProtocol):
    """For worker processes, which uvicorn starts by importing the protocol by name: the
    limits come from the same environment the app is built from."""

    limits: ClassVar[Limits] = load_limits(os.environ)


ENV_PROTOCOL = "dicomweb_core.httpguard:EnvGuardedHttpToolsProtocol"
