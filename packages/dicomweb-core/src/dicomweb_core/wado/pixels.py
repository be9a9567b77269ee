"""WADO-RS frames and bulk data (PS3.18 10.4.1.1.4/5): byte ranges of stored objects.

Negotiation for frames, given the stored transfer syntax:

* ``type=application/octet-stream; transfer-syntax=*``: the stored bytes (native, or the
  compressed bitstream labelled octet-stream) - what OHIF asks for.
* ``type=application/octet-stream`` with no or the Explicit VR LE syntax: native bytes,
  decoded from compressed data when a decoder exists (else 406 with a reason).
* ``type=image/jls`` (etc.): the stored bitstream when it is of that media type.
* ``*/*``, ``multipart/related; type="*/*"``: as stored, with the stored media type.
* A single frame may also be asked for single-part (``Accept: application/octet-stream``
  or ``image/jpeg``): the body is then the frame itself.

Bulk data is ``application/octet-stream``, which PS3.18 8.7.3.5 defines as Explicit VR
Little Endian: native pixel data of an Explicit VR Big Endian object is byte-swapped (OW by
2 bytes, OF/OL by 4, OD/OV by 8) as the frames are, streamed and for any byte range; a
Deflated Explicit VR Little Endian object's pixel data is the inflated value. A ``HEAD``
request is answered from the catalog alone: the object is not read.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DicomwebError, NotAcceptableError, NotFoundError
from ..models import Fragment, InstanceRecord
from ..stores.base import ObjectStore
from .accept import (
    ANY,
    DEFLATED_LE,
    EXPLICIT_BE,
    EXPLICIT_LE,
    OCTET_STREAM,
    MediaRange,
    describe,
    pixel_media_type,
)
from .budget import Budget
from .frames import PixelSource, read_span
from .multipart import MultipartWriter, Part, single
from .reply import Ask, Reply, validators
from .transcode import conversion_refusal, frame_to_explicit_le

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(DicomwebError):
    status = 416


@dataclass(frozen=True, slots=True)
class FramePlan:
    multipart: bool
    #: Media type of each part (or of the single body).
    media_type: str
    #: ``*`` = the stored bytes; otherwise the transfer syntax to convert to.
    transfer_syntax: str
    #: The transfer syntax the bytes are in, for the part's Content-Type.
    label: str


def plan_frames(ranges: list[MediaRange], stored: str, count: int) -> FramePlan:
    stored_media = pixel_media_type(stored)
    encapsulated = stored_media != OCTET_STREAM
    reasons: list[str] = []
    for r in ranges:
        if not r.multipart and r.media_type != ANY and count != 1:
            continue  # single-part is only for one frame
        multipart = r.multipart or r.media_type == ANY
        part = r.part
        ts = r.transfer_syntax
        if part in (ANY, "*"):
            if ts in (None, "*", stored):
                return FramePlan(multipart, stored_media, "*", stored)
            part = OCTET_STREAM
        if part == OCTET_STREAM:
            if ts == "*" or (ts == stored and not encapsulated):
                return FramePlan(multipart, OCTET_STREAM, "*", stored)
            wanted = ts or EXPLICIT_LE
            refusal = conversion_refusal(stored, wanted)
            if refusal is None and wanted == EXPLICIT_LE:
                return FramePlan(multipart, OCTET_STREAM, EXPLICIT_LE, EXPLICIT_LE)
            reasons.append(refusal or f"transfer syntax {wanted} is not available for octet-stream frames")
        elif encapsulated and r.part_matches(stored_media):
            if ts in (None, "*", stored):
                return FramePlan(multipart, stored_media, "*", stored)
            reasons.append(f"frames are stored as {stored}, not {ts}")
        else:
            reasons.append(f"frames stored as {stored} are not available as {part}")
    detail = f" ({reasons[0]})" if reasons else ""
    raise NotAcceptableError(
        f"frames are stored as {stored_media} (transfer syntax {stored});"
        f" Accept asked for {describe(ranges)}{detail}"
    )


def _part_type(plan: FramePlan) -> str:
    return f"{plan.media_type}; transfer-syntax={plan.label}"


class PixelRetriever:
    def __init__(self, store: ObjectStore, budget: Budget | None = None) -> None:
        self.store = store
        self.budget = budget or Budget()

    async def frames(
        self, record: InstanceRecord, numbers: list[int], ask: Ask, *, head: bool = False
    ) -> Reply:
        source = PixelSource(self.store, record, self.budget.limits)
        source.check_frames(numbers)
        plan = plan_frames(ask.ranges, record.transfer_syntax_uid, len(numbers))
        checks = validators([record], f"frames|{numbers}|{plan}")
        cached = checks.not_modified(ask)
        if cached is not None:
            return cached
        headers = checks.headers()
        if head:
            media = _part_type(plan)
            if plan.multipart:
                media = MultipartWriter(plan.media_type, transfer_syntax=plan.label).content_type
            return Reply(media_type=media, body=b"", headers=headers)
        if plan.transfer_syntax != "*":
            self._check_decodable(source, plan)
        if not plan.multipart:
            body = await self._frame(source, numbers[0], plan)
            return Reply(media_type=_part_type(plan), body=body, headers=headers)
        writer = MultipartWriter(plan.media_type, transfer_syntax=plan.label)
        if len(numbers) == 1:
            body = await self._frame(source, numbers[0], plan)
            return Reply(
                media_type=writer.content_type,
                body=writer.encode([(_part_type(plan), body)]),
                headers=headers,
            )
        if plan.transfer_syntax != "*" and pixel_media_type(record.transfer_syntax_uid) != OCTET_STREAM:
            # Frames to decode: all of them before the first byte (a frame that does not decode is
            # a 406, never a cut body), within MAX_DECODED_SIZE in all.
            bodies = await self._decoded_frames(source, numbers, plan)
            return Reply(
                media_type=writer.content_type,
                body=writer.encode((_part_type(plan), b) for b in bodies),
                headers=headers,
            )
        parts = self._frame_parts(source, numbers, plan)
        return Reply(media_type=writer.content_type, body=writer.stream(parts), headers=headers)

    async def _decoded_frames(self, source: PixelSource, numbers: list[int], plan: FramePlan) -> list[bytes]:
        cap = self.budget.limits.max_decoded_size
        bodies: list[bytes] = []
        total = 0
        for n in numbers:
            body = await self._frame(source, n, plan)
            total += len(body)
            if total > cap:
                raise NotAcceptableError(
                    f"the {len(numbers)} decoded frames exceed the MAX_DECODED_SIZE limit of {cap} bytes;"
                    " ask for fewer frames at a time, or transfer-syntax=* for the stored bitstreams"
                )
            bodies.append(body)
        return bodies

    def _check_decodable(self, source: PixelSource, plan: FramePlan) -> None:
        """Decoding a compressed frame produces Rows x Columns x Samples x bytes: bounded."""
        stored = source.record.transfer_syntax_uid
        if pixel_media_type(stored) == OCTET_STREAM:
            return
        bits = source.frame_bits
        if not bits:
            raise NotAcceptableError(
                f"instance {source.record.sop_instance_uid} has no image geometry to decode frames with"
            )
        source.bounded((bits + 7) // 8, "a decoded frame")

    async def _frame_parts(
        self, source: PixelSource, numbers: list[int], plan: FramePlan
    ) -> AsyncIterator[Part]:
        for n in numbers:
            yield Part(_part_type(plan), single(await self._frame(source, n, plan)))

    async def _frame(self, source: PixelSource, number: int, plan: FramePlan) -> bytes:
        data = await source.frame(number)
        if plan.transfer_syntax == "*":
            return data
        stored = source.record.transfer_syntax_uid
        if stored != EXPLICIT_BE and pixel_media_type(stored) == OCTET_STREAM:
            return data
        return await self.budget.run(frame_to_explicit_le, source.metadata, data, stored)

    # ------------------------------------------------------------------ bulk data

    async def bulkdata(self, record: InstanceRecord, tag: int, ask: Ask, *, head: bool = False) -> Reply:
        source = PixelSource(self.store, record, self.budget.limits)
        info = record.pixel_data
        if tag in PIXEL_TAGS and info is not None and info.tag == tag and info.encapsulated:
            # Encapsulated pixel data: one part per frame (those the data holds), negotiated like frames.
            frames = list(range(1, max(1, source.available_frames) + 1))
            return await self.frames(record, frames, ask, head=head)
        multipart = _bulk_accepts(ask.ranges)
        pixels = tag in PIXEL_TAGS and info is not None and info.tag == tag
        # Deflated objects have no offsets into the stored bytes: the value is inflated.
        inflated = (
            tag == 0x7FE00010
            and info is None
            and record.transfer_syntax_uid == DEFLATED_LE
            and source.has_pixels
        )
        if head and not (pixels or inflated) and f'"{tag:08X}":'.encode() not in record.metadata:
            # The catalog's metadata names every element of the object (bulk ones by URI).
            raise NotFoundError(f"instance {record.sop_instance_uid} has no bulk data for tag {tag:08X}")
        checks = validators([record], f"bulk|{tag:08X}|{multipart}|{ask.range}")
        cached = checks.not_modified(ask)
        if cached is not None:
            return cached
        headers = checks.headers()
        headers["Accept-Ranges"] = "bytes"
        if head:
            if pixels and info is not None and info.length is not None and not multipart:
                headers["Content-Length"] = str(info.length)
            media = MultipartWriter(OCTET_STREAM).content_type if multipart else OCTET_STREAM
            return Reply(media_type=media, body=b"", headers=headers)
        segments: list[Fragment] = []
        value: bytes | None = None
        if pixels:
            segments = await source.value_segments()
        elif inflated:
            source.bounded(record.size, "the deflated object")
            async with self.budget.slot():
                blob = b"".join([c async for c in self.store.read(record.object_key)])
                value = await self.budget.run_held(_value_from_object, blob, tag)
        else:
            value = await self._element_value(record, tag)
        if value is None and not segments:
            raise NotFoundError(f"instance {record.sop_instance_uid} has no bulk data for tag {tag:08X}")
        total = sum(s.length for s in segments) if value is None else len(value)
        start, end = _byte_range(ask.range, total)
        status = 206 if (start, end) != (0, total) else 200
        part_headers: dict[str, str] = {}
        if status == 206:
            part_headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        if value is not None:
            body: AsyncIterator[bytes] = single(value[start:end])
        else:
            width = _big_endian_width(record, source, tag)
            if width > 1:
                # Explicit VR Little Endian on the wire: swap whole words, then cut the range.
                lo, hi = start - start % width, min(total, end + (-end) % width)
                words = _swapped(_read_segments(self.store, record.object_key, segments, lo, hi), width)
                body = _trimmed(words, start - lo, end - start)
            else:
                body = _read_segments(self.store, record.object_key, segments, start, end)
        if not multipart:
            headers.update(part_headers)
            headers["Content-Length"] = str(end - start)
            return Reply(status=status, media_type=OCTET_STREAM, body=body, headers=headers)
        writer = MultipartWriter(OCTET_STREAM)
        part_headers["Content-Length"] = str(end - start)
        stream = writer.stream([Part(OCTET_STREAM, body, part_headers)])
        return Reply(status=status, media_type=writer.content_type, body=stream, headers=headers)

    async def _element_value(self, record: InstanceRecord, tag: int) -> bytes:
        """A non-pixel bulk value: parse the header (everything before Pixel Data) and find it."""
        info = record.pixel_data
        end = info.value_offset if info is not None else record.size
        header = await read_span(self.store, record.object_key, 0, end)
        value = await self.budget.run(_find_value, header, tag)
        if value is None:
            raise NotFoundError(f"instance {record.sop_instance_uid} has no bulk data for tag {tag:08X}")
        return value


def _big_endian_width(record: InstanceRecord, source: PixelSource, tag: int) -> int:
    """Bytes per word to swap for the native pixel value of a Big Endian object, else 1."""
    if record.transfer_syntax_uid != EXPLICIT_BE:
        return 1
    element = source.metadata.get(f"{tag:08X}")
    vr = element.get("vr") if isinstance(element, dict) else None
    return _SWAP_WIDTH.get(str(vr), 1)


async def _swapped(chunks: AsyncIterator[bytes], width: int) -> AsyncGenerator[bytes, None]:
    """Big-endian words to little-endian, whatever the chunking (a split word is carried)."""
    carry = b""
    async for chunk in chunks:
        data = carry + chunk if carry else chunk
        cut = len(data) - len(data) % width
        carry = data[cut:]
        if cut:
            yield np.frombuffer(data, dtype=f"u{width}", count=cut // width).byteswap().tobytes()
    if carry:
        yield carry  # an odd trailing byte has no partner: as stored


async def _trimmed(chunks: AsyncGenerator[bytes, None], skip: int, length: int) -> AsyncIterator[bytes]:
    """``length`` bytes of ``chunks`` after the first ``skip``."""
    try:
        async for chunk in chunks:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            piece = chunk[skip : skip + length]
            skip = 0
            length -= len(piece)
            if piece:
                yield piece
            if length <= 0:
                break
    finally:
        await chunks.aclose()  # stop the store read now, not when the generator is collected


def _value_from_object(blob: bytes, tag: int) -> bytes | None:
    """A top-level element's value, read from a whole (possibly deflated) object."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(blob), force=True)
    if tag not in ds:
        return None
    value = ds[tag].value
    return bytes(value) if isinstance(value, (bytes, bytearray)) else None


