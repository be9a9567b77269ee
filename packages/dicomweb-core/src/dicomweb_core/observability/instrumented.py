"""Store and catalog operations timed for the metrics: thin proxies around the runtime's store
and catalog. Each call adds to plain numbers (:class:`OpTimer`), published with the request
metrics once a second, so a WADO read or a QIDO search pays about a microsecond more.

The store proxy forwards what it does not know (the file store's ``commit_many``, the S3 store's
``warm``) so the callers that look for those find them; the batch commit is timed as ``put``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..errors import DicomwebError, StoreError

if TYPE_CHECKING:
    from ..catalog.base import Catalog, EventsFor, OutboxEvent, QuietEventFactory
    from ..catalog.qido import QidoQuery
    from ..models import InstanceRecord
    from ..stores.base import ObjectStore, ObjectWriter, StoredObject


class OpTimer:
    """Count, total seconds, histogram buckets and errors per operation, until :meth:`flush`."""

    def __init__(self, histogram: Any, errors: Any, bounds: Sequence[float]) -> None:
        self._histogram = histogram
        self._errors = errors
        self._bounds = tuple(bounds)
        self._pending: dict[str, list[Any]] = {}

    def record(self, op: str, seconds: float, failed: bool = False) -> None:
        p = self._pending.get(op)
        if p is None:
            p = self._pending[op] = [0.0, [0] * (len(self._bounds) + 1), 0, self._histogram.labels(op)]
        p[0] += seconds
        p[1][bisect_left(self._bounds, seconds)] += 1
        if failed:
            p[2] += 1

    def flush(self) -> None:
        for op, p in self._pending.items():
            seconds, buckets, errors, child = p
            if any(buckets):
                child._sum.inc(seconds)  # a batch of observations (see Metrics.flush)
                for bucket, n in zip(child._buckets, buckets, strict=True):
                    if n:
                        bucket.inc(n)
            if errors:
                self._errors.labels(op).inc(errors)
            p[0], p[1], p[2] = 0.0, [0] * len(buckets), 0


class InstrumentedStore:
    def __init__(self, store: ObjectStore, timer: OpTimer) -> None:
        self._store = store
        self._timer = timer
        self.bucket_name = store.bucket_name

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if name == "commit_many":
            return self._timed_batch(value)
        return value

    def __repr__(self) -> str:
        return repr(self._store)

    def _timed_batch(
        self, commit_many: Callable[[Sequence[ObjectWriter]], Awaitable[list[StoredObject | StoreError]]]
    ) -> Callable[[Sequence[ObjectWriter]], Awaitable[list[StoredObject | StoreError]]]:
        async def timed(writers: Sequence[ObjectWriter]) -> list[StoredObject | StoreError]:
            start = perf_counter()
            results = await commit_many(writers)
            seconds = perf_counter() - start
            for result in results:
                self._timer.record("put", seconds, isinstance(result, StoreError))
            return results

        return timed

    async def _timed(self, op: str, call: Awaitable[Any]) -> Any:
        start = perf_counter()
        try:
            result = await call
        except StoreError:
            self._timer.record(op, perf_counter() - start, True)
            raise
        self._timer.record(op, perf_counter() - start)
        return result

    async def open_writer(self, key: str) -> ObjectWriter:
        writer = await self._store.open_writer(key)
        if hasattr(self._store, "commit_many"):
            return writer  # committed in batches, timed there
        return _TimedWriter(writer, self._timer)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        began = perf_counter()
        failed = False
        try:
            async for chunk in self._store.read(key, start, end):
                yield chunk
        except StoreError:
            failed = True
            raise
        finally:
            self._timer.record("get", perf_counter() - began, failed)

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        result: bytes = await self._timed("get_range", self._store.read_range(key, start, length))
        return result

    async def size(self, key: str) -> int | None:
        result: int | None = await self._timed("head", self._store.size(key))
        return result

    async def delete(self, key: str) -> None:
        await self._timed("delete", self._store.delete(key))

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        return self._store.list_keys(prefix)

    async def check(self) -> None:
        await self._store.check()

    async def close(self) -> None:
        await self._store.close()


class _TimedWriter:
    def __init__(self, writer: ObjectWriter, timer: OpTimer) -> None:
        self._writer = writer
        self._timer = timer

    async def write(self, data: bytes | memoryview) -> None:
        await self._writer.write(data)

    async def commit(self) -> StoredObject:
        start = perf_counter()
        try:
            stored = await self._writer.commit()
        except StoreError:
            self._timer.record("put", perf_counter() - start, True)
            raise
        self._timer.record("put", perf_counter() - start)
        return stored

    async def abort(self) -> None:
        await self._writer.abort()


class InstrumentedCatalog:
    """Times the queries and transactions of the request path; the outbox calls pass through."""

    def __init__(self, catalog: Catalog, timer: OpTimer) -> None:
        self._catalog = catalog
        self._timer = timer
        self.has_outbox = catalog.has_outbox

    async def _timed(self, op: str, call: Awaitable[Any]) -> Any:
        start = perf_counter()
        try:
            result = await call
        except DicomwebError:
            self._timer.record(op, perf_counter() - start, True)
            raise
        self._timer.record(op, perf_counter() - start)
        return result

    async def upsert_instance(self, record: InstanceRecord, events: Sequence[OutboxEvent] = ()) -> str | None:
        result: str | None = await self._timed("upsert", self._catalog.upsert_instance(record, events))
        return result

    async def upsert_instances(
        self, records: Sequence[InstanceRecord], events: Sequence[OutboxEvent] = ()
    ) -> list[str | None]:
        call = self._catalog.upsert_instances(records, events)
        result: list[str | None] = await self._timed("upsert", call)
        return result

    async def get_instance(
        self, study_uid: str, series_uid: str | None, sop_instance_uid: str
    ) -> InstanceRecord | None:
        call = self._catalog.get_instance(study_uid, series_uid, sop_instance_uid)
        result: InstanceRecord | None = await self._timed("get_instance", call)
        return result

    async def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        result: list[InstanceRecord] = await self._timed(
            "list_instances", self._catalog.list_instances(study_uid, series_uid)
        )
        return result

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        events: Sequence[OutboxEvent] | EventsFor = (),
    ) -> list[InstanceRecord]:
        call = self._catalog.delete_instances(study_uid, series_uid, sop_instance_uid, events)
        result: list[InstanceRecord] = await self._timed("delete", call)
        return result

    async def search(self, query: QidoQuery, base_url: str = "") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._timed("search", self._catalog.search(query, base_url))
        return result

    # -- not timed ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._catalog.open()

    async def close(self) -> None:
        await self._catalog.close()

    async def check(self) -> None:
        await self._catalog.check()

    async def pending_events(self, limit: int = 100) -> list[OutboxEvent]:
        return await self._catalog.pending_events(limit)

    async def outbox_backlog(self) -> tuple[int, float | None]:
        return await self._catalog.outbox_backlog()

    async def mark_events_sent(self, ids: Sequence[str]) -> None:
        await self._catalog.mark_events_sent(ids)

    async def record_event_attempt(self, event_id: str) -> None:
        await self._catalog.record_event_attempt(event_id)

    async def claim_events(self, limit: int = 100, lease_seconds: float = 60.0) -> list[OutboxEvent]:
        return await self._catalog.claim_events(limit, lease_seconds)

    async def release_events(self, ids: Sequence[str]) -> None:
        await self._catalog.release_events(ids)

    async def enqueue_quiet_studies(
        self, quiet_before: float, make_event: QuietEventFactory, limit: int = 100
    ) -> int:
        return await self._catalog.enqueue_quiet_studies(quiet_before, make_event, limit)
