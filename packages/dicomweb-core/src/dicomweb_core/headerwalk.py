"""The element walk over a buffered DICOM header, for :class:`~.scanner.DicomHeaderScanner`.

The walker looks at the bytes of the file meta group and the data set up to the top-level
Pixel Data element, element by element, without building anything: it only needs to know
where the header ends. It mirrors pydicom's reader where that matters (VR switch heuristics,
undefined-length UN read as an implicit VR sequence), so the prefix it finds is exactly what
pydicom will parse. Decisions depend only on byte values, never on how much is buffered, so
any chunking walks the same way.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import DicomFormatError
from .uids import is_valid_uid

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"

PREAMBLE_END = 132
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIM = 0xFFFEE00D
SEQ_DELIM = 0xFFFEE0DD
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_TRANSFER_SYNTAX_TAG = 0x00020010
# Explicit VR elements whose length is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
# pydicom reads nested sequences recursively, so deeper data sets would fail there anyway;
# the cap also bounds the walker's stack (two frames per sequence level).
_MAX_DEPTH = 256

_TAG_LEN = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}
_EXPLICIT = {True: struct.Struct("<HH2sH"), False: struct.Struct(">HH2sH")}
_U32 = {True: struct.Struct("<L"), False: struct.Struct(">L")}

# Walker frame kinds.
_META, _DATASET, _SEQUENCE, _UNDEF_VALUE, _SCAN = range(5)


def data_start(buf: bytearray) -> int:
    """Where the file meta group starts. Part 10 says after a 128-byte preamble and "DICM";
    some clients (dicomweb-client among them) send the file meta group with no preamble."""
    if buf[128:132] == b"DICM":
        return PREAMBLE_END
    if buf[:4] == b"DICM":
        return 4
    if buf[:2] == b"\x02\x00" and buf[4:6].isalpha() and buf[4:6].isupper():
        return 0
    raise DicomFormatError("not a DICOM Part-10 file (no 'DICM' prefix at offset 128, no file meta group)")


def _looks_explicit(vr: bytes | bytearray) -> bool:
    # Same test as pydicom's _is_implicit_vr: two characters in the 'A'..'Z' range.
    return 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B


class _Frame:
    """One level of the header walk (only undefined-length values are descended into)."""

    __slots__ = ("fresh", "implicit", "kind", "scan_from", "top")

    def __init__(self, kind: int, implicit: bool, *, top: bool = False, fresh: bool = False) -> None:
        self.kind = kind
        self.implicit = implicit
        self.top = top
        self.fresh = fresh  # VR encoding still to be checked on the first element
        self.scan_from = 0


@dataclass(frozen=True, slots=True)
class PixelDataStart:
    """The walk reached the top-level pixel data element."""

    header_length: int  # offset of the element (the header is everything before it)
    tag: int
    value_offset: int
    length: int  # UNDEFINED for encapsulated pixel data


@dataclass(frozen=True, slots=True)
class DeflateStart:
    """The file meta names the deflated syntax: the data set from ``offset`` on is deflated."""

    offset: int


class HeaderWalker:
    """The position of the walk over a growing header buffer, and what it learned on the way:
    where the file meta starts and ends, the transfer syntax and its byte order."""

    def __init__(self) -> None:
        #: Where the file meta group starts: 132 (preamble + DICM), 4 (DICM only) or 0 (no prefix).
        self.start: int | None = None
        self.pos = 0
        self.meta_end = 0
        self.transfer_syntax: str | None = None
        self.little = True
        self._stack: list[_Frame] = [_Frame(_META, False, top=True, fresh=True)]
        self._ts_span: tuple[int, int] | None = None
        self._stopped = False

    @property
    def in_meta(self) -> bool:
        return self._stack[-1].kind == _META

    @property
    def at_top_level(self) -> bool:
        return len(self._stack) == 1

    def walk(self, buf: bytearray) -> PixelDataStart | DeflateStart | None:
        """Advance over ``buf`` as far as its bytes allow; ``None`` means more bytes are needed."""
        n = len(buf)
        pos = self.pos
        stack = self._stack
        if self.start is None:
            if n < PREAMBLE_END:
                return None
            pos = self.start = data_start(buf)
        little = self.little
        tag_len = _TAG_LEN[little]
        try:
            while True:
                frame = stack[-1]
                kind = frame.kind
                if kind == _SEQUENCE:
                    if pos + 8 > n:
                        return None
                    group, elem, length = tag_len.unpack_from(buf, pos)
                    tag = group << 16 | elem
                    if tag == ITEM:
                        pos += 8
                        if length == UNDEFINED:
                            stack.append(_Frame(_DATASET, frame.implicit, fresh=True))
                        else:
                            pos += length
                    elif tag == SEQ_DELIM:
                        pos += 8
                        stack.pop()
                    else:
                        raise DicomFormatError(
                            f"unexpected tag ({group:04X},{elem:04X}) in a sequence at {pos}"
                        )
                    continue
                if kind == _UNDEF_VALUE:
                    if pos + 4 > n:
                        return None
                    group, elem = struct.unpack_from("<HH" if little else ">HH", buf, pos)
                    if group == 0xFFFE and elem in (0xE000, 0xE0DD):
                        frame.kind = _SEQUENCE
                    else:
                        # Not items: like pydicom, the value ends at the sequence delimiter.
                        frame.kind = _SCAN
                        frame.scan_from = pos
                    continue
                if kind == _SCAN:
                    delim = b"\xfe\xff\xdd\xe0" if little else b"\xff\xfe\xe0\xdd"
                    found = buf.find(delim, max(pos, frame.scan_from))
                    if found < 0 or found + 8 > n:
                        frame.scan_from = max(pos, n - 7)
                        return None
                    pos = found + 8
                    stack.pop()
                    continue
                # _META or _DATASET: one element.
                if frame.fresh:
                    if pos + 6 > n:
                        return None
                    explicit = _looks_explicit(buf[pos + 4 : pos + 6])
                    if frame.top:
                        frame.implicit = not explicit
                    elif not frame.implicit and not explicit:
                        frame.implicit = True
                    frame.fresh = False
                if pos + 8 > n:
                    return None
                element_little = little if kind == _DATASET else True
                group, elem, vr, short_len = _EXPLICIT[element_little].unpack_from(buf, pos)
                tag = group << 16 | elem
                if kind == _META and group != 2:
                    self.pos = pos
                    if self.end_meta(buf, pos):
                        return DeflateStart(pos)
                    stack = self._stack
                    little = self.little
                    tag_len = _TAG_LEN[little]
                    continue
                if tag == ITEM_DELIM:
                    if frame.top:
                        raise DicomFormatError(f"item delimiter outside any item at {pos}")
                    pos += 8
                    stack.pop()
                    continue
                implicit = frame.implicit
                header = 8
                if implicit:
                    length = _U32[element_little].unpack_from(buf, pos + 4)[0]
                elif vr in _LONG_VRS:
                    if pos + 12 > n:
                        return None
                    length = _U32[element_little].unpack_from(buf, pos + 8)[0]
                    header = 12
                elif not (b"AA" <= vr <= b"ZZ"):
                    # pydicom's switch: an invalid VR means this element is implicit VR.
                    length = _U32[element_little].unpack_from(buf, pos + 4)[0]
                else:
                    length = short_len
                if kind == _META and tag == _TRANSFER_SYNTAX_TAG and length != UNDEFINED:
                    self._ts_span = (pos + header, length)
                elif frame.top and kind == _DATASET and tag in PIXEL_TAGS:
                    self.pos = pos
                    self._stopped = True
                    return PixelDataStart(pos, tag, pos + header, length)
                pos += header
                if length != UNDEFINED:
                    pos += length
                elif kind == _META:
                    raise DicomFormatError(f"undefined length in the file meta at {pos - header}")
                else:
                    # An undefined-length UN is a sequence in implicit VR LE (PS3.5 6.2.2); like
                    # pydicom, each of its items is checked for implicit VR when it starts.
                    if len(stack) >= _MAX_DEPTH:
                        raise DicomFormatError(f"sequences nested deeper than {_MAX_DEPTH // 2} levels")
                    stack.append(_Frame(_UNDEF_VALUE, implicit))
        finally:
            if not self._stopped:
                self.pos = pos

    def end_meta(self, buf: bytearray, pos: int) -> bool:
        """Close the file meta at ``pos``; return True if the data set is deflated."""
        self.meta_end = pos
        if self._ts_span is None:
            raise DicomFormatError("the file meta has no Transfer Syntax UID (0002,0010)")
        start, length = self._ts_span
        ts = bytes(buf[start : start + length]).rstrip(b"\x00 ").decode("ascii", errors="replace")
        if not is_valid_uid(ts):
            raise DicomFormatError(f"invalid Transfer Syntax UID {ts[:80]!r}")
        self.transfer_syntax = ts
        self.little = ts != EXPLICIT_VR_BE
        implicit = ts == IMPLICIT_VR_LE
        self._stack = [_Frame(_DATASET, implicit, top=True, fresh=True)]
        return ts == DEFLATED_EXPLICIT_VR_LE
