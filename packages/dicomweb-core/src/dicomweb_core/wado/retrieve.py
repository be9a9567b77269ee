"""WADO-RS retrieve of instances and metadata (PS3.18 10.4) over a store and a catalog.

Instances stream from the store in large chunks, as stored, unless the client asks for a
transfer syntax the object is not in (then :mod:`.transcode` converts it, one instance at a
time). Metadata comes from the catalog only: the stored DICOM JSON blobs are concatenated
into the response with the ``@@BASE@@`` placeholder replaced, never re-encoded.

A re-store with ``DUPLICATE_POLICY=replace`` may supersede (and remove) the object a request
looked up just before it is opened. Every object is opened (its first chunk read) before any
byte of its answer or part is sent; when it is gone, the row is read again once and, if it
now names another object, that revision is served (:meth:`Retriever.superseded`).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO

import orjson

from ..catalog.base import CatalogReader
from ..dicomjson import BASE_PLACEHOLDER
from ..errors import NotAcceptableError, NotFoundError
from ..limits import Limits
from ..models import InstanceRecord
from ..stores.base import READ_CHUNK, ObjectStore
from ..uids import validate_uid
from .accept import (
    ANY,
    DICOM,
    DICOM_JSON,
    DICOM_XML,
    EXPLICIT_LE,
    ZIP,
    MediaRange,
    describe,
)
from .budget import Budget
from .frames import read_span
from .multipart import MultipartWriter, Part
from .reply import Ask, Reply, validators
from .transcode import STREAMABLE, conversion_refusal, convert_file, convert_header, size_refusal, swap_words
from .xml import to_xml
from .zipstream import zip_stream

_PLACEHOLDER = BASE_PLACEHOLDER.encode()
#: Metadata responses are sent in pieces of about this size (bounded memory, few messages).
_METADATA_PIECE = 1 << 20


@dataclass(frozen=True, slots=True)
class Level:
    study: str
    series: str | None = None
    instance: str | None = None

    @property
    def name(self) -> str:
        return "instance" if self.instance else "series" if self.series else "study"

    def describe(self) -> str:
        if self.instance:
            return f"instance {self.instance}"
        return f"series {self.series}" if self.series else f"study {self.study}"


def level(study: str, series: str | None = None, instance: str | None = None) -> Level:
    """Validated path UIDs (400 on a malformed one)."""
    validate_uid(study, "StudyInstanceUID")
    if series is not None:
        validate_uid(series, "SeriesInstanceUID")
    if instance is not None:
        validate_uid(instance, "SOPInstanceUID")
    return Level(study, series, instance)


@dataclass(frozen=True, slots=True)
class InstancePlan:
    """How the instances go out: container ``multipart``/``single``/``zip`` and, per
    instance, the transfer syntax (``*`` = as stored)."""

    container: str
    syntaxes: tuple[str, ...]


def _instance_wants(ranges: list[MediaRange], at_instance: bool) -> list[tuple[str, str]]:
    """(container, transfer syntax) in preference order from the Accept ranges."""
    wants: list[tuple[str, str]] = []
    for r in ranges:
        if r.multipart:
            if r.part == DICOM:
                wants.append(("multipart", r.transfer_syntax or EXPLICIT_LE))
            elif r.part in (ANY, "*", "application/*"):
                wants.append(("multipart", r.transfer_syntax or "*"))
        elif r.media_type == ANY:
            wants.append(("multipart", "*"))
        elif r.media_type == ZIP:
            wants.append(("zip", "*"))
        elif r.media_type == DICOM and at_instance:
            wants.append(("single", r.transfer_syntax or EXPLICIT_LE))
    return wants


def _refusal(record: InstanceRecord, ts: str, limits: Limits | None) -> str | None:
    refusal = conversion_refusal(record.transfer_syntax_uid, ts)
    if refusal is None and limits is not None and ts not in ("*", record.transfer_syntax_uid):
        refusal = size_refusal(record.size, orjson.loads(record.metadata), record.transfer_syntax_uid, limits)
    return refusal


def plan_instances(
    ranges: list[MediaRange],
    records: Sequence[InstanceRecord],
    at_instance: bool,
    limits: Limits | None = None,
) -> InstancePlan:
    """Choose the representation; 406 with a reason when no acceptable one can be produced.

    Within one container the client's transfer syntaxes are tried per instance in order, so
    ``transfer-syntax=1.2.840.10008.1.2.4.50, transfer-syntax=*;q=0.5`` serves JPEG as is and
    anything else as stored.
    """
    wants = _instance_wants(ranges, at_instance)
    if not wants:
        raise NotAcceptableError(
            f'instances are available as multipart/related; type="application/dicom" or application/zip;'
            f" Accept asked for {describe(ranges)}"
        )
    containers = list(dict.fromkeys(c for c, _ in wants))
    first_reason = ""
    for container in containers:
        syntaxes = [ts for c, ts in wants if c == container]
        chosen: list[str] = []
        for record in records:
            for ts in syntaxes:
                if _refusal(record, ts, limits) is None:
                    chosen.append("*" if ts == record.transfer_syntax_uid else ts)
                    break
            else:
                if not first_reason:
                    reasons = {_refusal(record, ts, limits) for ts in syntaxes}
                    first_reason = f"instance {record.sop_instance_uid}: " + "; ".join(
                        sorted(r for r in reasons if r)
                    )
                break
        else:
            return InstancePlan(container, tuple(chosen))
    raise NotAcceptableError(first_reason or f"no acceptable representation for {describe(ranges)}")


#: A converted instance stays in memory up to this size, then goes to an unlinked temp file.
_SPOOL_IN_MEMORY = 1 << 20
#: A stored object up to this size is read into memory for conversion, larger ones to a temp file.
_SOURCE_IN_MEMORY = 8 << 20
#: Answers up to this size are built in memory rather than streamed.
_IN_MEMORY = 2 * 1024 * 1024


class Retriever:
    """Retrieve Study/Series/Instance and their metadata."""

    def __init__(self, store: ObjectStore, catalog: CatalogReader, budget: Budget | None = None) -> None:
        self.store = store
        self.catalog = catalog
        self.budget = budget or Budget()

    async def records(self, at: Level) -> list[InstanceRecord]:
        if at.instance is not None:
            record = await self.catalog.get_instance(at.study, at.series, at.instance)
            if record is None:
                raise NotFoundError(f"{at.describe()} not found in series {at.series} of study {at.study}")
            return [record]
        records = await self.catalog.list_instances(at.study, at.series)
        if not records:
            raise NotFoundError(f"{at.describe()} not found")
        return records

    # ------------------------------------------------------------------ instances

    async def superseded(self, record: InstanceRecord) -> InstanceRecord | None:
        """The instance's row read again when ``record``'s object was found gone: the new
        revision when a re-store replaced it since, else ``None`` (it really is missing)."""
        fresh = await self.catalog.get_instance(record.study_uid, record.series_uid, record.sop_instance_uid)
        return fresh if fresh is not None and fresh.object_key != record.object_key else None

    async def instances(self, at: Level, ask: Ask, *, head: bool = False) -> Reply:
        records = await self.records(at)
        try:
            return await self._instances(at, ask, records, head=head)
        except NotFoundError:
            # Raised before any byte went out: an object replaced since the lookup is served
            # in its new revision (the whole answer planned again, ETag included), once.
            fresh = await self.records(at)
            if head or [r.object_key for r in fresh] == [r.object_key for r in records]:
                raise
            return await self._instances(at, ask, fresh, head=head)

    async def _instances(
        self, at: Level, ask: Ask, records: list[InstanceRecord], *, head: bool = False
    ) -> Reply:
        plan = plan_instances(ask.ranges, records, at.instance is not None, self.budget.limits)
        checks = validators(records, f"{plan.container}|{','.join(plan.syntaxes)}")
        cached = checks.not_modified(ask)
        if cached is not None:
            return cached
        headers = checks.headers()
        if head:
            return _head(at, plan, records, headers)
        if plan.container == "zip":
            name = (at.instance or at.series or at.study) + ".zip"
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
            return Reply(media_type=ZIP, body=zip_stream(records, self.store.read), headers=headers)
        if plan.container == "single":
            record, ts = records[0], plan.syntaxes[0]
            if ts == "*":
                headers["Content-Length"] = str(record.size)
                media = f"{DICOM}; transfer-syntax={record.transfer_syntax_uid}"
                stream = await _opened(self.store.read(record.object_key))  # NotFoundError: not sent yet
                return Reply(media_type=media, body=stream, headers=headers)
            spool, size = await self._converted(record)
            headers["Content-Length"] = str(size)
            return Reply(media_type=f"{DICOM}; transfer-syntax={ts}", body=_spooled(spool), headers=headers)
        uniform = {
            r.transfer_syntax_uid if ts == "*" else ts for r, ts in zip(records, plan.syntaxes, strict=True)
        }
        writer = MultipartWriter(DICOM, transfer_syntax=uniform.pop() if len(uniform) == 1 else None)
        if all(ts == "*" for ts in plan.syntaxes) and sum(r.size for r in records) <= _IN_MEMORY:
            # Small answers (a single instance, mostly) in one piece: a streamed response
            # costs a task group and a message per chunk, more than the copy it saves.
            blobs = [await self.store.read_range(r.object_key, 0, r.size) for r in records]
            types = [f"{DICOM}; transfer-syntax={r.transfer_syntax_uid}" for r in records]
            body = writer.encode(zip(types, blobs, strict=True), lengths=True)
            return Reply(media_type=writer.content_type, body=body, headers=headers)
        # Every conversion is done before the first byte: a failure is a 406, never a cut body.
        converted: dict[int, tuple[IO[bytes], int]] = {}
        try:
            for i, (record, ts) in enumerate(zip(records, plan.syntaxes, strict=True)):
                if ts != "*":
                    converted[i] = await self._converted(record)
        except BaseException:
            for spool, _ in converted.values():
                spool.close()
            raise
        parts = self._parts(records, plan.syntaxes, converted)
        return Reply(media_type=writer.content_type, body=writer.stream(parts), headers=headers)

    async def _parts(
        self,
        records: Sequence[InstanceRecord],
        syntaxes: Sequence[str],
        converted: dict[int, tuple[IO[bytes], int]],
    ) -> AsyncIterator[Part]:
        try:
            for i, (record, ts) in enumerate(zip(records, syntaxes, strict=True)):
                if ts == "*":
                    try:  # opened before its part header goes out
                        chunks = await _opened(self.store.read(record.object_key))
                    except NotFoundError:
                        fresh = await self.superseded(record)
                        if fresh is None:
                            raise
                        record, chunks = fresh, await _opened(self.store.read(fresh.object_key))
                    ctype = f"{DICOM}; transfer-syntax={record.transfer_syntax_uid}"
                    yield Part(ctype, chunks, {"Content-Length": str(record.size)})
                else:
                    spool, size = converted.pop(i)
                    yield Part(
                        f"{DICOM}; transfer-syntax={ts}", _spooled(spool), {"Content-Length": str(size)}
                    )
        finally:
            for spool, _ in converted.values():
                spool.close()

    async def _converted(self, record: InstanceRecord) -> tuple[IO[bytes], int]:
        """The instance converted to Explicit VR Little Endian, in an unlinked temporary file
        (in memory up to 1 MiB): its size is known and nothing can fail once sending starts."""
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 (returned)
        info = record.pixel_data
        if (
            record.transfer_syntax_uid in STREAMABLE
            and info is not None
            and not info.encapsulated
            and info.length is not None
        ):
            # Native pixel data: only the header is parsed; the value is copied chunk by chunk.
            try:
                header = await read_span(self.store, record.object_key, 0, info.value_offset)
                head, width = await self.budget.run(
                    convert_header, header, record.transfer_syntax_uid, info.tag
                )
                out.write(head)
                start, end = info.value_offset, info.value_offset + info.length
                async for chunk in _whole_words(self.store.read(record.object_key, start, end), width):
                    out.write(swap_words(chunk, width) if width > 1 else chunk)
            except BaseException:
                out.close()
                raise
            size = out.tell()
            out.seek(0)
            return out, size
        try:
            # Small objects are read into memory (freed once converted), larger ones to a file.
            source: IO[bytes] = io.BytesIO() if record.size <= _SOURCE_IN_MEMORY else tempfile.TemporaryFile()  # noqa: SIM115
            with source:
                async for chunk in self.store.read(record.object_key):
                    source.write(chunk)
                source.seek(0)
                await self.budget.run(convert_file, source, out)
        except BaseException:
            out.close()
            raise
        size = out.tell()
        out.seek(0)
        return out, size

    # ------------------------------------------------------------------ metadata

    async def metadata(self, at: Level, ask: Ask) -> Reply:
        records = await self.records(at)
        xml = _metadata_wants_xml(ask.ranges)
        base = ask.base_url.encode()
        checks = validators(records, f"metadata|{'xml' if xml else 'json'}|{ask.base_url}")
        cached = checks.not_modified(ask)
        if cached is not None:
            return cached
        headers = checks.headers()
        if xml:
            writer = MultipartWriter(DICOM_XML)
            body = writer.encode(
                (DICOM_XML, to_xml(orjson.loads(r.metadata.replace(_PLACEHOLDER, base)))) for r in records
            )
            return Reply(media_type=writer.content_type, body=body, headers=headers)
        total = sum(len(r.metadata) for r in records)
        if total <= _METADATA_PIECE:
            body = b"[" + b",".join(r.metadata.replace(_PLACEHOLDER, base) for r in records) + b"]"
            return Reply(media_type=DICOM_JSON, body=body, headers=headers)
        return Reply(media_type=DICOM_JSON, body=_json_array(records, base), headers=headers)


def _head(at: Level, plan: InstancePlan, records: Sequence[InstanceRecord], headers: dict[str, str]) -> Reply:
    """What a GET would answer, from the catalog alone: the objects are not read."""
    if plan.container == "zip":
        name = (at.instance or at.series or at.study) + ".zip"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return Reply(media_type=ZIP, body=b"", headers=headers)
    if plan.container == "single":
        record, ts = records[0], plan.syntaxes[0]
        if ts == "*":
            headers["Content-Length"] = str(record.size)
        media = f"{DICOM}; transfer-syntax={record.transfer_syntax_uid if ts == '*' else ts}"
        return Reply(media_type=media, body=b"", headers=headers)
    uniform = {
        r.transfer_syntax_uid if ts == "*" else ts for r, ts in zip(records, plan.syntaxes, strict=True)
    }
    writer = MultipartWriter(DICOM, transfer_syntax=uniform.pop() if len(uniform) == 1 else None)
    return Reply(media_type=writer.content_type, body=b"", headers=headers)


def _metadata_wants_xml(ranges: list[MediaRange]) -> bool:
    for r in ranges:
        if r.multipart and r.part == DICOM_XML:
            return True
        if not r.multipart and r.media_type in (DICOM_JSON, "application/json", ANY, "application/*"):
            return False
        if r.multipart and r.part in (ANY, "*"):
            return False
    raise NotAcceptableError(
        f'metadata is available as {DICOM_JSON} or multipart/related; type="{DICOM_XML}";'
        f" Accept asked for {describe(ranges)}"
    )


async def _json_array(records: Sequence[InstanceRecord], base: bytes) -> AsyncIterator[bytes]:
    piece: list[bytes] = [b"["]
    size = 1
    for i, record in enumerate(records):
        blob = record.metadata.replace(_PLACEHOLDER, base)
        piece.append(blob if i == 0 else b"," + blob)
        size += len(blob) + 1
        if size >= _METADATA_PIECE:
            yield b"".join(piece)
            piece, size = [], 0
    piece.append(b"]")
    yield b"".join(piece)


async def _opened(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The same chunks, the first one read now: a missing object raises here, not mid-answer."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return rest()


async def _spooled(spool: IO[bytes]) -> AsyncIterator[bytes]:
    """A converted instance, sent in store-sized chunks; the temp file goes when done."""
    try:
        while chunk := spool.read(READ_CHUNK):
            yield chunk
    finally:
        spool.close()


async def _whole_words(chunks: AsyncIterator[bytes], width: int) -> AsyncIterator[bytes]:
    """The same bytes, re-cut so that each piece holds whole ``width``-byte words."""
    if width == 1:
        async for chunk in chunks:
            yield chunk
        return
    rest = b""
    async for chunk in chunks:
        data = rest + chunk if rest else chunk
        cut = len(data) - len(data) % width
        rest = data[cut:]
        if cut:
            yield data[:cut]
    if rest:
        yield rest
