"""The rendered and thumbnail resources at every level, over :mod:`.rendered`.

A frame is rendered from the frame's stored bytes (one ranged read) and a data set built
from the catalog's metadata, so rendering never reads the whole object. When the metadata
holds other bulk data (a palette LUT, say) the header is read from the store instead, so
nothing the renderer may need is missing.

Study and series: a single image of the representative instance (the middle instance of
the first series), or, when ``multipart/related; type=image/...`` is asked, one rendered
image per instance.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image
from pydicom.dataset import Dataset

from ..errors import NotAcceptableError, NotFoundError
from ..models import InstanceRecord
from ..stores.base import ObjectStore
from .accept import describe
from .budget import Budget
from .frames import PixelSource, read_span
from .multipart import MultipartWriter
from .rendered import (
    _FORMATS,
    GIF,
    RenderOptions,
    choose_image_type,
    encode,
    encode_animation,
    parse_options,
    render_image,
)
from .reply import Ask, Reply, validators
from .transcode import DECODE_ERRORS, attach_frame

_BULK = b'"BulkDataURI"'


def _without_bulk(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag, elem in obj.items():
        if not isinstance(elem, dict) or "BulkDataURI" in elem:
            continue
        if elem.get("vr") == "SQ" and elem.get("Value"):
            elem = {**elem, "Value": [_without_bulk(i) for i in elem["Value"] if isinstance(i, dict)]}
        out[tag] = elem
    return out


def representative(records: Sequence[InstanceRecord]) -> InstanceRecord:
    """The middle instance (by instance number) of the first series that has pixel data."""
    with_pixels = [r for r in records if r.pixel_data is not None] or list(records)
    series = with_pixels[0].series_uid
    same = [r for r in with_pixels if r.series_uid == series]
    return same[len(same) // 2]


class Renderer:
    def __init__(self, store: ObjectStore, budget: Budget | None = None) -> None:
        self.store = store
        self.budget = budget or Budget()

    async def rendered(
        self,
        records: Sequence[InstanceRecord],
        ask: Ask,
        *,
        frames: list[int] | None = None,
        thumbnail: bool = False,
        head: bool = False,
    ) -> Reply:
        """The rendered image(s); ``head``: what a GET would answer, from the catalog alone
        (the same checks of frame numbers and render limits; nothing read or rendered)."""
        options = parse_options(ask.params, thumbnail=thumbnail)
        multipart_type = _multipart_image(ask)
        media = multipart_type or choose_image_type(ask.ranges)
        if not multipart_type and len(records) > 1:
            records = [representative(records)]
        numbers = frames or [1]
        checks = validators(records, f"rendered|{media}|{numbers}|{sorted(ask.params.items())}|{thumbnail}")
        cached = checks.not_modified(ask)
        if cached is not None:
            return cached
        headers = checks.headers()
        if head:
            return self._head(
                records, numbers, media, multipart_type, animate=frames is None, headers=headers
            )
        if multipart_type is None and frames is None and media == GIF and len(records) == 1:
            count = min(PixelSource(self.store, records[0], self.budget.limits).available_frames, 1 << 30)
            if count > 1:
                # A multi-frame instance is a "Multi-frame Image" (PS3.18 Table 8.7.4-1), whose
                # rendered image media type is image/gif: all its frames, animated.
                body = await self.render_animation(records[0], count, options)
                return Reply(media_type=media, body=body, headers=headers)
        if multipart_type is None:
            image = await self.render_frame(records[0], numbers[0], options, media)
            return Reply(media_type=media, body=image, headers=headers)
        # Every image is rendered before the first byte (a failure is a 4xx, never a cut body),
        # within MAX_DECODED_SIZE of encoded images in all.
        writer = MultipartWriter(media)
        images: list[bytes] = []
        total = 0
        cap = self.budget.limits.max_decoded_size
        for record, n in [
            (r, n) for r in records if r.pixel_data is not None or len(records) == 1 for n in numbers
        ]:
            image = await self.render_frame(record, n, options, media)
            total += len(image)
            if total > cap:
                raise NotAcceptableError(
                    f"the rendered images exceed the MAX_DECODED_SIZE limit of {cap} bytes in all;"
                    " ask for fewer instances or frames at a time"
                )
            images.append(image)
        return Reply(
            media_type=writer.content_type, body=writer.encode((media, i) for i in images), headers=headers
        )

    def _head(
        self,
        records: Sequence[InstanceRecord],
        numbers: list[int],
        media: str,
        multipart_type: str | None,
        *,
        animate: bool,
        headers: dict[str, str],
    ) -> Reply:
        if multipart_type is None:
            record = records[0]
            count = min(PixelSource(self.store, record, self.budget.limits).available_frames, 1 << 30)
            if animate and media == GIF and count > 1:
                self._check_animation(record, count)
            self._checked_source(record, numbers[0])
            return Reply(media_type=media, body=b"", headers=headers)
        for record in records:
            if record.pixel_data is not None or len(records) == 1:
                for n in numbers:
                    self._checked_source(record, n)
        return Reply(media_type=MultipartWriter(media).content_type, body=b"", headers=headers)

    def _check_animation(self, record: InstanceRecord, count: int) -> None:
        limits = self.budget.limits
        if count > limits.max_render_frames:
            raise NotAcceptableError(
                f"instance {record.sop_instance_uid} has {count} frames, over the MAX_RENDER_FRAMES limit"
                f" of {limits.max_render_frames} for an animated rendering; ask for frames/{{n}}/rendered"
            )

    def _checked_source(self, record: InstanceRecord, number: int) -> PixelSource:
        """The frame's source once the catalog says it exists and is within the render
        limits (404 / 406 with the reason); nothing is read."""
        limits = self.budget.limits
        source = PixelSource(self.store, record, limits)
        source.check_frames([number])
        meta = source.metadata
        pixels = _value(meta, "00280010") * _value(meta, "00280011")
        if pixels > limits.max_render_pixels:
            raise NotAcceptableError(
                f"instance {record.sop_instance_uid} has {pixels} pixels per frame,"
                f" over the MAX_RENDER_PIXELS limit of {limits.max_render_pixels} pixels for rendering"
            )
        if source.frame_bits:
            source.bounded((source.frame_bits + 7) // 8, "a decoded frame")
        return source

    async def render_animation(self, record: InstanceRecord, count: int, options: RenderOptions) -> bytes:
        """Frames 1..count of a multi-frame instance as an animated GIF, within
        ``MAX_RENDER_FRAMES`` frames and ``MAX_RENDER_PIXELS`` pixels in all."""
        limits = self.budget.limits
        self._check_animation(record, count)
        images: list[Image.Image] = []
        total = 0
        for n in range(1, count + 1):
            image = await self._render(record, n, options, None)
            assert isinstance(image, Image.Image)
            total += image.width * image.height
            if total > limits.max_render_pixels:
                raise NotAcceptableError(
                    f"the {count} frames of instance {record.sop_instance_uid} exceed the"
                    f" MAX_RENDER_PIXELS limit of {limits.max_render_pixels} pixels in all;"
                    " use a viewport or frames/{n}/rendered"
                )
            images.append(image)
        frame_ms = _frame_time_ms(PixelSource(self.store, record).metadata)
        return await self.budget.run(encode_animation, images, frame_ms)

    async def render_frame(
        self, record: InstanceRecord, number: int, options: RenderOptions, media: str
    ) -> bytes:
        body = await self._render(record, number, options, media)
        assert isinstance(body, bytes)
        return body

    async def _render(
        self, record: InstanceRecord, number: int, options: RenderOptions, media: str | None
    ) -> bytes | Image.Image:
        """One frame rendered and encoded as ``media``, or as a Pillow image when ``None``."""
        source = self._checked_source(record, number)
        meta = source.metadata
        # The slot covers the reads too: waiting renders hold no frame bytes.
        async with self.budget.slot():
            frame = await source.frame(number)
            if record.metadata.count(_BULK) > 1:
                info = record.pixel_data
                end = info.value_offset if info is not None else record.size
                header = await read_span(self.store, record.object_key, 0, end)
            else:
                header = None
            # Handed over in a list the worker empties, so that only the renderer holds the frame.
            holder = [frame]
            del frame
            return await self.budget.run_held(_render_sync, meta, header, holder, record, options, media)


def _render_sync(
    metadata: dict[str, Any],
    header: bytes | None,
    holder: list[bytes],
    record: InstanceRecord,
    options: RenderOptions,
    media: str | None,
) -> bytes | Image.Image:
    import pydicom

    frame = holder.pop()
    ds: Dataset
    try:
        if header is not None:
            ds = pydicom.dcmread(io.BytesIO(header), force=True, stop_before_pixels=True)
        else:
            ds = Dataset.from_json(_without_bulk(metadata))
            ds.file_meta = pydicom.dataset.FileMetaDataset()
    except DECODE_ERRORS as exc:
        raise NotAcceptableError(f"the instance's header cannot be read for rendering: {exc}") from exc
    ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(record.transfer_syntax_uid)
    ts = record.transfer_syntax_uid
    if ts == "1.2.840.10008.1.2.2" and int(ds.get("BitsAllocated", 8)) > 8:
        from .transcode import frame_to_explicit_le

        frame = frame_to_explicit_le(metadata, frame, ts)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ts = pydicom.uid.ExplicitVRLittleEndian
    elif ts in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"):
        ts = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.TransferSyntaxUID = ts
    ds.set_original_encoding(False, True)
    attach_frame(ds, frame, ts)
    del frame
    image = render_image(ds, options)
    return image if media is None else encode(image, media, options)


def _multipart_image(ask: Ask) -> str | None:
    for r in ask.ranges:
        if r.multipart and r.part in _FORMATS:
            return r.part
        if not r.multipart:
            return None
    if ask.ranges and all(r.multipart for r in ask.ranges):
        raise NotAcceptableError(f"rendered images are available as image/jpeg, image/png or image/gif; "
                                 f"Accept asked for {describe(ask.ranges)}")  # fmt: skip
    return None


def require_pixels(records: Sequence[InstanceRecord]) -> None:
    if not any(r.pixel_data is not None or r.transfer_syntax_uid.endswith(".99") for r in records):
        raise NotFoundError("no instance with pixel data to render")


def _value(metadata: dict[str, Any], key: str) -> int:
    try:
        return max(0, int(metadata[key]["Value"][0]))
    except (KeyError, IndexError, TypeError, ValueError):
        return 0


def _frame_time_ms(metadata: dict[str, Any]) -> int:
    """Frame Time (0018,1063) in ms for the animation, 100 when absent; within 20..10000."""
    try:
        value = float(metadata["00181063"]["Value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        value = 100.0
    return int(min(max(value if value == value else 100.0, 20.0), 10000.0))
