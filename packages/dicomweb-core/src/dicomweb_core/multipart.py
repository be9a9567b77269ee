"""Streaming, push-based reader for ``multipart/related`` bodies (RFC 2046 §5.1.1, RFC 2387).

The reader is pure: bytes go in through :meth:`MultipartRelatedReader.feed`, events come
out (:class:`PartStart`, :class:`PartData`, :class:`PartEnd`). No socket, file or event
loop is involved, so the STOW hot path, tests and fuzzers drive it the same way.

Part bodies are never copied or joined: every :class:`PartData` is a ``memoryview`` slice
of the chunk given to ``feed()``. The only bytes copied are the few at the end of a chunk
that could be the start of a delimiter split across chunks (at most the delimiter length
plus the transport-padding cap) and the part headers (at most ``max_header_size``), so
memory per reader is bounded whatever the size of the upload.

Delimiters are found with ``bytes.find`` over whole chunks (C speed). Leniency, chosen to
match common parsers: the first delimiter may start the body without a CRLF; bare LF is
accepted after a delimiter and in part headers; a missing CRLF after the close delimiter
is accepted; ``CRLF--boundary`` followed by anything other than padding+CRLF or ``--`` is
part of the body (it is not a delimiter). A part whose header block is followed directly
by a delimiter (body omitted, so the header block's last CRLF is the delimiter's CRLF)
gets an empty body.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from dicomweb_core.errors import MediaTypeError, MultipartError

__all__ = [
    "Event",
    "MultipartRelatedReader",
    "PartData",
    "PartEnd",
    "PartStart",
    "boundary_from_content_type",
    "parse_content_type",
]

#: RFC 2046 allows 1..70 characters, but real clients send longer ones (Orthanc's DICOMweb
#: client builds 73 from two UUIDs) and other servers take them, so we are liberal up to
#: this cap. It only bounds the held-back delimiter candidate (the lookahead), so it costs
#: nothing on the hot path; anything longer is a clear 400, never a guess.
MAX_BOUNDARY_LENGTH = 256
#: Longest run of transport padding (spaces/tabs) accepted after a delimiter. Bounded so a
#: held-back delimiter candidate stays small; longer runs are rejected, never guessed at.
MAX_TRANSPORT_PADDING = 256

# Header block end: a blank line, CRLF or bare LF; "^" covers a part with no headers.
_HEADER_END = re.compile(rb"(?:^|\n)\r?\n")

_PREAMBLE, _HEADERS, _BODY, _DONE, _FAILED = range(5)
# Outcomes of looking at the bytes after a "CRLF--boundary" candidate.
_NEED, _NOT, _PART, _CLOSE = range(4)


# --------------------------------------------------------------------------- Content-Type


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type value into (lower-cased media type, parameters).

    Parameter names are lower-cased; values are unquoted (quoted-string with backslash
    escapes, so ``;`` and ``=`` may appear inside quotes) and stripped when unquoted. The
    first occurrence of a repeated parameter wins; parameters without ``=`` are ignored.
    Never raises: odd input gives a best-effort result, empty input ``("", {})``.
    """
    if not value:
        return "", {}
    semi = value.find(";")
    media = (value if semi < 0 else value[:semi]).strip().lower()
    params: dict[str, str] = {}
    if semi < 0:
        return media, params
    n = len(value)
    i = semi + 1
    while i < n:
        while i < n and value[i] in " \t;":
            i += 1
        if i >= n:
            break
        j = i
        while j < n and value[j] not in "=;":
            j += 1
        name = value[i:j].strip().lower()
        if j >= n or value[j] == ";":
            i = j
            continue
        j += 1
        while j < n and value[j] in " \t":
            j += 1
        if j < n and value[j] == '"':
            j += 1
            out: list[str] = []
            while j < n:
                c = value[j]
                if c == "\\" and j + 1 < n:
                    out.append(value[j + 1])
                    j += 2
                    continue
                j += 1
                if c == '"':
                    break
                out.append(c)
            pvalue = "".join(out)
            # Anything between the closing quote and the next ';' is junk; skip it.
            k = value.find(";", j)
            j = n if k < 0 else k
        else:
            k = value.find(";", j)
            end = n if k < 0 else k
            pvalue = value[j:end].strip()
            j = end
        if name and name not in params:
            params[name] = pvalue
        i = j
    return media, params


