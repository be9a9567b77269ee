"""Builds the store, the catalog and the event delivery from :class:`Settings`.

The catalog comes in the parts callers use: reads (every catalog), writes and the outbox
(our own databases only). The remote query endpoint is read-only: STOW writes nothing there
and DELETE / ``reindex`` / ``fsck`` are refused.

At start-up the services sweep their own leftovers in the background (bounded in time):
garbage records, unreferenced objects and temp files / incomplete uploads from before this
process started and older than ``SWEEP_GRACE_SECONDS`` (see :mod:`.sweep`).

Events go one of two ways. With a catalog that has an outbox (SQLite, PostgreSQL), they are
written with the catalog rows and an :class:`OutboxDispatcher` delivers them. With the remote
query endpoint (the Alvearie topology: no database of ours), there is nowhere durable to keep
them, so STOW sends each event itself and acknowledges the instance only once the broker has
accepted it (``IngestOptions.sender``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from .catalog.base import CatalogReader, CatalogWriter, DatabaseCatalog, DuplicatePolicy, Outbox, OutboxEvent
from .config import Settings
from .dispatcher import OutboxDispatcher
from .errors import CatalogError, ConfigError, DicomwebError, StoreError
from .events import STUDY_QUIET, EventSender, StoreInfo, new_event, study_event_body
from .stores.base import MaintainedStore

if TYPE_CHECKING:
    from .ingest import IngestOptions

log = logging.getLogger("dicomweb")

#: Readiness answers within this time (Kubernetes probes time out after 1 s by default;
#: botocore's retries against an unreachable S3 would take several seconds).
READY_TIMEOUT = 0.9
#: Seconds between passes over the garbage records (objects whose removal after their
#: commit failed); the start-up sweep does the rest.
GARBAGE_INTERVAL = 60.0


@dataclass
class Runtime:
    settings: Settings
    store: MaintainedStore
    #: Reads: every catalog.
    catalog: CatalogReader
    #: Writes and the outbox: ``None`` with the remote (read-only) query endpoint.
    writer: CatalogWriter | None = None
    outbox: Outbox | None = None
    dispatcher: OutboxDispatcher | None = None
    #: Synchronous event delivery when the catalog has no outbox.
    sender: EventSender | None = None
    #: Work started in the background at start-up, after the catalog opens (loading the S3
    #: SDK): readiness does not wait for it, the first request finds it done. Never raises.
    warmups: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    #: When the service started (epoch seconds): the parent's start with several workers,
    #: else this process' (see :meth:`start`). The start-up sweep only takes what is older.
    started_at: float | None = None
    _warming: list[asyncio.Task[None]] = field(default_factory=list, repr=False)

    @property
    def store_info(self) -> StoreInfo:
        s = self.settings
        return StoreInfo(
            provider=s.provider_name,
            bucket_name=self.store.bucket_name,
            wado_internal_endpoint=s.wado_internal_endpoint,
            wado_external_endpoint=s.wado_external_endpoint,
        )

    @property
    def ingest_options(self) -> IngestOptions:
        from .ingest import IngestOptions  # pydicom: loaded with the services, not at start-up

        s = self.settings
        return IngestOptions(
            max_header_size=s.max_header_size,
            max_request_size=s.max_request_size,
            emit_events=bool(s.k_sink),
            event_source=s.event_source or "dicomweb",
            store_info=self.store_info,
            sender=self.sender,
            max_frames=s.limits.max_frames,
            duplicate_policy=cast(DuplicatePolicy, s.duplicate_policy),
        )

    async def start(self) -> None:
        await self.catalog.open()
        if self.dispatcher is not None:
            self.dispatcher.start()
        try:
            await self.check()
        except DicomwebError as exc:
            # Not fatal: S3 may come back; /readyz says why until it does.
            log.warning("not ready yet: %s", exc.reason)
        # After the check: a warm-up thread holding the GIL would slow it down.
        for warmup in self.warmups:
            self._warming.append(asyncio.create_task(warmup(), name="warm-up"))
        if self.writer is not None:
            started = self.started_at if self.started_at is not None else time.time()
            cutoff = started - self.settings.sweep_grace_seconds
            self._warming.append(asyncio.create_task(self._sweep(self.writer, cutoff), name="sweep"))

    async def _sweep(self, writer: CatalogWriter, cutoff: float) -> None:
        """The start-up sweep, then garbage records now and then (a removal that failed after
        a commit, e.g. S3 briefly away); never raises."""
        if self.settings.startup_sweep_seconds > 0:
            await self._startup_sweep(writer, cutoff)
        from .sweep import collect_garbage

        while True:
            await asyncio.sleep(GARBAGE_INTERVAL)
            try:
                if removed := await collect_garbage(self.store, writer):
                    log.info("removed %d superseded or deleted objects", removed)
            except DicomwebError as exc:
                log.warning("garbage collection failed (retried later): %s", exc.reason)

    async def _startup_sweep(self, writer: CatalogWriter, cutoff: float) -> None:
        from .sweep import sweep

        try:
            report = await sweep(
                self.store, writer, cutoff=cutoff, repair=True, seconds=self.settings.startup_sweep_seconds
            )
        except Exception as exc:
            reason = exc.reason if isinstance(exc, DicomwebError) else repr(exc)
            log.warning("start-up sweep stopped: %s", reason)
            return
        log.info(
            "start-up sweep %s: removed %d garbage objects, %d unreferenced objects, %d leftovers",
            "done" if report.complete else "stopped at its time budget",
            report.garbage_removed,
            report.removed_unreferenced,
            report.removed_leftovers,
        )

    async def check(self) -> None:
        """Raise :class:`StoreError`/:class:`CatalogError` saying why the service cannot work."""
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.store.check()
        except TimeoutError:
            raise StoreError(f"object store {self.store!r} did not answer within {READY_TIMEOUT} s") from None
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.catalog.check()
        except TimeoutError:
            raise CatalogError(f"catalog did not answer within {READY_TIMEOUT} s") from None

    async def stop(self) -> None:
        for task in self._warming:
            task.cancel()
        await asyncio.gather(*self._warming, return_exceptions=True)
        self._warming.clear()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.sender is not None:
            await self.sender.close()
        await self.catalog.close()
        await self.store.close()

    def events_committed(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.notify()


Warmup = Callable[[], Coroutine[Any, Any, None]]


def build_store(settings: Settings) -> MaintainedStore:
    return _build_store(settings)[0]


def _build_store(settings: Settings) -> tuple[MaintainedStore, Warmup | None]:
    """The store, and the work to start in the background at start-up (S3: its SDK)."""
    if settings.bucket is not None:
        from .stores.s3 import S3ObjectStore

        s3 = S3ObjectStore(settings.bucket, part_size=settings.s3_part_size)
        return s3, s3.warm
    if settings.data_dir is None:
        raise ConfigError(
            "no object store configured: set --data-dir (or DICOMWEB_DATA_DIR) or BUCKET_* variables"
        )
    from .stores.file import FileObjectStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return FileObjectStore(settings.data_dir), None


def uses_remote_catalog(settings: Settings) -> bool:
    return bool(settings.query_endpoint and not settings.catalog_url)


def build_catalog(settings: Settings, store: MaintainedStore) -> CatalogReader:
    """The catalog services read from (the remote query endpoint, or our database)."""
    if uses_remote_catalog(settings):
        from .catalog.remote import RemoteCatalog

        return RemoteCatalog(
            settings.query_endpoint,
            settings.provider_name,
            store,
            max_header_size=settings.max_header_size,
            max_frames=settings.limits.max_frames,
        )
    return build_database_catalog(settings)


def build_database_catalog(settings: Settings) -> DatabaseCatalog:
    """Our own catalog database; refuses the read-only remote topology."""
    if uses_remote_catalog(settings):
        raise ConfigError("this needs a catalog database (CATALOG_URL); QUERY_ENDPOINT is read-only")
    from .catalog.factory import open_catalog

    return open_catalog(settings.resolved_catalog_url)


def build_runtime(settings: Settings) -> Runtime:
    """Everything a service needs; raises :class:`ConfigError` on bad configuration."""
    store, warm = _build_store(settings)
    database: DatabaseCatalog | None = None
    if uses_remote_catalog(settings):
        runtime = Runtime(settings=settings, store=store, catalog=build_catalog(settings, store))
    else:
        database = build_database_catalog(settings)
        runtime = Runtime(settings=settings, store=store, catalog=database, writer=database, outbox=database)
    if warm is not None:  # S3: the SDK loads off the readiness path.
        runtime.warmups.append(warm)
    if settings.k_sink and runtime.outbox is None:
        runtime.sender = EventSender(settings.k_sink)
    elif settings.k_sink:
        source = settings.event_source or "dicomweb"
        info = runtime.store_info

        def quiet_event(study_uid: str, attributes: bytes) -> OutboxEvent:
            return new_event(STUDY_QUIET, source, study_event_body(study_uid, attributes, store=info))

        assert database is not None
        runtime.dispatcher = OutboxDispatcher(
            database,
            EventSender(settings.k_sink),
            lease_seconds=settings.event_lease_seconds,
            quiet_seconds=settings.study_quiet_seconds,
            quiet_event=quiet_event,
        )
    return runtime
