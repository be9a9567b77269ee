"""Store and catalog operations timed for the metrics: thin proxies around the runtime's store,
catalog reader and catalog writer, each implementing the same Protocol as what it wraps. Each
call adds to plain numbers (:class:`OpTimer`), published with the request metrics once a second,
so a WADO read or a QIDO search pays about a microsecond more. The outbox is not wrapped (its
backlog is a gauge of its own).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ..errors import DicomwebError, StoreError

if TYPE_CHECKING:
    from ..catalog.base import (
        CatalogReader,
        CatalogWriter,
        DuplicatePolicy,
        EventsFor,
        NewInstance,
        OutboxEvent,
        StoreResult,
    )
    from ..catalog.qido import QidoQuery
    from ..models import InstanceRecord
    from ..stores.base import Leftover, MaintainedStore, ObjectInfo, ObjectWriter, StoredObject


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


async def _timed(timer: OpTimer, op: str, call: Awaitable[Any], errors: type[Exception]) -> Any:
    start = perf_counter()
    try:
        result = await call
    except errors:
        timer.record(op, perf_counter() - start, True)
        raise
    timer.record(op, perf_counter() - start)
    return result


class InstrumentedStore:
    """A :class:`~..stores.base.MaintainedStore` whose reads, writes and deletes are timed."""

    def __init__(self, store: MaintainedStore, timer: OpTimer) -> None:
        self._store = store
        self._timer = timer
        self.bucket_name = store.bucket_name

    def __repr__(self) -> str:
        return repr(self._store)

    async def open_writer(self, key: str) -> ObjectWriter:
        return await self._store.open_writer(key)  # committed by commit_all, timed there

    async def commit_all(self, writers: Sequence[ObjectWriter]) -> list[StoredObject | StoreError]:
        start = perf_counter()
        results = await self._store.commit_all(writers)
        seconds = perf_counter() - start
        for result in results:
            self._timer.record("put", seconds, isinstance(result, StoreError))
        return results

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
        call = self._store.read_range(key, start, length)
        result: bytes = await _timed(self._timer, "get_range", call, StoreError)
        return result

    async def size(self, key: str) -> int | None:
        result: int | None = await _timed(self._timer, "head", self._store.size(key), StoreError)
        return result

    async def delete(self, key: str) -> None:
        await _timed(self._timer, "delete", self._store.delete(key), StoreError)

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        return self._store.list_keys(prefix)

    def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        return self._store.list_objects(prefix)

    def list_leftovers(self) -> AsyncIterator[Leftover]:
        return self._store.list_leftovers()

    async def remove_leftover(self, leftover: Leftover) -> None:
        await self._store.remove_leftover(leftover)

    async def check(self) -> None:
        await self._store.check()

    async def close(self) -> None:
        await self._store.close()


class InstrumentedReader:
    """A :class:`~..catalog.base.CatalogReader` whose lookups and searches are timed."""

    def __init__(self, catalog: CatalogReader, timer: OpTimer) -> None:
        self._catalog = catalog
        self._timer = timer

    async def get_instance(
        self, study_uid: str, series_uid: str | None, sop_instance_uid: str
    ) -> InstanceRecord | None:
        call = self._catalog.get_instance(study_uid, series_uid, sop_instance_uid)
        result: InstanceRecord | None = await _timed(self._timer, "get_instance", call, DicomwebError)
        return result

    async def list_instances(self, study_uid: str, series_uid: str | None = None) -> list[InstanceRecord]:
        call = self._catalog.list_instances(study_uid, series_uid)
        result: list[InstanceRecord] = await _timed(self._timer, "list_instances", call, DicomwebError)
        return result

    async def search(self, query: QidoQuery, base_url: str = "") -> list[dict[str, Any]]:
        call = self._catalog.search(query, base_url)
        result: list[dict[str, Any]] = await _timed(self._timer, "search", call, DicomwebError)
        return result

    async def open(self) -> None:
        await self._catalog.open()

    async def close(self) -> None:
        await self._catalog.close()

    async def check(self) -> None:
        await self._catalog.check()


class InstrumentedWriter:
    """A :class:`~..catalog.base.CatalogWriter` whose request-path transactions are timed
    (``upsert`` for STOW's, ``delete`` for DELETE's); maintenance calls pass through."""

    def __init__(self, catalog: CatalogWriter, timer: OpTimer) -> None:
        self._catalog = catalog
        self._timer = timer

    async def store_instances(
        self, items: Sequence[NewInstance], policy: DuplicatePolicy = "replace"
    ) -> StoreResult:
        call = self._catalog.store_instances(items, policy)
        result: StoreResult = await _timed(self._timer, "upsert", call, DicomwebError)
        return result

    async def upsert_instance(self, record: InstanceRecord, events: Sequence[OutboxEvent] = ()) -> str | None:
        call = self._catalog.upsert_instance(record, events)
        result: str | None = await _timed(self._timer, "upsert", call, DicomwebError)
        return result

    async def upsert_instances(
        self, records: Sequence[InstanceRecord], events: Sequence[OutboxEvent] = ()
    ) -> list[str | None]:
        call = self._catalog.upsert_instances(records, events)
        result: list[str | None] = await _timed(self._timer, "upsert", call, DicomwebError)
        return result

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
        events: Sequence[OutboxEvent] | EventsFor = (),
    ) -> list[InstanceRecord]:
        call = self._catalog.delete_instances(study_uid, series_uid, sop_instance_uid, events)
        result: list[InstanceRecord] = await _timed(self._timer, "delete", call, DicomwebError)
        return result

    async def garbage(self, limit: int = 500) -> list[str]:
        return await self._catalog.garbage(limit)

    async def forget_garbage(self, keys: Sequence[str]) -> None:
        await self._catalog.forget_garbage(keys)

    async def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        return await self._catalog.referenced_keys(keys)

    def all_object_keys(self) -> AsyncIterator[list[str]]:
        return self._catalog.all_object_keys()

    async def open(self) -> None:
        await self._catalog.open()

    async def close(self) -> None:
        await self._catalog.close()

    async def check(self) -> None:
        await self._catalog.check()
