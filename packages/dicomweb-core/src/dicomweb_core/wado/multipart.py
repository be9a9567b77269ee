"""Streaming ``multipart/related`` writer for WADO-RS responses.

A part is its headers plus an async iterator of body chunks, so a study streams part by
part, chunk by chunk, straight from the object store: memory is one store chunk, never a
whole object or study. The part headers are glued to the first chunk of the part (one
ASGI message instead of two) because per-message overhead dominates for small parts.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from .accept import MULTIPART


async def _aiter(parts: AsyncIterator[Part] | Iterable[Part]) -> AsyncIterator[Part]:
    if isinstance(parts, AsyncIterator):
        async for part in parts:
            yield part
    else:
        for part in parts:
            yield part


def new_boundary() -> str:
    return "dicomweb-" + secrets.token_hex(16)


@dataclass(slots=True)
class Part:
    content_type: str
    body: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)


async def single(data: bytes) -> AsyncIterator[bytes]:
    yield data


class MultipartWriter:
    def __init__(
        self, part_type: str, boundary: str | None = None, *, transfer_syntax: str | None = None
    ) -> None:
        self.boundary = boundary or new_boundary()
        ts = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
        self.content_type = f'{MULTIPART}; type="{part_type}"{ts}; boundary={self.boundary}'
        self._delimiter = f"--{self.boundary}\r\n".encode()
        self._close = f"--{self.boundary}--\r\n".encode()

    def part_header(self, part: Part) -> bytes:
        lines = [f"Content-Type: {part.content_type}"]
        lines.extend(f"{k}: {v}" for k, v in part.headers.items())
        return self._delimiter + ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def stream(self, parts: AsyncIterator[Part] | Iterable[Part]) -> AsyncIterator[bytes]:
        """The whole body: ``--b CRLF headers CRLF CRLF body CRLF`` per part, then ``--b--``.

        Each part's closing CRLF travels with the next part's headers, and the headers with
        the first small chunk, so a small part costs one ASGI message.
        """
        pending = b""
        async for part in _aiter(parts):
            head: bytes | None = pending + self.part_header(part)
            async for chunk in part.body:
                if head is not None:
                    if len(chunk) <= 65536:
                        chunk = head + chunk
                    else:
                        yield head
                    head = None
                yield chunk
            pending = b"\r\n" if head is None else head + b"\r\n"
        yield pending + self._close

    def encode(self, parts: Iterable[tuple[str, bytes]], *, lengths: bool = False) -> bytes:
        """A whole multipart body in memory, for small responses (frames, metadata XML,
        small instances). ``lengths``: give each part a Content-Length header."""
        # One join: growing a bytearray costs a fresh (page-faulting) allocation per step.
        out: list[bytes] = []
        for content_type, body in parts:
            headers = {"Content-Length": str(len(body))} if lengths else {}
            out += (self.part_header(Part(content_type, single(b""), headers)), body, b"\r\n")
        out.append(self._close)
        return b"".join(out)
