"""The STOW-RS pipeline: multipart parts → (header scanner ‖ object store) → catalog → events.

Per part (:mod:`.stowpart`), every body chunk goes to the :class:`DicomHeaderScanner`; until
the scanner has seen the whole header (everything before Pixel Data) the chunks are held back
(bounded by the header cap), because the object key derives from the UIDs in that header.
Then the writer opens under a new key (the UID path plus a never-reused revision), receives
the held-back chunks and, from there on, every chunk as it arrives.

Acknowledgement is two-phase. Each part's object is made durable as soon as the part ends; the
catalog rows (and their outbox events) of the whole request are written at the end of the body
in one transaction, which also records every key it stops referencing as garbage. Only after
that commit are superseded objects removed. No key is ever overwritten, so a body that turns
out malformed or is cut off leaves no row, no event, and no change to any acknowledged object;
its own new objects are removed again (or, after a crash, swept as unreferenced garbage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from .catalog.base import CatalogWriter, NewInstance, StoreResult
from .errors import DicomwebError, EventDeliveryError, MultipartError, PayloadTooLargeError, StoreError
from .events import EventSender
from .multipart import MultipartRelatedReader, PartData, PartEnd, PartStart
from .observability.tracing import stage
from .records import (
    CANNOT_UNDERSTAND,
    DATA_SET_MISMATCH,
    DUPLICATE_SOP_INSTANCE,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    TRANSFER_SYNTAX_NOT_SUPPORTED,
    PartFailure,
    identify,
    instance_record,
)
from .stores.base import ObjectStore
from .stowpart import DICOM_MEDIA_TYPES, ClosedPart, IngestOptions, PartIngest, StoredPart

log = logging.getLogger("dicomweb.stow")

#: Closed parts are committed to the store in batches of at most this many parts / bytes.
BATCH_PARTS = 16
BATCH_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class StowOutcome:
    stored: list[StoredPart] = field(default_factory=list)
    failed: list[PartFailure] = field(default_factory=list)

    @property
    def http_status(self) -> int:
        if not self.failed:
            return 200
        return 202 if self.stored else 409


class StowPipeline:
    """Runs one STOW request body through the reader, the parts, and the catalog.

    ``catalog`` is ``None`` in the drop-in topology (a remote, read-only catalog that the
    events feed): the objects are stored and the events sent, nothing is written here."""

    def __init__(self, store: ObjectStore, catalog: CatalogWriter | None, options: IngestOptions) -> None:
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
        except BaseException:
            if part is not None:
                await part.abort()
            for closed in pending:
                await closed.writer.abort()
            await self._rollback(outcome)
            raise
        await self._commit(outcome)
        return outcome

    async def _flush(self, pending: list[ClosedPart], outcome: StowOutcome) -> None:
        """Commit the closed parts to the store, together."""
        if not pending:
            return
        batch = pending[:]
        with stage("stow.store_commit"):  # durable: fsync / multipart upload completed
            results = await self.store.commit_all([p.writer for p in batch])
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
        try:
            if self.options.sender is not None:
                with stage("stow.event_delivery"):
                    await self._send_events(outcome, self.options.sender)
        except BaseException:
            await self._rollback(outcome)
            raise
        if not outcome.stored or self.catalog is None:
            return
        catalog = self.catalog
        items = [NewInstance(p.record, p.events) for p in outcome.stored]
        # Shielded: once the transaction runs it may commit whatever happens to this request,
        # so its objects are cleaned up by what it decided, never blindly.
        write = asyncio.ensure_future(catalog.store_instances(items, self.options.duplicate_policy))
        try:
            with stage("stow.catalog_transaction"):
                result = await asyncio.shield(write)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._collect((await write).garbage)
            raise
        except DicomwebError as exc:
            # The catalog refused (or could not say): every part of the request fails. Its
            # objects go unless a row references them (a commit whose answer was lost).
            failed, outcome.stored = outcome.stored, []
            keys = [p.stored.key for p in failed]
            try:
                referenced = await catalog.referenced_keys(keys)
            except DicomwebError:
                referenced = set(keys)  # cannot tell: the sweep decides later
            await self._delete([k for k in keys if k not in referenced])
            for stored in failed:
                outcome.failed.append(
                    PartFailure(
                        PROCESSING_FAILURE,
                        exc.reason,
                        stored.record.sop_class_uid,
                        stored.record.sop_instance_uid,
                    )
                )
            return
        self._apply(outcome, result)
        await self._collect(result.garbage)

    @staticmethod
    def _apply(outcome: StowOutcome, result: StoreResult) -> None:
        kept: list[StoredPart] = []
        for stored, decision in zip(outcome.stored, result.decisions, strict=True):
            if decision != "rejected":
                kept.append(stored)
                continue
            rec = stored.record
            outcome.failed.append(
                PartFailure(
                    DUPLICATE_SOP_INSTANCE,
                    f"SOP Instance UID {rec.sop_instance_uid} is already stored with other content"
                    " (DUPLICATE_POLICY=reject)",
                    rec.sop_class_uid,
                    rec.sop_instance_uid,
                )
            )
        outcome.stored = kept

    async def _collect(self, keys: Sequence[str]) -> None:
        """Remove objects no row references any more, then their garbage records. A failure
        leaves the records: the sweep retries them."""
        if not keys or self.catalog is None:
            return
        try:
            for key in keys:
                await self.store.delete(key)
            await self.catalog.forget_garbage(keys)
        except DicomwebError as exc:
            log.warning("superseded objects left for the sweep: %s", exc.reason)

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
            await self._delete([stored.stored.key])
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
        """Nothing of the request was catalogued: its objects (new keys, referenced by no
        row) go. A failure here leaves unreferenced objects for the sweep, nothing worse."""
        stored, outcome.stored = outcome.stored, []
        await self._delete([p.stored.key for p in stored])

    async def _delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                await self.store.delete(key)
            except Exception:
                log.exception("removing unacknowledged object %s failed (left for the sweep)", key)


__all__ = [
    "CANNOT_UNDERSTAND",
    "DATA_SET_MISMATCH",
    "DICOM_MEDIA_TYPES",
    "OUT_OF_RESOURCES",
    "PROCESSING_FAILURE",
    "TRANSFER_SYNTAX_NOT_SUPPORTED",
    "IngestOptions",
    "MultipartError",
    "PartFailure",
    "StowOutcome",
    "StowPipeline",
    "identify",
    "instance_record",
]