def boundary_from_content_type(value: str) -> bytes:
    """The boundary of a ``multipart/related`` Content-Type, as bytes.

    Raises :class:`MediaTypeError` (415) when the media type is not multipart/related and
    :class:`MultipartError` (400) when the boundary is missing, empty, longer than
    :data:`MAX_BOUNDARY_LENGTH` characters or not representable in a header (non-Latin-1,
    CR, LF).
    """
    media, params = parse_content_type(value)
    if media != "multipart/related":
        raise MediaTypeError(f"expected multipart/related, got {media or 'no media type'!r}")
    boundary = params.get("boundary")
    if boundary is None:
        raise MultipartError("multipart/related Content-Type has no boundary parameter")
    try:
        raw = boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise MultipartError("multipart boundary is not Latin-1 text") from None
    _check_boundary(raw)
    return raw


def _check_boundary(boundary: bytes) -> None:
    if not boundary:
        raise MultipartError("multipart boundary is empty")
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise MultipartError(
            f"multipart boundary is {len(boundary)} characters long;"
            f" at most {MAX_BOUNDARY_LENGTH} are accepted (RFC 2046 asks for at most 70)"
        )
    # The delimiter search relies on CR appearing only at the delimiter's first byte.
    if b"\r" in boundary or b"\n" in boundary:
        raise MultipartError("multipart boundary contains CR or LF")


# --------------------------------------------------------------------------- events


class PartStart:
    """A part begins. ``headers`` has lower-cased names and stripped values (first wins)."""

    __slots__ = ("content_type", "headers", "media_type")

    def __init__(self, headers: dict[str, str], content_type: str, media_type: str) -> None:
        self.headers = headers
        self.content_type = content_type
        self.media_type = media_type

    def __repr__(self) -> str:
        return f"PartStart(content_type={self.content_type!r}, headers={self.headers!r})"


class PartData:
    """A piece of the current part's body: a view of the fed chunk, not a copy."""

    __slots__ = ("data",)

    def __init__(self, data: memoryview) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"PartData(<{len(self.data)} bytes>)"


