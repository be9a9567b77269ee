"""A real HTTP event sink for tests: records binary-mode CloudEvents; can refuse them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.httpserver import BackgroundServer, QuietHandler


@dataclass
class ReceivedEvent:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["ce-id"]

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class EventSink:
    port: int = 0
    events: list[ReceivedEvent] = field(default_factory=list)
    #: While True, every POST gets 503 (a broker outage).
    refusing: bool = False
    #: The next this many POSTs get 503, then the sink accepts again (a short outage).
    refuse_next: int = 0
    #: POSTs answered 503 so far: proof that delivery was attempted while refusing.
    refused: int = 0
    _http: BackgroundServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> EventSink:
        sink = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with sink._lock:
                    refuse = sink.refusing or sink.refuse_next > 0
                    if refuse:
                        sink.refused += 1
                        sink.refuse_next = max(0, sink.refuse_next - 1)
                if refuse:
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                with sink._lock:
                    sink.events.append(ReceivedEvent({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

        self._http = BackgroundServer(self.port)
        self._http.serve(Handler)
        self.port = self._http.port
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()

    def wait_for_refused(self, count: int, timeout: float = 20.0) -> int:
        """Wait until at least ``count`` deliveries were refused; the number refused."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.refused >= count:
                    return self.refused
            time.sleep(0.02)
        raise AssertionError(f"expected {count} refused deliveries, got {self.refused}")

    def wait_for(self, count: int, timeout: float = 20.0) -> list[ReceivedEvent]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} events, got {len(self.events)}")
