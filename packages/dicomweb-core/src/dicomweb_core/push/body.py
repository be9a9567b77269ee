"""The multipart/related request body, built on the fly from the files.

The exact length is known before the first byte (file sizes plus the framing), so the
request carries a ``Content-Length`` rather than chunked encoding: every DICOMweb server
accepts that, and a server with a body cap can refuse it before reading. Each file is read
in ``chunk``-sized pieces in a worker thread as the socket takes them; at most one chunk
per request in flight is in memory.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO

from .sources import Item

_PART_HEAD = "--{b}\r\nContent-Type: application/dicom\r\n\r\n"


class ItemReadError(Exception):
    """An item could not be read while its bytes were being sent (gone, shrunk, unreadable)."""

    def __init__(self, item: Item, reason: str) -> None:
        super().__init__(reason)
        self.item = item
        self.reason = reason


@dataclass(frozen=True)
class Framing:
    boundary: str

    @classmethod
    def new(cls) -> Framing:
        return cls(f"dicomweb-push-{secrets.token_hex(12)}")

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    def head(self) -> bytes:
        return _PART_HEAD.format(b=self.boundary).encode()

    def tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()

    def length(self, items: Sequence[Item]) -> int:
        return sum(len(self.head()) + item.size + 2 for item in items) + len(self.tail())


def _open(item: Item) -> IO[bytes]:
    return item.source.open()


def _read(f: IO[bytes], n: int) -> bytes:
    return f.read(n)


async def stream_body(framing: Framing, items: Sequence[Item], chunk: int) -> AsyncIterator[bytes]:
    """Yield the body of one request; raises ItemReadError naming the item that failed."""
    head = framing.head()
    for item in items:
        yield head
        try:
            f = await asyncio.to_thread(_open, item)
        except OSError as exc:
            raise ItemReadError(item, f"cannot open: {exc}") from exc
        try:
            left = item.size
            while left:
                try:
                    data = await asyncio.to_thread(_read, f, min(chunk, left))
                except OSError as exc:
                    raise ItemReadError(item, f"read error: {exc}") from exc
                if not data:
                    raise ItemReadError(
                        item, f"changed while being sent: {item.size - left} of {item.size} bytes"
                    )
                left -= len(data)
                yield data
        finally:
            f.close()
        yield b"\r\n"
    yield framing.tail()
