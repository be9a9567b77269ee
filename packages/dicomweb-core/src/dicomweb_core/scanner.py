"""Push-based DICOM Part-10 header scanner for the STOW hot path.

Every chunk of an uploaded part is fed to :class:`DicomHeaderScanner` as it streams
to the object store. The scanner buffers only the *header* (preamble, file meta and
the data set up to the top-level Pixel Data element), walks it element by element,
and then follows the pixel data without buffering it: native pixel data is a byte
count; encapsulated pixel data is walked item header to item header, jumping over
fragment values by their lengths. Offsets are from byte 0 of the part, which is byte 0
of the stored object, so frames can later be served by byte range.

The walk mirrors pydicom's reader where it matters for finding the end of the header
(VR switch heuristics, undefined-length UN read as an implicit VR sequence), and the
data set itself is produced by pydicom from the buffered prefix.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.filereader import dcmread, read_dataset

from .errors import DicomFormatError
from .models import Fragment, PixelDataInfo
from .rawvalues import raw_int
from .uids import is_valid_uid

__all__ = ["DicomHeaderScanner", "ScanResult", "frame_fragments"]

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
_NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE})

_PREAMBLE_END = 132


def _data_start(buf: bytearray) -> int:
    """Where the file meta group starts. Part 10 says after a 128-byte preamble and "DICM";
    some clients (dicomweb-client among them) send the file meta group with no preamble."""
    if buf[128:132] == b"DICM":
        return _PREAMBLE_END
    if buf[:4] == b"DICM":
        return 4
    if buf[:2] == b"\x02\x00" and buf[4:6].isalpha() and buf[4:6].isupper():
        return 0
    raise DicomFormatError("not a DICOM Part-10 file (no 'DICM' prefix at offset 128, no file meta group)")


_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_DELIM = 0xFFFEE00D
_SEQ_DELIM = 0xFFFEE0DD
_TRANSFER_SYNTAX_TAG = 0x00020010
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
# Explicit VR elements whose length is 4 bytes after 2 reserved bytes (PS3.5 7.1.2).
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
# pydicom reads nested sequences recursively, so deeper data sets would fail there anyway;
# the cap also bounds the walker's stack (two frames per sequence level).
_MAX_DEPTH = 256
_INFLATE_STEP = 1 << 20  # bounded output per zlib call, so a deflate bomb cannot allocate at once

_TAG_LEN = {True: struct.Struct("<HHL"), False: struct.Struct(">HHL")}
_EXPLICIT = {True: struct.Struct("<HH2sH"), False: struct.Struct(">HH2sH")}
_U32 = {True: struct.Struct("<L"), False: struct.Struct(">L")}
_LE_ITEM = struct.Struct("<LL")

# Walker frame kinds.
_META, _DATASET, _SEQUENCE, _UNDEF_VALUE, _SCAN = range(5)


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
class ScanResult:
    """What the scanner learned about one Part-10 object.

    For Deflated Explicit VR Little Endian the data set is compressed, so byte offsets
    into the stored object do not exist: ``pixel_data`` is ``None`` and
    ``header_length`` equals ``total_length``.
    """

    dataset: pydicom.Dataset
    transfer_syntax_uid: str
    header_length: int
    total_length: int
    pixel_data: PixelDataInfo | None


def _looks_explicit(vr: bytes | bytearray) -> bool:
    # Same test as pydicom's _is_implicit_vr: two characters in the 'A'..'Z' range.
    return 0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B


class DicomHeaderScanner:
    """Feed the bytes of one Part-10 object in any chunking; call :meth:`finish` at the end.

    Memory is bounded by ``max_header_size`` (the buffered header) plus, for
    encapsulated pixel data, 16 bytes per fragment (at most ``max_header_size // 64``
    fragments) and the Basic Offset Table. Deflated data sets inflate to at most
    ``max_inflated_size`` bytes; inflated bytes after the header are counted, not kept.
    Only :class:`DicomFormatError` is raised; after one, the scanner stays failed.
    """

    def __init__(self, *, max_header_size: int = 64 * 1024 * 1024, max_inflated_size: int = 1 << 30) -> None:
        self._max_header = max_header_size
        self._buf_limit = max_header_size + 12  # room for the pixel data element header itself
        self._max_fragments = max(1024, max_header_size // 64)
        self._max_inflated = max_inflated_size
        self._buf = bytearray()
        self._pos = 0
        #: Where the file meta group starts: 132 (preamble + DICM), 4 (DICM only) or 0 (no prefix).
        self._start: int | None = None
        self._stack: list[_Frame] = [_Frame(_META, False, top=True, fresh=True)]
        self._little = True
        self._ts: str | None = None
        self._ts_span: tuple[int, int] | None = None
        self._meta_end = 0
        self._total = 0
        self._error: DicomFormatError | None = None
        self._dataset: pydicom.Dataset | None = None
        self._result: ScanResult | None = None
        # Deflate state (Deflated Explicit VR Little Endian only).
        self._inflater: zlib._Decompress | None = None
        self._inflated = 0
        # After the header: _header_length is set and _lpos counts logical bytes consumed.
        self._header_length: int | None = None
        self._lpos = 0
        self._pixel_tag = 0
        self._value_offset = 0
        self._value_length: int | None = None
        self._remaining = 0  # native: value bytes still to come; encapsulated: bytes to skip
        self._carry = bytearray()  # a partial item header split across chunks
        self._encap_done = False
        self._bot: bytearray | None = None  # None until the first item (the BOT) is seen
        self._bot_remaining = 0
        self._frag_offsets = array("q")
        self._frag_lengths = array("q")

    # ------------------------------------------------------------------ public API

    @property
    def header_done(self) -> bool:
        return self._header_length is not None

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._error is not None:
            raise self._error
        try:
            view = memoryview(chunk)
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            self._total += len(view)
            if self._inflater is not None:
                self._inflate(view)
            else:
                rest = self._feed_logical(view)
                if rest is not None:
                    self._inflate(rest)
        except DicomFormatError as exc:
            self._error = exc
            raise
        except Exception as exc:  # never let a malformed part surface as anything else
            self._error = DicomFormatError(f"cannot scan DICOM data: {exc!r}")
            raise self._error from exc

    def dataset(self) -> pydicom.Dataset:
        """The data set before pixel data, parsed by pydicom, with ``file_meta`` set."""
        if self._dataset is None:
            if self._error is not None:
                raise self._error
            if self._header_length is None:
                raise DicomFormatError("the DICOM header is not complete yet")
            self._dataset = self._parse_dataset()
        return self._dataset

    def finish(self) -> ScanResult:
        if self._result is not None:
            return self._result
        if self._error is not None:
            raise self._error
        try:
            self._result = self._finish()
        except DicomFormatError as exc:
            self._error = exc
            raise
        except Exception as exc:
            self._error = DicomFormatError(f"cannot scan DICOM data: {exc!r}")
            raise self._error from exc
        return self._result

    # ------------------------------------------------------------------ feeding

    def _feed_logical(self, view: memoryview) -> memoryview | None:
        """Consume logical (inflated, if deflated) bytes; return raw bytes to inflate on a switch."""
        while view:
            if self._header_length is None:
                room = self._buf_limit - len(self._buf)
                if room <= 0:
                    raise DicomFormatError(f"header larger than {self._max_header} bytes")
                self._buf += view[:room]
                view = view[room:]
                deflated_at = self._walk()
                if deflated_at is not None:
                    # The data set after the file meta is deflated: what is buffered past the
                    # meta and the rest of this chunk are raw deflate bytes.
                    raw = bytes(self._buf[deflated_at:]) + bytes(view)
                    del self._buf[deflated_at:]
                    return memoryview(raw)
                if self._header_length is None and len(self._buf) >= self._buf_limit:
                    raise DicomFormatError(f"header larger than {self._max_header} bytes")
            else:
                self._after_header(view)
                return None
        return None

    def _inflate(self, view: memoryview) -> None:
        inflater = self._inflater
        assert inflater is not None
        data: bytes | memoryview = view
        while not inflater.eof:
            try:
                out = inflater.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise DicomFormatError(f"deflated data set is corrupt: {exc}") from exc
            self._inflated += len(out)
            if self._inflated > self._max_inflated:
                raise DicomFormatError(f"deflated data set inflates beyond {self._max_inflated} bytes")
            if out:
                self._feed_logical(memoryview(out))
            data = inflater.unconsumed_tail
            if not data and len(out) < _INFLATE_STEP:
                break  # all input consumed and no output pending
        # Bytes after the end of the deflate stream are ignored like trailing padding.

    def _start_post_header(self, header_length: int, tag: int, value_offset: int, length: int) -> None:
        if header_length > self._max_header:
            raise DicomFormatError(f"header larger than {self._max_header} bytes")
        self._header_length = header_length
        self._pixel_tag = tag
        self._value_offset = value_offset
        extra = bytes(self._buf[value_offset:])
        del self._buf[header_length:]
        self._lpos = value_offset
        if length == _UNDEFINED:
            self._value_length = None
            self._remaining = 0
        else:
            self._value_length = length
            self._remaining = length
        if extra:
            self._after_header(memoryview(extra))

    def _after_header(self, view: memoryview) -> None:
        if self._value_length is not None:
            # Native pixel data: O(1) per chunk, the value is only counted.
            self._remaining -= min(self._remaining, len(view))
            self._lpos += len(view)
        else:
            self._walk_items(view)

    def _walk_items(self, view: memoryview) -> None:
        """Encapsulated pixel data: jump from item header to item header."""
        base = self._lpos
        n = len(view)
        self._lpos += n
        i = 0
        while i < n:
            if self._remaining:
                step = min(self._remaining, n - i)
                if self._bot_remaining:
                    assert self._bot is not None
                    self._bot += view[i : i + step]
                    self._bot_remaining -= step
                self._remaining -= step
                i += step
                continue
            if self._encap_done:
                return  # anything after the sequence delimiter is not needed
            if not self._carry and n - i >= 8:
                tag_hi, length = _LE_ITEM.unpack_from(view, i)
                i += 8
            else:
                take = min(8 - len(self._carry), n - i)
                self._carry += view[i : i + take]
                i += take
                if len(self._carry) < 8:
                    return
                tag_hi, length = _LE_ITEM.unpack_from(self._carry)
                self._carry.clear()
            tag = ((tag_hi & 0xFFFF) << 16) | (tag_hi >> 16)
            value_offset = base + i
            if tag == _ITEM:
                if length == _UNDEFINED:
                    raise DicomFormatError(
                        f"undefined-length item in encapsulated pixel data at {value_offset - 8}"
                    )
                if self._bot is None:
                    if length > 4 * self._max_fragments:
                        raise DicomFormatError("basic offset table too large")
                    self._bot = bytearray()
                    self._bot_remaining = length
                else:
                    if len(self._frag_offsets) >= self._max_fragments:
                        raise DicomFormatError(f"more than {self._max_fragments} pixel data fragments")
                    self._frag_offsets.append(value_offset)
                    self._frag_lengths.append(length)
                self._remaining = length
            elif tag == _SEQ_DELIM:
                self._encap_done = True
            else:
                raise DicomFormatError(
                    f"unexpected tag ({tag >> 16:04X},{tag & 0xFFFF:04X}) in encapsulated pixel data "
                    f"at offset {value_offset - 8}"
                )

    # ------------------------------------------------------------------ header walk

    def _walk(self) -> int | None:
        """Advance over the buffered header as far as the bytes allow.

        Returns the offset where deflated data starts if the file meta names the deflated
        syntax. Decisions depend only on byte values, never on what is buffered yet, so any
        chunking walks the same way.
        """
        buf = self._buf
        n = len(buf)
        pos = self._pos
        stack = self._stack
        if self._start is None:
            if n < _PREAMBLE_END:
                return None
            pos = self._start = _data_start(buf)
        little = self._little
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
                    if tag == _ITEM:
                        pos += 8
                        if length == _UNDEFINED:
                            stack.append(_Frame(_DATASET, frame.implicit, fresh=True))
                        else:
                            pos += length
                    elif tag == _SEQ_DELIM:
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
                    self._pos = pos
                    deflated = self._end_meta(pos)
                    if deflated:
                        return pos
                    stack = self._stack
                    little = self._little
                    tag_len = _TAG_LEN[little]
                    continue
                if tag == _ITEM_DELIM:
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
                if kind == _META and tag == _TRANSFER_SYNTAX_TAG and length != _UNDEFINED:
                    self._ts_span = (pos + header, length)
                elif frame.top and kind == _DATASET and tag in _PIXEL_TAGS:
                    self._pos = pos
                    self._start_post_header(pos, tag, pos + header, length)
                    return None
                pos += header
                if length != _UNDEFINED:
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
            if self._header_length is None:
                self._pos = pos

    def _end_meta(self, pos: int) -> bool:
        """Close the file meta at ``pos``; return True if the data set is deflated."""
        self._meta_end = pos
        if self._ts_span is None:
            raise DicomFormatError("the file meta has no Transfer Syntax UID (0002,0010)")
        start, length = self._ts_span
        ts = bytes(self._buf[start : start + length]).rstrip(b"\x00 ").decode("ascii", errors="replace")
        if not is_valid_uid(ts):
            raise DicomFormatError(f"invalid Transfer Syntax UID {ts[:80]!r}")
        self._ts = ts
        self._little = ts != EXPLICIT_VR_BE
        implicit = ts == IMPLICIT_VR_LE
        self._stack = [_Frame(_DATASET, implicit, top=True, fresh=True)]
        if ts == DEFLATED_EXPLICIT_VR_LE:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            return True
        return False

    # ------------------------------------------------------------------ finishing

    def _finish(self) -> ScanResult:
        if self._inflater is not None and not self._inflater.eof:
            raise DicomFormatError("deflated data set is truncated (deflate stream not complete)")
        if self._header_length is None:
            self._finish_header()
        header_length = self._header_length
        assert header_length is not None
        dataset = self.dataset()
        ts = self._ts
        assert ts is not None
        pixel_data: PixelDataInfo | None = None
        if self._pixel_tag:
            if self._value_length is not None:
                if self._remaining:
                    raise DicomFormatError(
                        f"truncated: pixel data declares {self._value_length} bytes, "
                        f"{self._value_length - self._remaining} present"
                    )
                pixel_data = self._native_info(dataset, ts)
            else:
                if self._remaining or self._carry or self._bot_remaining:
                    raise DicomFormatError("truncated: encapsulated pixel data item runs past the end")
                if not self._encap_done:
                    raise DicomFormatError("encapsulated pixel data without sequence delimiter")
                pixel_data = self._encapsulated_info(dataset)
        if self._inflater is not None:
            # Offsets into the inflated stream mean nothing in the stored object.
            return ScanResult(dataset, ts, self._total, self._total, None)
        return ScanResult(dataset, ts, header_length, self._total, pixel_data)

    def _finish_header(self) -> None:
        """End of data before any pixel data: a data set without pixel data, or truncation."""
        n = len(self._buf)
        if self._start is None:
            self._start = _data_start(self._buf)
            if self._start == _PREAMBLE_END or n <= self._start:
                raise DicomFormatError("not a DICOM Part-10 file (no 'DICM' prefix at offset 128)")
            self._pos = self._start
            self._walk()
        frame = self._stack[-1]
        if self._pos != n or len(self._stack) != 1:
            raise DicomFormatError(f"truncated: the data set ends inside an element ({n} bytes)")
        if n > self._max_header:
            raise DicomFormatError(f"header larger than {self._max_header} bytes")
        if frame.kind == _META:
            self._end_meta(n)
        self._header_length = n

    @property
    def missing_prefix(self) -> bytes:
        """What a stored copy needs in front of the received bytes to be a proper Part-10
        file (preamble and/or "DICM"); empty when the object already has both."""
        if self._start == 0:
            return bytes(128) + b"DICM"
        if self._start == 4:
            return bytes(128)
        return b""

    @property
    def _skip(self) -> int:
        # pydicom reads a 128-byte preamble + DICM, or a bare file meta group (with force);
        # a lone "DICM" prefix is cut off before handing the bytes over.
        return 4 if self._start == 4 else 0

    def _parse_dataset(self) -> pydicom.Dataset:
        assert self._header_length is not None
        try:
            if self._inflater is None and self._ts != DEFLATED_EXPLICIT_VR_LE:
                prefix = bytes(self._buf[self._skip : self._header_length])
                bare = self._skip != 0 or self._start == 0  # no preamble: pydicom needs force
                return dcmread(BytesIO(prefix), stop_before_pixels=True, force=bare)
            meta = dcmread(BytesIO(bytes(self._buf[self._skip : self._meta_end])), force=True)
            body = read_dataset(
                BytesIO(bytes(self._buf[self._meta_end : self._header_length])),
                is_implicit_VR=False,
                is_little_endian=True,
                stop_when=lambda tag, vr, length: tag in _PIXEL_TAGS,
            )
            meta.update(body)
            meta.set_original_encoding(False, True, body._character_set)
            return meta
        except Exception as exc:
            raise DicomFormatError(f"pydicom cannot parse the DICOM header: {exc}") from exc

    def _native_info(self, ds: pydicom.Dataset, ts: str) -> PixelDataInfo:
        length = self._value_length
        assert length is not None
        frames_n = _number_of_frames(ds)
        frame_size: int | None = None
        frames: tuple[Fragment, ...] = ()
        rows, cols, bits = raw_int(ds, 0x00280010), raw_int(ds, 0x00280011), raw_int(ds, 0x00280100)
        samples = raw_int(ds, 0x00280002) or 1
        if ts in _NATIVE_SYNTAXES and rows and cols and bits and bits != 1 and samples > 0:
            frame_size = rows * cols * samples * ((bits + 7) // 8)
            if frames_n * frame_size <= length:
                if frames_n > self._max_fragments:
                    raise DicomFormatError(f"more than {self._max_fragments} frames")
                start = self._value_offset
                frames = tuple(Fragment(start + i * frame_size, frame_size) for i in range(frames_n))
        return PixelDataInfo(
            tag=self._pixel_tag,
            value_offset=self._value_offset,
            length=length,
            encapsulated=False,
            frame_size=frame_size,
            number_of_frames=frames_n,
            frames=frames,
        )

    def _encapsulated_info(self, ds: pydicom.Dataset) -> PixelDataInfo:
        bot_raw = bytes(self._bot or b"")
        bot = tuple(struct.unpack(f"<{len(bot_raw) // 4}L", bot_raw[: len(bot_raw) // 4 * 4]))
        fragments = tuple(Fragment(o, n) for o, n in zip(self._frag_offsets, self._frag_lengths, strict=True))
        frames_n = _number_of_frames(ds)
        return PixelDataInfo(
            tag=self._pixel_tag,
            value_offset=self._value_offset,
            length=None,
            encapsulated=True,
            number_of_frames=frames_n,
            basic_offset_table=bot,
            fragments=fragments,
            frames=_encapsulated_frames(fragments, frames_n, bot, _extended_offsets(ds, frames_n)),
        )


# ---------------------------------------------------------------------- frame helpers


def _number_of_frames(ds: pydicom.Dataset) -> int:
    value = raw_int(ds, 0x00280008)
    return value if value is not None and value >= 1 else 1


def _extended_offsets(ds: pydicom.Dataset, frames_n: int) -> tuple[int, ...]:
    """Extended Offset Table (7FE0,0001): one uint64 per frame, when consistent."""
    try:
        raw = ds.get("ExtendedOffsetTable")
        if not isinstance(raw, bytes) or len(raw) != 8 * frames_n:
            return ()
        return tuple(struct.unpack(f"<{frames_n}Q", raw))
    except Exception:
        return ()


def _encapsulated_frames(
    fragments: tuple[Fragment, ...], frames_n: int, bot: tuple[int, ...], eot: tuple[int, ...]
) -> tuple[Fragment, ...]:
    """Frame spans: one fragment per frame, else the BOT (or EOT), else one frame of all fragments."""
    if not fragments:
        return ()
    if len(fragments) == frames_n:
        return fragments
    for table in (bot, eot):
        if len(table) != frames_n:
            continue
        # Table offsets count from the first byte of the first fragment item's header.
        first_item = fragments[0].offset - 8
        starts = [f.offset - 8 - first_item for f in fragments]
        indices: list[int] = []
        for offset in table:
            k = bisect_left(starts, offset)
            if k == len(starts) or starts[k] != offset or (indices and k <= indices[-1]):
                indices = []
                break
            indices.append(k)
        if indices and indices[0] == 0:
            ends = [*indices[1:], len(fragments)]
            return tuple(_span(fragments[a:b]) for a, b in zip(indices, ends, strict=True))
    if frames_n == 1:
        return (_span(fragments),)
    return ()


def _span(fragments: tuple[Fragment, ...]) -> Fragment:
    first, last = fragments[0], fragments[-1]
    return Fragment(first.offset, last.offset + last.length - first.offset)


def _offset_of(fragment: Fragment) -> int:
    return fragment.offset


def frame_fragments(info: PixelDataInfo, index: int) -> list[Fragment]:
    """The value ranges holding frame ``index`` (0-based), in order.

    Native pixel data: one range. Encapsulated: ``info.frames[index]`` spans from the
    first fragment's value to the last one's end, item headers included, so a reader
    must fetch these fragment ranges (or strip the 8-byte item headers) and concatenate
    them. Raises ``IndexError`` when the frame does not exist or its bounds are unknown.
    """
    if not 0 <= index < len(info.frames):
        raise IndexError(f"frame {index} is not available ({len(info.frames)} frames known)")
    span = info.frames[index]
    if not info.encapsulated:
        return [span]
    first = bisect_left(info.fragments, span.offset, key=_offset_of)
    end = span.offset + span.length
    result: list[Fragment] = []
    for fragment in info.fragments[first:]:
        if fragment.offset >= end:
            break
        result.append(fragment)
    return result