def _bulk_accepts(ranges: list[MediaRange]) -> bool:
    """True for a multipart answer, False for single-part octet-stream; 406 otherwise."""
    for r in ranges:
        if r.multipart and r.part_matches(OCTET_STREAM):
            return True
        if not r.multipart and r.media_type in (ANY, "application/*"):
            return True
        if not r.multipart and r.media_type == OCTET_STREAM:
            return False
    raise NotAcceptableError(
        f'bulk data is available as multipart/related; type="{OCTET_STREAM}" or {OCTET_STREAM};'
        f" Accept asked for {describe(ranges)}"
    )


def _byte_range(header: str, total: int) -> tuple[int, int]:
    """``[start, end)`` from a single-range ``Range`` header; the whole value when absent."""
    if not header:
        return 0, total
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None or (not match.group(1) and not match.group(2)):
        return 0, total  # unsupported forms (several ranges, other units) are ignored, as RFC 9110 allows
    first, last = match.group(1), match.group(2)
    if not first:
        start, end = max(0, total - int(last)), total
    else:
        start = int(first)
        end = min(total, int(last) + 1) if last else total
    if start >= total or start >= end:
        raise RangeNotSatisfiable(f"range {header!r} is outside the {total} bytes of the value")
    return start, end


async def _read_segments(
    store: ObjectStore, key: str, segments: Sequence[Fragment], start: int, end: int
) -> AsyncIterator[bytes]:
    pos = 0
    for seg in segments:
        lo, hi = max(start, pos), min(end, pos + seg.length)
        if lo < hi:
            async for chunk in store.read(key, seg.offset + lo - pos, seg.offset + hi - pos):
                yield chunk
        pos += seg.length


def _find_value(header: bytes, tag: int) -> bytes | None:
    import pydicom
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(io.BytesIO(header), force=True, stop_before_pixels=True)
    big_endian = not ds.original_encoding[1] if ds.original_encoding[1] is not None else False

    def search(d: Dataset) -> bytes | None:
        if tag in d:
            elem = d[tag]
            if isinstance(elem.value, (bytes, bytearray)):
                raw = bytes(elem.value)
                width = _SWAP_WIDTH.get(str(elem.VR), 1)
                if big_endian and width > 1:
                    import numpy as np

                    raw = np.frombuffer(raw, dtype=f">u{width}").astype(f"<u{width}").tobytes()
                return raw
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value:
                    found = search(item)
                    if found is not None:
                        return found
        return None

    return search(ds)
