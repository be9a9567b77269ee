"""Pixel data bookkeeping for :class:`~.scanner.DicomHeaderScanner`: where the frames are.

Encapsulated pixel data is followed item header to item header (:class:`EncapsulatedItems`),
jumping over fragment values by their lengths, so it is never buffered. At the end,
:func:`native_info` and :func:`encapsulated_info` turn what was seen into a
:class:`PixelDataInfo` with one byte range per frame when the frame bounds are knowable.
:func:`frame_fragments` is the reader's side: the byte ranges holding one frame.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_left

import pydicom

from .errors import DicomFormatError
from .headerwalk import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    ITEM,
    SEQ_DELIM,
    UNDEFINED,
)
from .models import Fragment, PixelDataInfo
from .rawvalues import raw_int

NATIVE_SYNTAXES = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE})
_LE_ITEM = struct.Struct("<LL")


class EncapsulatedItems:
    """The item stream of encapsulated pixel data: Basic Offset Table, fragment ranges.

    Memory: the BOT (at most ``4 * max_fragments`` bytes) and 16 bytes per fragment.
    """

    def __init__(self, max_fragments: int) -> None:
        self._max_fragments = max_fragments
        self._remaining = 0  # bytes of the current item value still to skip
        self._carry = bytearray()  # a partial item header split across chunks
        self.done = False
        self._bot: bytearray | None = None  # None until the first item (the BOT) is seen
        self._bot_remaining = 0
        self._frag_offsets = array("q")
        self._frag_lengths = array("q")

    def feed(self, view: memoryview, base: int) -> None:
        """The next bytes of the value; ``base`` is the object offset of ``view[0]``."""
        n = len(view)
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
            if self.done:
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
            if tag == ITEM:
                if length == UNDEFINED:
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
            elif tag == SEQ_DELIM:
                self.done = True
            else:
                raise DicomFormatError(
                    f"unexpected tag ({tag >> 16:04X},{tag & 0xFFFF:04X}) in encapsulated pixel data "
                    f"at offset {value_offset - 8}"
                )

    def check_complete(self) -> None:
        if self._remaining or self._carry or self._bot_remaining:
            raise DicomFormatError("truncated: encapsulated pixel data item runs past the end")
        if not self.done:
            raise DicomFormatError("encapsulated pixel data without sequence delimiter")

    @property
    def basic_offset_table(self) -> tuple[int, ...]:
        raw = bytes(self._bot or b"")
        return tuple(struct.unpack(f"<{len(raw) // 4}L", raw[: len(raw) // 4 * 4]))

    @property
    def fragments(self) -> tuple[Fragment, ...]:
        return tuple(Fragment(o, n) for o, n in zip(self._frag_offsets, self._frag_lengths, strict=True))


def native_info(
    ds: pydicom.Dataset, ts: str, tag: int, value_offset: int, length: int, max_frames: int
) -> PixelDataInfo:
    """Native pixel data: frames are fixed-size slices when rows x columns x samples x bytes
    says how large a frame is and the value holds them all."""
    frames_n = number_of_frames(ds)
    frame_size: int | None = None
    frames: tuple[Fragment, ...] = ()
    rows, cols, bits = raw_int(ds, 0x00280010), raw_int(ds, 0x00280011), raw_int(ds, 0x00280100)
    samples = raw_int(ds, 0x00280002) or 1
    if ts in NATIVE_SYNTAXES and rows and cols and bits and bits != 1 and samples > 0:
        frame_size = rows * cols * samples * ((bits + 7) // 8)
        if frames_n * frame_size <= length:
            if frames_n > max_frames:
                raise DicomFormatError(f"more than {max_frames} frames")
            frames = tuple(Fragment(value_offset + i * frame_size, frame_size) for i in range(frames_n))
    return PixelDataInfo(
        tag=tag,
        value_offset=value_offset,
        length=length,
        encapsulated=False,
        frame_size=frame_size,
        number_of_frames=frames_n,
        frames=frames,
    )


def encapsulated_info(
    ds: pydicom.Dataset, tag: int, value_offset: int, items: EncapsulatedItems
) -> PixelDataInfo:
    bot = items.basic_offset_table
    fragments = items.fragments
    frames_n = number_of_frames(ds)
    return PixelDataInfo(
        tag=tag,
        value_offset=value_offset,
        length=None,
        encapsulated=True,
        number_of_frames=frames_n,
        basic_offset_table=bot,
        fragments=fragments,
        frames=_encapsulated_frames(fragments, frames_n, bot, _extended_offsets(ds, frames_n)),
    )


def number_of_frames(ds: pydicom.Dataset) -> int:
    value = raw_int(ds, 0x00280008)
    return value if value is not None and value >= 1 else 1


def _extended_offsets(ds: pydicom.Dataset, frames_n: int) -> tuple[int, ...]:
    """Extended Offset Table (7FE0,0001): one uint64 per frame, when consistent."""
    try:
        raw = ds.get("ExtendedOffsetTable")
        if not isinstance(raw, bytes) or len(raw) != 8 * frames_n:
            return ()
        return tuple(struct.unpack(f"<{frames_n}Q", raw))
    except (ValueError, TypeError, KeyError, struct.error):  # a malformed table is not used
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
