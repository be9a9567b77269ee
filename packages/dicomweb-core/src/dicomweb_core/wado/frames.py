"""Frames and pixel bulk data, read by byte range from the offsets recorded at ingest.

Native pixel data: a frame is one contiguous slice of the stored object. Encapsulated: a
frame is one or more fragments; their values are read in one ranged read (from the first
fragment to the end of the last) and concatenated without the 8-byte item headers.

Slow paths, for objects whose frame bounds ingest could not record: a deflated data set
(no byte offsets exist), 1-bit pixel data (frames need not start on a byte), and
encapsulated multi-frame data without a usable offset table. They read the pixel data (or
the object, for deflate) once per request, never for the common case.

Nothing here trusts the numbers in a header: ingest checks them against the bytes, but an
object may have been catalogued before that check existed (or by ``dicomweb reindex``). A
frame is served only when it lies wholly inside the stored value, the frame count is capped
by what the value can hold, and every read is bounded by ``MAX_DECODED_SIZE``.
"""

from __future__ import annotations

import asyncio
import io
import re
from typing import Any

import numpy as np
import orjson

from ..errors import BadRequestError, DicomFormatError, NotAcceptableError, NotFoundError
from ..limits import Limits
from ..models import Fragment, InstanceRecord, PixelDataInfo
from ..scanner import frame_fragments
from ..stores.base import ObjectStore
from .accept import DEFLATED_LE
from .transcode import DECODE_ERRORS

_FRAME_LIST = re.compile(r"\d+(,\d+)*")
_ITEM_HEADER = 8


def parse_frame_list(text: str) -> list[int]:
    """``"1,3,5"`` → ``[1, 3, 5]`` (1-based, order kept). Malformed → 400."""
    text = text.strip().replace(" ", "").replace("%2C", ",").replace("%2c", ",")
    if not _FRAME_LIST.fullmatch(text):
        raise BadRequestError(f"invalid frame list {text[:80]!r}: expected comma-separated frame numbers")
    numbers = [int(n) for n in text.split(",")]
    if len(numbers) > 10000:
        raise BadRequestError("too many frames in one request (at most 10000)")
    return numbers