class PartEnd:
    """The current part's body is complete."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "PartEnd()"


Event: TypeAlias = PartStart | PartData | PartEnd


# --------------------------------------------------------------------------- reader


class MultipartRelatedReader:
    """Push-based multipart/related parser: ``feed()`` chunks, get events, then ``close()``.

    ``PartData.data`` views share memory with the chunk passed in; a caller that reuses a
    ``bytearray`` buffer must consume the events before overwriting it (and cannot resize
    it while views are alive). Chunks that are ``bytes``/``bytearray`` (or a memoryview of
    a whole one) are searched in place; other memoryviews are copied for the search only,
    the events still slice the memoryview. After an error the reader stays failed: later
    calls raise the same :class:`MultipartError`.
    """

    __slots__ = (
        "_default_content_type",
        "_delim",
        "_error",
        "_fresh",
        "_hbuf",
        "_lookahead",
        "_max_header_size",
        "_parts",
        "_state",
        "_tail",
        "_true_delim",
    )

    def __init__(
        self,
        boundary: bytes,
        *,
        max_header_size: int = 16384,
        default_content_type: str = "application/dicom",
    ) -> None:
        boundary = bytes(boundary)
        _check_boundary(boundary)
        if max_header_size < 1:
            raise ValueError("max_header_size must be positive")
        self._delim = b"\r\n--" + boundary
        # Enough bytes after a held-back candidate to decide whether it is a delimiter.
        self._lookahead = len(self._delim) + MAX_TRANSPORT_PADDING + 8
        # Matches only complete real delimiters (or over-long padding, which _trailer
        # rejects); used to skip runs of near-delimiters in C rather than one by one.
        pad = MAX_TRANSPORT_PADDING
        self._true_delim = re.compile(
            re.escape(self._delim) + rb"(?:--|[ \t]{0,%d}\r?\n|[ \t]{%d})" % (pad, pad + 1)
        )
        self._max_header_size = max_header_size
        self._default_content_type = default_content_type
        self._state = _PREAMBLE
        # At the start of the body (and of each part body) the delimiter's CRLF may be
        # absent: the body's start, or the header block's final CRLF, stands in for it.
        self._fresh = True
        self._tail = b""  # held-back bytes: a possible delimiter split across chunks
        self._hbuf = bytearray()
        self._parts = 0
        self._error: str | None = None

    @property
    def done(self) -> bool:
        """The close delimiter has been seen; anything fed after it is ignored."""
        return self._state == _DONE

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[Event]:
        """Consume one chunk of the body; return the events it completes, in order."""
        if self._error is not None:
            raise MultipartError(self._error)
        events: list[Event] = []
        if self._state == _DONE:
            return events
        mv = memoryview(chunk)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        try:
            self._feed(chunk, mv, events)
        except MultipartError as exc:
            self._fail(exc.reason)
            raise
        return events

    def close(self) -> list[Event]:
        """Signal the end of the body. Raises :class:`MultipartError` if it was incomplete."""
        if self._error is not None:
            raise MultipartError(self._error)
        if self._state != _DONE:
            raise self._fail("truncated body: no closing delimiter")
        if self._parts == 0:
            raise self._fail("empty body: no part")
        return []

    # ----------------------------------------------------------------- internals

    def _fail(self, reason: str) -> MultipartError:
        self._state = _FAILED
        self._error = reason
        self._tail = b""
        self._hbuf = bytearray()
        return MultipartError(reason)

    def _feed(self, chunk: bytes | bytearray | memoryview, mv: memoryview, events: list[Event]) -> None:
        total = len(mv)
        offset = 0
        # Resolve held-back bytes first, joined with only a small head of the new chunk,
        # so the rest of the chunk is still handed out as views.
        while self._tail and offset < total:
            take = min(total - offset, self._lookahead)
            probe = self._tail + mv[offset : offset + take].tobytes()
            held = len(self._tail)
            self._tail = b""
            used = self._process(memoryview(probe), probe, 0, events, held)
            if used >= held:
                offset += used - held  # the unused rest of the probe is still in mv
            else:
                self._tail = probe[used:]
                offset += take
        if offset >= total or self._state == _DONE:
            return
        hay: bytes | bytearray
        if isinstance(chunk, bytes | bytearray):
            hay = chunk
        else:
            obj = mv.obj
            if isinstance(obj, bytes | bytearray) and len(obj) == total and mv.c_contiguous:
                hay = obj
            else:
                hay = mv.tobytes()  # memoryview has no find(); copy for the search only
        used = self._process(mv, hay, offset, events, total)
        if used < total and self._state != _DONE:
            self._tail = mv[used:].tobytes()

    def _process(
        self, buf: memoryview, hay: bytes | bytearray, pos: int, events: list[Event], stop: int
    ) -> int:
        """Run the state machine over ``buf[pos:]`` (``hay`` has the same bytes, for find).

        Returns how far the input was consumed; bytes after that are undecided or past
        ``stop`` and must be presented again, followed by more input. Body bytes past
        ``stop`` are left unconsumed so that, when ``buf`` is a copy joining held-back
        bytes with the head of a chunk, they are emitted later as views of the chunk.
        """
        n = len(buf)
        delim = self._delim
        dl = len(delim)
        while True:
            state = self._state
            if state in (_BODY, _PREAMBLE):
                emit = state == _BODY
                start = pos  # first body byte not yet emitted
                if self._fresh:
                    # A delimiter without its CRLF right at the start.
                    rest = n - pos
                    if rest < dl - 2:
                        if hay.startswith(delim[2 : 2 + rest], pos):
                            return pos
                        self._fresh = False
                        kind, end = _NOT, 0
                    elif hay.startswith(delim[2:], pos):
                        kind, end = self._trailer(hay, pos + dl - 2, n)
                        if kind == _NEED:
                            return pos
                    else:
                        kind, end = _NOT, 0
                    self._fresh = False
                    if kind != _NOT:
                        pos = self._delimiter(emit, kind, end, events)
                        if self._state == _DONE:
                            return n
                        continue
                search = pos
                while True:
                    i = hay.find(delim, search, n)
                    if i < 0:
                        # Hold back a suffix that could begin a delimiter. CR occurs in the
                        # delimiter only at its first byte, so only the last CR can start one.
                        hold = n
                        k = hay.rfind(b"\r", max(search, n - dl + 1), n)
                        if k >= 0 and hay.startswith(delim[: n - k], k):
                            hold = k
                        if hold > stop:
                            hold = max(start, stop)
                        if emit and hold > start:
                            events.append(PartData(buf[start:hold]))
                        return hold
                    kind, end = self._trailer(hay, i + dl, n)
                    if kind == _NOT:
                        # A body dense with "CRLF--boundary<x>" would cost a Python round trip
                        # per hit; let the regex skip to the next real delimiter. Only one
                        # starting in the last lookahead bytes can still be undecided.
                        m = self._true_delim.search(hay, i + 1, n)
                        search = m.start() if m is not None else max(i + 1, n - self._lookahead)
                        continue
                    if kind == _NEED:
                        if i > stop:
                            i = max(start, stop)
                        if emit and i > start:
                            events.append(PartData(buf[start:i]))
                        return i
                    if emit and i > start:
                        events.append(PartData(buf[start:i]))
                    pos = self._delimiter(emit, kind, end, events)
                    break
                if self._state == _DONE:
                    return n
            elif state == _HEADERS:
                if pos >= n:
                    return n
                pos = self._headers(buf, pos, n, events)
                if self._state == _HEADERS:
                    return n
            else:  # _DONE: the epilogue is ignored
                return n

    def _delimiter(self, in_body: bool, kind: int, end: int, events: list[Event]) -> int:
        if in_body:
            events.append(PartEnd())
        self._state = _DONE if kind == _CLOSE else _HEADERS
        return end

    @staticmethod
    def _trailer(hay: bytes | bytearray, j: int, n: int) -> tuple[int, int]:
        """Classify the bytes after a ``CRLF--boundary`` candidate starting at ``j``."""
        if j >= n:
            return _NEED, 0
        c = hay[j]
        if c == 0x2D:  # "-"
            if j + 1 >= n:
                return _NEED, 0
            return (_CLOSE, j + 2) if hay[j + 1] == 0x2D else (_NOT, 0)
        k = j
        while k < n and (c == 0x20 or c == 0x09):  # transport padding: rare and short
            k += 1
            if k - j > MAX_TRANSPORT_PADDING:
                raise MultipartError("transport padding after a multipart delimiter is too long")
            if k < n:
                c = hay[k]
        if k >= n:
            return _NEED, 0
        if c == 0x0A:
            return _PART, k + 1
        if c == 0x0D:
            if k + 1 >= n:
                return _NEED, 0
            return (_PART, k + 2) if hay[k + 1] == 0x0A else (_NOT, 0)
        return _NOT, 0

    def _headers(self, buf: memoryview, pos: int, n: int, events: list[Event]) -> int:
        hbuf = self._hbuf
        cap = self._max_header_size
        old = len(hbuf)
        # Never copy more than the cap (plus a terminator) out of a large chunk.
        upto = min(n, pos + cap + 4 - old)
        hbuf += buf[pos:upto]
        m = _HEADER_END.search(hbuf, max(0, old - 3))
        if m is None:
            if len(hbuf) >= cap:
                raise MultipartError(f"part headers exceed {cap} bytes")
            return upto
        if m.end() > cap:
            raise MultipartError(f"part headers exceed {cap} bytes")
        block = bytes(hbuf[: m.start()])
        self._hbuf = bytearray()
        events.append(self._part_start(block))
        self._parts += 1
        self._state = _BODY
        self._fresh = True
        return pos + m.end() - old

    def _part_start(self, block: bytes) -> PartStart:
        headers: dict[str, str] = {}
        last: str | None = None  # header a folded continuation line extends
        for raw in block.decode("latin-1").split("\n"):
            line = raw.rstrip("\r")
            if not line:
                continue
            if line[0] in " \t":
                if last is not None:
                    headers[last] = f"{headers[last]} {line.strip()}".strip()
                continue
            name, sep, value = line.partition(":")
            name = name.strip().lower()
            if not sep or not name:
                raise MultipartError(f"malformed part header line: {line[:80]!r}")
            if name in headers:
                last = None
                continue
            headers[name] = value.strip()
            last = name
        content_type = headers.get("content-type") or self._default_content_type
        return PartStart(headers, content_type, parse_content_type(content_type)[0])
