"""The STOW-RS pipeline: multipart parts → (header scanner ‖ object store) → catalog → events.

Per part, every body chunk goes to the :class:`DicomHeaderScanner`; until the scanner has seen
the whole header (everything before Pixel Data) the chunks are held back (bounded by the header
cap), because the object key derives from the UIDs in that header. Then the writer opens under
the key, receives the held-back chunks and, from there on, every chunk as it arrives.

Acknowledgement is two-phase. Each part's object is made durable as soon as the part ends; the
catalog rows (and their outbox events) of the whole request are written at the end of the body
in one transaction. A body that turns out malformed or is cut off by the client therefore leaves
no row and no event, and its objects are removed again (except objects that an earlier,
acknowledged store had already put under the same key).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from .catalog.base import Catalog, OutboxEvent
from .dicomjson import dumps, to_dicom_json
from .errors import (
    DicomFormatError,
    DicomwebError,
    EventDeliveryError,
    MultipartError,
    PayloadTooLargeError,
    StoreError,
)
from .events import IMAGE_STORED, EventSender, StoreInfo, image_event_body, new_event
from .models import InstanceRecord, shift_pixel_data
from .multipart import MultipartRelatedReader, PartData, PartEnd, PartStart
from .observability.tracing import stage
from .pixelcheck import check_scan
from .rawvalues import raw_int, raw_text
from .scanner import DicomHeaderScanner, ScanResult
from .stores.base import ObjectStore, ObjectWriter, StoredObject, instance_key
from .uids import is_valid_uid

log = logging.getLogger("dicomweb.stow")

# PS3.4 Annex GG / PS3.18 Table 10.5.3-1 status codes used in FailureReason.
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122

DICOM_MEDIA_TYPES = frozenset({"application/dicom"})

#: Closed parts are committed to the store in batches of at most this many parts / bytes.
BATCH_PARTS = 16
BATCH_BYTES = 16 * 1024 * 1024


class PartFailure(Exception):
    """One part could not be stored; the request goes on with the next part."""

    def __init__(self, status: int, reason: str, sop_class_uid: str = "", sop_instance_uid: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid


@dataclass(slots=True)
class StoredPart:
    record: InstanceRecord
    events: list[OutboxEvent]
    stored: StoredObject


@dataclass(slots=True)
class StowOutcome:
    stored: list[StoredPart] = field(default_factory=list)
    failed: list[PartFailure] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        if not self.failed:
            return 200
        return 202 if self.stored else 409


@dataclass(frozen=True, slots=True)
class IngestOptions:
    max_header_size: int
    max_request_size: int
    emit_events: bool
    event_source: str
    store_info: StoreInfo
    #: Set when the catalog has no outbox: events are sent before the answer (see ``_commit``).
    sender: EventSender | None = None
    max_frames: int = 1_000_000


class PartIngest:
    """One part in flight: tee chunks to the scanner and (once the key is known) the writer."""

    def __init__(
        self, store: ObjectStore, options: IngestOptions, study_uid: str | None, media_type: str
    ) -> None:
        self._store = store
        self._options = options
        self._study_uid = study_uid
        self._scanner = DicomHeaderScanner(max_header_size=options.max_header_size)
        self._held: list[bytes | memoryview] = []
        self._writer: ObjectWriter | None = None
        self._key = ""
        self._ids: tuple[str, str, str, str] | None = None
        self._prefix = 0
        self._failure: PartFailure | None = None
        if media_type not in DICOM_MEDIA_TYPES:
            self._failure = PartFailure(CANNOT_UNDERSTAND, f"unsupported part media type {media_type!r}")

    async def write(self, data: memoryview) -> None:
        if self._failure is not None:
            return
        try:
            self._scanner.feed(data)
            if self._writer is not None:
                await self._writer.write(data)
                return
            # Holding the view keeps the chunk alive without copying it; bounded by the header cap.
            self._held.append(data)
            if self._scanner.header_done:
                await self._open_writer()
        except DicomFormatError as exc:
            await self._fail(PartFailure(CANNOT_UNDERSTAND, exc.reason, *self._uids_for_failure()))
        except PartFailure as exc:
            await self._fail(exc)
        except StoreError as exc:
            await self._fail(PartFailure(PROCESSING_FAILURE, exc.reason, *self._uids_for_failure()))

    def _uids_for_failure(self) -> tuple[str, str]:
        return (self._ids[3], self._ids[2]) if self._ids else ("", "")

    async def _open_writer(self) -> None:
        ds = self._scanner.dataset()
        self._ids = _identify(ds, self._study_uid)
        study, series, sop, _ = self._ids
        self._key = instance_key(study, series, sop)
        self._writer = await self._store.open_writer(self._key)
        # Objects sent without preamble/"DICM" are stored as proper Part-10 files.
        self._prefix = len(prefix := self._scanner.missing_prefix)
        if prefix:
            await self._writer.write(prefix)
        held, self._held = self._held, []
        for chunk in held:
            await self._writer.write(chunk)

    async def _fail(self, failure: PartFailure) -> None:
        if self._failure is None:
            self._failure = failure
        self._held = []
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.abort()

    async def abort(self) -> None:
        await self._fail(PartFailure(PROCESSING_FAILURE, "request aborted"))

    async def finish(self) -> ClosedPart:
        """End of the part: the object is complete (not yet committed: see
        :meth:`StowPipeline._flush`, which commits closed parts in batches)."""
        if self._failure is not None:
            raise self._failure
        try:
            result = self._scanner.finish()
            if self._writer is None:
                # Header ended without Pixel Data (or a deflated data set): key known only now.
                await self._open_writer()
            assert self._writer is not None and self._ids is not None
            if problem := check_scan(result, max_frames=self._options.max_frames):
                raise PartFailure(problem.status, problem.reason, *self._uids_for_failure())
        except DicomFormatError as exc:
            await self._fail(PartFailure(CANNOT_UNDERSTAND, exc.reason, *self._uids_for_failure()))
            raise self._failure from exc  # type: ignore[misc]
        except PartFailure as exc:
            await self._fail(exc)
            raise
        except StoreError as exc:
            await self._fail(PartFailure(PROCESSING_FAILURE, exc.reason, *self._uids_for_failure()))
            raise self._failure from exc  # type: ignore[misc]
        writer, self._writer = self._writer, None
        return ClosedPart(writer, result, self._ids, self._prefix, result.total_length)


@dataclass(slots=True)
class ClosedPart:
    """A part whose bytes are all written but not yet committed to the store."""

    writer: ObjectWriter
    result: ScanResult
    ids: tuple[str, str, str, str]
    prefix: int
    size: int

    def stored(self, stored: StoredObject, options: IngestOptions) -> StoredPart:
        record, metadata = instance_record(self.result, self.ids, stored, self.prefix)
        events = []
        if options.emit_events:
            body = image_event_body(
                metadata,
                transfer_syntax_uid=self.result.transfer_syntax_uid,
                object_name=stored.key,
                store=options.store_info,
            )
            events.append(new_event(IMAGE_STORED, options.event_source, body))
        return StoredPart(record=record, events=events, stored=stored)

    def failure(self, reason: str) -> PartFailure:
        return PartFailure(PROCESSING_FAILURE, reason, self.ids[3], self.ids[2])


async def commit_all(store: ObjectStore, writers: list[ObjectWriter]) -> list[StoredObject | StoreError]:
    """Commit several objects: through the store's batch commit when it has one (the file
    store: one worker-thread trip, one fsync per directory), else concurrently."""
    batch = getattr(store, "commit_many", None)
    if batch is not None:
        return list(await batch(writers))
    results = await asyncio.gather(*(w.commit() for w in writers), return_exceptions=True)
    out: list[StoredObject | StoreError] = []
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, StoreError):
            raise r
        out.append(r)
    return out


def instance_record(
    result: ScanResult, ids: tuple[str, str, str, str], stored: StoredObject, prefix: int = 0
) -> tuple[InstanceRecord, dict[str, Any]]:
    """The catalog record of a scanned, stored object (and its DICOM JSON metadata).
    ``prefix``: bytes put in front of the received ones when storing (offsets move by it)."""
    study, series, sop, sop_class = ids
    ds = result.dataset
    metadata = to_dicom_json(
        ds, study_uid=study, series_uid=series, sop_instance_uid=sop, pixel_data=result.pixel_data
    )
    record = InstanceRecord(
        study_uid=study,
        series_uid=series,
        sop_instance_uid=sop,
        sop_class_uid=sop_class,
        transfer_syntax_uid=result.transfer_syntax_uid,
        object_key=stored.key,
        size=stored.size,
        metadata=dumps(metadata),
        pixel_data=shift_pixel_data(result.pixel_data, prefix) if result.pixel_data else None,
        instance_number=raw_int(ds, 0x00200013),
        etag=stored.etag,
        created=time.time(),
    )
    return record, metadata


def identify(ds: Dataset, study_uid: str | None = None) -> tuple[str, str, str, str]:
    """Validated (study, series, sop instance, sop class) UIDs of a data set; raises
    :class:`PartFailure` naming the bad one."""
    return _identify(ds, study_uid)


def _identify(ds: Dataset, study_uid: str | None) -> tuple[str, str, str, str]:
    """Validate the identifying UIDs; return (study, series, sop instance, sop class)."""
    sop_class = raw_text(ds, 0x00080016)
    sop = raw_text(ds, 0x00080018)
    study = raw_text(ds, 0x0020000D)
    series = raw_text(ds, 0x0020000E)
    for name, value in (
        ("SOPClassUID", sop_class),
        ("SOPInstanceUID", sop),
        ("StudyInstanceUID", study),
        ("SeriesInstanceUID", series),
    ):
        if not value:
            raise PartFailure(CANNOT_UNDERSTAND, f"missing {name}", sop_class, sop)
        if not is_valid_uid(value):
            raise PartFailure(CANNOT_UNDERSTAND, f"invalid {name} {value[:80]!r}", sop_class, sop)
    if study_uid is not None and study != study_uid:
        raise PartFailure(
            DATA_SET_MISMATCH,
            f"StudyInstanceUID {study} does not match the study in the request URL ({study_uid})",
            sop_class,
            sop,
        )
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    if not ts or not is_valid_uid(ts):
        raise PartFailure(TRANSFER_SYNTAX_NOT_SUPPORTED, f"invalid transfer syntax {ts!r}", sop_class, sop)
    uid = UID(ts)
    if not uid.is_transfer_syntax and not uid.is_private:
        raise PartFailure(TRANSFER_SYNTAX_NOT_SUPPORTED, f"unknown transfer syntax {ts}", sop_class, sop)
    return study, series, sop, sop_class


class StowPipeline:
    """Runs one STOW request body through the reader, the parts, and the catalog."""

    def __init__(self, store: ObjectStore, catalog: Catalog, options: IngestOptions) -> None:
        self.store = store
        self.catalog = catalog
        self.options = options

    async def run(self, body: AsyncIterator[bytes], boundary: bytes, study_uid: str | None) -> StowOutcome:
        reader = MultipartRelatedReader(boundary)
        outcome = StowOutcome()
        pending: list[ClosedPart] = []
        part: PartIngest | None = None
        received = 0
        cap = self.options.max_request_size
        try:
            with stage("stow.receive"):  # read, parse, stream to the store (batches commit inside)
                async for chunk in body:
                    received += len(chunk)
                    if cap and received > cap:
                        raise PayloadTooLargeError(
                            f"request body larger than the configured cap of {cap} bytes"
                        )
                    for event in reader.feed(chunk):
                        part = await self._on_event(event, part, study_uid, outcome, pending)
                for event in reader.close():
                    part = await self._on_event(event, part, study_uid, outcome, pending)
            await self._flush(pending, outcome)
            await self._commit(outcome)
        except BaseException:
            if part is not None:
                await part.abort()
            for closed in pending:
                await closed.writer.abort()
            await self._rollback(outcome)
            raise
        return outcome

    async def _flush(self, pending: list[ClosedPart], outcome: StowOutcome) -> None:
        """Commit the closed parts to the store, together."""
        if not pending:
            return
        batch = pending[:]
        with stage("stow.store_commit"):  # durable: fsync / multipart upload completed
            results = await commit_all(self.store, [p.writer for p in batch])
        del pending[: len(batch)]
        for closed, result in zip(batch, results, strict=True):
            if isinstance(result, StoreError):
                outcome.failed.append(closed.failure(result.reason))
            else:
                outcome.stored.append(closed.stored(result, self.options))

    async def _on_event(
        self,
        event: PartStart | PartData | PartEnd,
        part: PartIngest | None,
        study_uid: str | None,
        outcome: StowOutcome,
        pending: list[ClosedPart],
    ) -> PartIngest | None:
        if isinstance(event, PartData):
            assert part is not None
            await part.write(event.data)
            return part
        if isinstance(event, PartStart):
            return PartIngest(self.store, self.options, study_uid, event.media_type)
        assert part is not None
        try:
            pending.append(await part.finish())
        except PartFailure as failure:
            outcome.failed.append(failure)
            return None
        # Bounded: closed parts may still hold up to a buffer's worth of bytes each.
        if len(pending) >= BATCH_PARTS or sum(p.size for p in pending) >= BATCH_BYTES:
            await self._flush(pending, outcome)
        return None

    async def _commit(self, outcome: StowOutcome) -> None:
        """All rows and events of the request in one catalog transaction (one fsync)."""
        if self.options.sender is not None:
            with stage("stow.event_delivery"):
                await self._send_events(outcome, self.options.sender)
        if not outcome.stored:
            return
        records = [p.record for p in outcome.stored]
        events = [e for p in outcome.stored for e in p.events]
        try:
            with stage("stow.catalog_transaction"):
                previous = await self.catalog.upsert_instances(records, events)
        except DicomwebError as exc:
            # The catalog refused: every part of the request fails, their objects go.
            failed, outcome.stored = outcome.stored, []
            for stored in failed:
                await self._remove_unacknowledged(stored)
                outcome.failed.append(
                    PartFailure(
                        PROCESSING_FAILURE,
                        exc.reason,
                        stored.record.sop_class_uid,
                        stored.record.sop_instance_uid,
                    )
                )
            return
        for old_key, stored in zip(previous, outcome.stored, strict=True):
            if old_key is not None and old_key != stored.record.object_key:
                await self.store.delete(old_key)

    async def _send_events(self, outcome: StowOutcome, sender: EventSender) -> None:
        """No outbox: deliver each part's events now (with retries); a part whose events the
        broker did not accept fails, and its object goes, so nothing is acknowledged that
        the rest of the system will never hear of."""
        if not any(p.events for p in outcome.stored):
            return
        results = await asyncio.gather(
            *(self._send_part_events(p, sender) for p in outcome.stored), return_exceptions=True
        )
        kept: list[StoredPart] = []
        for stored, error in zip(outcome.stored, results, strict=True):
            if error is None:
                stored.events = []  # delivered: nothing left for an outbox
                kept.append(stored)
                continue
            if not isinstance(error, EventDeliveryError):
                raise error
            await self._remove_unacknowledged(stored)
            rec = stored.record
            outcome.failed.append(
                PartFailure(
                    PROCESSING_FAILURE,
                    f"event not delivered: {error.reason}",
                    rec.sop_class_uid,
                    rec.sop_instance_uid,
                )
            )
        outcome.stored = kept

    @staticmethod
    async def _send_part_events(stored: StoredPart, sender: EventSender) -> None:
        for event in stored.events:
            await sender.send(event)

    async def _rollback(self, outcome: StowOutcome) -> None:
        for stored in outcome.stored:
            try:
                await self._remove_unacknowledged(stored)
            except Exception:
                log.exception("rollback of %s failed", stored.stored.key)
        outcome.stored = []

    async def _remove_unacknowledged(self, stored: StoredPart) -> None:
        rec = stored.record
        existing = await self.catalog.get_instance(rec.study_uid, rec.series_uid, rec.sop_instance_uid)
        if existing is not None and existing.object_key == stored.stored.key:
            return  # an earlier acknowledged store owns this object
        await self.store.delete(stored.stored.key)


__all__ = [
    "IngestOptions",
    "MultipartError",
    "PartFailure",
    "StowOutcome",
    "StowPipeline",
]
