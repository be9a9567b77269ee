"""Browser form upload (``multipart/form-data``, field ``file``, repeatable).

streaming-form-data parses the form; each ``file`` field is re-framed as a part of a
multipart/related stream, so the form path runs through exactly the same STOW pipeline.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from streaming_form_data import StreamingFormDataParser
from streaming_form_data.targets import BaseTarget

from dicomweb_core.errors import MultipartError

FIELD = "file"


class _Reframe(BaseTarget):  # type: ignore[misc]  # streaming-form-data ships no type hints
    """Turns each file of the field into a multipart/related part in ``out``."""

    def __init__(self, boundary: bytes, out: list[bytes]) -> None:
        super().__init__()
        self._boundary = boundary
        self._out = out
        self.files = 0

    def on_start(self) -> None:
        self.files += 1
        self._out.append(b"\r\n--" + self._boundary + b"\r\nContent-Type: application/dicom\r\n\r\n")

    def on_data_received(self, chunk: bytes) -> None:
        if chunk:
            self._out.append(chunk)


def form_parts(body: AsyncIterator[bytes], content_type: str) -> tuple[AsyncIterator[bytes], bytes]:
    boundary = b"dicomweb-form-" + os.urandom(12).hex().encode()
    out: list[bytes] = []
    target = _Reframe(boundary, out)
    try:
        parser = StreamingFormDataParser(headers={"Content-Type": content_type})
    except Exception as exc:
        raise MultipartError(f"malformed multipart/form-data Content-Type: {exc}") from None
    parser.register(FIELD, target)

    async def related() -> AsyncIterator[bytes]:
        async for chunk in body:
            try:
                parser.data_received(chunk)
            except Exception as exc:
                raise MultipartError(f"malformed multipart/form-data body: {exc}") from None
            while out:
                yield out.pop(0)
        if not target.files:
            raise MultipartError(f"no {FIELD!r} field in the form")
        yield b"\r\n--" + boundary + b"--\r\n"

    return related(), boundary
