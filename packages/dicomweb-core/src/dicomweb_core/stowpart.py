"""One STOW part in flight: chunks teed to the header scanner and, once the UIDs are known,
to an object writer under a new, never-reused key."""

from __future__ import annotations

from dataclasses import dataclass

from .catalog.base import DuplicatePolicy, OutboxEvent
from .errors import DicomFormatError, StoreError
from .events import IMAGE_STORED, EventSender, StoreInfo, image_event_body, new_event
from .models import InstanceRecord
from .pixelcheck import check_scan
from .records import CANNOT_UNDERSTAND, PROCESSING_FAILURE, PartFailure, identify, instance_record
from .scanner import DicomHeaderScanner, ScanResult
from .stores.base import ObjectStore, ObjectWriter, StoredObject, instance_key, new_revision

DICOM_MEDIA_TYPES = frozenset({"application/dicom"})


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
    #: What a store of an already catalogued SOP Instance UID with other content does.
    duplicate_policy: DuplicatePolicy = "replace"


@dataclass(slots=True)
class StoredPart:
    record: InstanceRecord
    events: list[OutboxEvent]
    stored: StoredObject


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
        self._ids = identify(ds, self._study_uid)
        study, series, sop, _ = self._ids
        self._key = instance_key(study, series, sop, new_revision())
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