def _int_value(metadata: dict[str, Any], key: str, default: int) -> int:
    try:
        return int(metadata[key]["Value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return default


#: Reads up to this size are one ranged read; larger ones stream in store-sized chunks, so the
#: event loop never copies a whole large frame in one go (and a store keeps no buffer that big).
_ONE_READ = 1 << 20


async def read_span(store: ObjectStore, key: str, start: int, length: int) -> bytes:
    """Bytes ``[start, start + length)`` of an object."""
    if length <= _ONE_READ:
        return await store.read_range(key, start, length)
    return b"".join([chunk async for chunk in store.read(key, start, start + length)])


class PixelSource:
    """The frames of one stored instance, read lazily from the object store."""

    def __init__(self, store: ObjectStore, record: InstanceRecord, limits: Limits | None = None) -> None:
        self.store = store
        self.record = record
        self.limits = limits or Limits()
        self.info: PixelDataInfo | None = record.pixel_data
        self._metadata: dict[str, Any] | None = None
        self._frames: list[bytes] | None = None  # filled only on the slow paths

    @property
    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = orjson.loads(self.record.metadata)
        return self._metadata

    @property
    def has_pixels(self) -> bool:
        if self.info is not None:
            return True
        # Deflated objects have no recorded offsets; the image attributes tell there are pixels.
        meta = self.metadata
        return self.record.transfer_syntax_uid == DEFLATED_LE and "00280010" in meta and "00280100" in meta

    @property
    def number_of_frames(self) -> int:
        """NumberOfFrames as the header claims it (at least 1)."""
        if self.info is not None:
            return max(1, self.info.number_of_frames)
        return max(1, _int_value(self.metadata, "00280008", 1))

    @property
    def frame_bits(self) -> int:
        """Bits per native frame from the image geometry; 0 when the geometry is missing."""
        meta = self.metadata
        rows = _int_value(meta, "00280010", 0)
        cols = _int_value(meta, "00280011", 0)
        samples = _int_value(meta, "00280002", 1)
        bits = _int_value(meta, "00280100", 0)
        if min(rows, cols, samples, bits) < 1:
            return 0
        return rows * cols * samples * bits

    @property
    def available_frames(self) -> int:
        """How many frames the stored value really holds (never more than claimed)."""
        claimed = min(self.number_of_frames, self.limits.max_frames)
        info = self.info
        if info is None:
            return claimed  # deflated: checked against the data once it is inflated
        if info.encapsulated:
            if len(info.frames) == info.number_of_frames:
                return min(claimed, len(info.frames))
            return min(claimed, len(info.fragments))
        bits = self.frame_bits
        if not bits or info.length is None:
            return 0
        return min(claimed, info.length * 8 // bits)

    def check_frames(self, numbers: list[int]) -> None:
        """404 with a reason for a frame number outside 1..NumberOfFrames or not in the data."""
        if not self.has_pixels:
            raise NotFoundError(f"instance {self.record.sop_instance_uid} has no pixel data")
        count = self.number_of_frames
        available = self.available_frames
        for n in numbers:
            if not 1 <= n <= count:
                raise NotFoundError(
                    f"frame {n} does not exist: instance {self.record.sop_instance_uid} has {count} frame(s)"
                )
            if n > available:
                raise NotFoundError(
                    f"frame {n} of instance {self.record.sop_instance_uid} is not in its stored pixel data"
                    f" (the data holds {available} complete frame(s) of the {count} its header claims)"
                )

    @property
    def fast(self) -> bool:
        """Whether every frame is a known byte range of the stored object."""
        info = self.info
        return info is not None and len(info.frames) == info.number_of_frames

    def bounded(self, size: int, what: str) -> None:
        cap = self.limits.max_decoded_size
        if size > cap:
            raise NotAcceptableError(
                f"{what} of instance {self.record.sop_instance_uid} is {size} bytes, over the"
                f" MAX_DECODED_SIZE limit of {cap} bytes (bulk data with a Range header streams any size)"
            )

    async def frame(self, number: int) -> bytes:
        """Frame ``number`` (1-based) as stored: native bytes or the compressed bitstream.
        Call :meth:`check_frames` first."""
        info = self.info
        if info is not None and self.fast:
            fragments = frame_fragments(info, number - 1)
            if fragments:
                self.bounded(fragments[-1].offset + fragments[-1].length - fragments[0].offset, "a frame")
            return await self._read_fragments(fragments, info.encapsulated)
        if info is not None and not info.encapsulated:
            return await self._native_frame(info, number)
        frames = await self._all_frames()
        if number > len(frames):
            raise NotFoundError(
                f"frame {number} of instance {self.record.sop_instance_uid} is not in its pixel data"
                f" ({len(frames)} frame(s) found)"
            )
        return frames[number - 1]

    async def _read_fragments(self, fragments: list[Fragment], encapsulated: bool) -> bytes:
        if not fragments:
            return b""
        first, last = fragments[0], fragments[-1]
        data = await read_span(
            self.store, self.record.object_key, first.offset, last.offset + last.length - first.offset
        )
        if not encapsulated or len(fragments) == 1:
            return data
        base = first.offset
        return b"".join(data[f.offset - base : f.offset - base + f.length] for f in fragments)

    async def _native_frame(self, info: PixelDataInfo, number: int) -> bytes:
        """One native frame read by its own byte range (also 1-bit frames, re-packed)."""
        bits = self.frame_bits
        assert info.length is not None and bits
        first_bit, end_bit = (number - 1) * bits, number * bits
        if end_bit > info.length * 8:
            raise NotFoundError(f"frame {number} is not in the stored pixel data")
        start, end = first_bit // 8, (end_bit + 7) // 8
        self.bounded(end - start, "a frame")
        data = await read_span(self.store, self.record.object_key, info.value_offset + start, end - start)
        if first_bit % 8 == 0 and end_bit % 8 == 0:
            return data
        # 1-bit data is packed across frame boundaries; re-pack the frame from its own first bit.
        shift = first_bit - start * 8
        unpacked = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return np.packbits(unpacked[shift : shift + bits], bitorder="little").tobytes()

    async def value_segments(self) -> list[Fragment]:
        """Native pixel data: the whole value as one byte range of the stored object."""
        info = self.info
        if info is None or info.encapsulated or info.length is None:
            return []
        return [Fragment(info.value_offset, info.length)]

    # -------------------------------------------------------------- slow paths

    async def _all_frames(self) -> list[bytes]:
        """Deflated objects and encapsulated data without frame offsets: the whole pixel data
        (bounded by ``MAX_DECODED_SIZE``), read once and split."""
        if self._frames is None:
            info = self.info
            count = min(self.number_of_frames, self.limits.max_frames)
            if info is None:
                self.bounded(self.record.size, "the deflated object")
                blob = b"".join([c async for c in self.store.read(self.record.object_key)])
                self._frames = await asyncio.to_thread(_frames_from_object, blob, self.limits.max_frames)
            else:
                if not info.fragments:
                    self._frames = []
                    return self._frames
                first, last = info.fragments[0], info.fragments[-1]
                self.bounded(last.offset + last.length - first.offset, "the encapsulated pixel data")
                data = await read_span(
                    self.store, self.record.object_key, first.offset, last.offset + last.length - first.offset
                )
                base = first.offset
                fragments = [data[f.offset - base : f.offset - base + f.length] for f in info.fragments]
                self._frames = await asyncio.to_thread(_split_encapsulated, fragments, count)
        return self._frames


def _split_encapsulated(fragments: list[bytes], count: int) -> list[bytes]:
    if count == 1:
        return [b"".join(fragments)]
    if len(fragments) == count:
        return fragments
    from pydicom.encaps import generate_frames

    # Reassemble the item stream so pydicom can find frame boundaries (JPEG EOI markers etc.).
    buf = bytearray(b"\xfe\xff\x00\xe0\x00\x00\x00\x00")
    for f in fragments:
        buf += b"\xfe\xff\x00\xe0" + len(f).to_bytes(4, "little") + f
    try:
        frames = list(generate_frames(bytes(buf), number_of_frames=count))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise DicomFormatError(f"cannot find frame boundaries in the encapsulated pixel data: {exc}") from exc
    if len(frames) != count:
        raise DicomFormatError(f"found {len(frames)} frames in the encapsulated pixel data, expected {count}")
    return frames


def _frames_from_object(blob: bytes, max_frames: int) -> list[bytes]:
    import pydicom
    from pydicom.encaps import generate_frames

    try:
        ds = pydicom.dcmread(io.BytesIO(blob))
    except DECODE_ERRORS as exc:
        raise DicomFormatError(f"the stored object cannot be parsed: {exc}") from exc
    if "PixelData" not in ds:
        return []
    meta = {
        k: {"Value": [v]}
        for k, v in (
            ("00280008", ds.get("NumberOfFrames", 1)),
            ("00280010", ds.get("Rows", 0)),
            ("00280011", ds.get("Columns", 0)),
            ("00280002", ds.get("SamplesPerPixel", 1)),
            ("00280100", ds.get("BitsAllocated", 8)),
        )
    }
    count = min(max(1, _int_value(meta, "00280008", 1)), max_frames)
    value = bytes(ds.PixelData)
    if ds["PixelData"].is_undefined_length or value[:4] == b"\xfe\xff\x00\xe0":
        try:
            return list(generate_frames(value, number_of_frames=count))
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise DicomFormatError(f"cannot find the frames in the pixel data: {exc}") from exc
    return _split_native(value, meta, count)


def _split_native(value: bytes, metadata: dict[str, Any], count: int) -> list[bytes]:
    """The complete frames of a native value (at most ``count``; a partial frame is dropped)."""
    rows = _int_value(metadata, "00280010", 0)
    cols = _int_value(metadata, "00280011", 0)
    samples = _int_value(metadata, "00280002", 1)
    bits = _int_value(metadata, "00280100", 8)
    pixels = rows * cols * samples
    if pixels <= 0 or bits <= 0:
        raise DicomFormatError("pixel data without Rows/Columns cannot be split into frames")
    count = min(count, len(value) * 8 // (pixels * bits))
    if bits != 1:
        size = pixels * ((bits + 7) // 8)
        return [value[i * size : (i + 1) * size] for i in range(count)]
    # 1-bit data is packed across frame boundaries; re-pack each frame from its own first bit.
    bits_all = np.unpackbits(np.frombuffer(value, dtype=np.uint8), bitorder="little")
    return [
        np.packbits(bits_all[i * pixels : (i + 1) * pixels], bitorder="little").tobytes()
        for i in range(count)
    ]
