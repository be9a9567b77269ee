"""An HTTP front for a real DICOMweb server that misbehaves on demand.

It reads each request whole, counts it, remembers which of the ``watch`` SOP Instance UIDs
its body carried, and then either answers by itself (the next statuses in ``script``, e.g.
503 with ``Retry-After: 0``, or a 413 with a reason) or forwards the request to the real
server and relays the real answer.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.httpserver import BackgroundServer, QuietHandler


@dataclass
class FlakyFront:
    upstream: str  # e.g. http://127.0.0.1:1234
    script: list[int] = field(default_factory=list)  # statuses to answer with before forwarding
    watch: set[str] = field(default_factory=set)
    requests: int = 0
    forwarded: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # watched UID -> times it was in a body
    authorizations: list[str] = field(default_factory=list)  # Authorization header per request
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: BackgroundServer = field(default_factory=BackgroundServer)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def start(self) -> FlakyFront:
        front = self
        client = httpx.Client(timeout=120)

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: bytes, ctype: str, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with front._lock:
                    front.requests += 1
                    front.authorizations.append(self.headers.get("Authorization", ""))
                    for sop in front.watch:
                        if sop.encode() in body:
                            front.sent[sop] += 1
                    status = front.script.pop(0) if front.script else 0
                if status:
                    reason = b'{"detail": "injected by the test front"}'
                    self._answer(status, reason, "application/json", {"Retry-After": "0"})
                    return
                resp = client.post(
                    front.upstream + self.path,
                    content=body,
                    headers={
                        k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")
                    },
                )
                with front._lock:
                    front.forwarded += 1
                self._answer(resp.status_code, resp.content, resp.headers.get("content-type", ""), {})

        self._server.serve(Handler)
        return self

    def stop(self) -> None:
        self._server.stop()
