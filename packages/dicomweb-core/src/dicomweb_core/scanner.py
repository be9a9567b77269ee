"""Push-based DICOM Part-10 header scanner for the STOW hot path.

Every chunk of an uploaded part is fed to :class:`DicomHeaderScanner` as it streams
to the object store. The scanner buffers only the *header* (preamble, file meta and
the data set up to the top-level Pixel Data element), walks it element by element
(:mod:`.headerwalk`), and then follows the pixel data without buffering it: native pixel
data is a byte count; encapsulated pixel data is walked item header to item header,
jumping over fragment values by their lengths (:mod:`.pixelitems`). Offsets are from byte 0
of the part, which is byte 0 of the stored object, so frames can later be served by byte range.

The data set itself is produced by pydicom from the buffered prefix.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from io import BytesIO

import pydicom
from pydicom.filereader import dcmread, read_dataset

from .errors import DicomFormatError
from .headerwalk import (
    DEFLATED_EXPLICIT_VR_LE,
    PIXEL_TAGS,
    PREAMBLE_END,
    UNDEFINED,
    DeflateStart,
    HeaderWalker,
    PixelDataStart,
    data_start,
)
from .models import PixelDataInfo
from .pixelitems import EncapsulatedItems, encapsulated_info, frame_fragments, native_info

__all__ = ["DicomHeaderScanner", "ScanResult", "frame_fragments"]

_INFLATE_STEP = 1 << 20  # bounded output per zlib call, so a deflate bomb cannot allocate at once


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
        self._walker = HeaderWalker()
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
        self._value_length: int | None = None  # None: encapsulated
        self._native_remaining = 0
        self._items: EncapsulatedItems | None = None

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

    @property
    def missing_prefix(self) -> bytes:
        """What a stored copy needs in front of the received bytes to be a proper Part-10
        file (preamble and/or "DICM"); empty when the object already has both."""
        if self._walker.start == 0:
            return bytes(128) + b"DICM"
        if self._walker.start == 4:
            return bytes(128)
        return b""

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
                stop = self._walker.walk(self._buf)
                if isinstance(stop, DeflateStart):
                    # The data set after the file meta is deflated: what is buffered past the
                    # meta and the rest of this chunk are raw deflate bytes.
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    raw = bytes(self._buf[stop.offset :]) + bytes(view)
                    del self._buf[stop.offset :]
                    return memoryview(raw)
                if isinstance(stop, PixelDataStart):
                    self._start_post_header(stop)
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

    def _start_post_header(self, stop: PixelDataStart) -> None:
        if stop.header_length > self._max_header:
            raise DicomFormatError(f"header larger than {self._max_header} bytes")
        self._header_length = stop.header_length
        self._pixel_tag = stop.tag
        self._value_offset = stop.value_offset
        extra = bytes(self._buf[stop.value_offset :])
        del self._buf[stop.header_length :]
        self._lpos = stop.value_offset
        if stop.length == UNDEFINED:
            self._value_length = None
            self._items = EncapsulatedItems(self._max_fragments)
        else:
            self._value_length = stop.length
            self._native_remaining = stop.length
        if extra:
            self._after_header(memoryview(extra))

    def _after_header(self, view: memoryview) -> None:
        if self._items is None:
            # Native pixel data: O(1) per chunk, the value is only counted.
            self._native_remaining -= min(self._native_remaining, len(view))
        else:
            self._items.feed(view, self._lpos)
        self._lpos += len(view)

    # ------------------------------------------------------------------ finishing

    def _finish(self) -> ScanResult:
        if self._inflater is not None and not self._inflater.eof:
            raise DicomFormatError("deflated data set is truncated (deflate stream not complete)")
        if self._header_length is None:
            self._finish_header()
        header_length = self._header_length
        assert header_length is not None
        dataset = self.dataset()
        ts = self._walker.transfer_syntax
        assert ts is not None
        pixel_data: PixelDataInfo | None = None
        if self._pixel_tag:
            if self._items is None:
                assert self._value_length is not None
                if self._native_remaining:
                    raise DicomFormatError(
                        f"truncated: pixel data declares {self._value_length} bytes, "
                        f"{self._value_length - self._native_remaining} present"
                    )
                pixel_data = native_info(
                    dataset, ts, self._pixel_tag, self._value_offset, self._value_length, self._max_fragments
                )
            else:
                self._items.check_complete()
                pixel_data = encapsulated_info(dataset, self._pixel_tag, self._value_offset, self._items)
        if self._inflater is not None:
            # Offsets into the inflated stream mean nothing in the stored object.
            return ScanResult(dataset, ts, self._total, self._total, None)
        return ScanResult(dataset, ts, header_length, self._total, pixel_data)

    def _finish_header(self) -> None:
        """End of data before any pixel data: a data set without pixel data, or truncation."""
        n = len(self._buf)
        walker = self._walker
        if walker.start is None:
            walker.start = data_start(self._buf)
            if walker.start == PREAMBLE_END or n <= walker.start:
                raise DicomFormatError("not a DICOM Part-10 file (no 'DICM' prefix at offset 128)")
            walker.pos = walker.start
            walker.walk(self._buf)
        if walker.pos != n or not walker.at_top_level:
            raise DicomFormatError(f"truncated: the data set ends inside an element ({n} bytes)")
        if n > self._max_header:
            raise DicomFormatError(f"header larger than {self._max_header} bytes")
        if walker.in_meta:
            walker.end_meta(self._buf, n)
        self._header_length = n

    @property
    def _skip(self) -> int:
        # pydicom reads a 128-byte preamble + DICM, or a bare file meta group (with force);
        # a lone "DICM" prefix is cut off before handing the bytes over.
        return 4 if self._walker.start == 4 else 0

    def _parse_dataset(self) -> pydicom.Dataset:
        assert self._header_length is not None
        walker = self._walker
        try:
            if self._inflater is None and walker.transfer_syntax != DEFLATED_EXPLICIT_VR_LE:
                prefix = bytes(self._buf[self._skip : self._header_length])
                bare = self._skip != 0 or walker.start == 0  # no preamble: pydicom needs force
                return dcmread(BytesIO(prefix), stop_before_pixels=True, force=bare)
            meta = dcmread(BytesIO(bytes(self._buf[self._skip : walker.meta_end])), force=True)
            body = read_dataset(
                BytesIO(bytes(self._buf[walker.meta_end : self._header_length])),
                is_implicit_VR=False,
                is_little_endian=True,
                stop_when=lambda tag, vr, length: tag in PIXEL_TAGS,
            )
            meta.update(body)
            meta.set_original_encoding(False, True, body._character_set)
            return meta
        except Exception as exc:
            raise DicomFormatError(f"pydicom cannot parse the DICOM header: {exc}") from exc
