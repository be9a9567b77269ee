"""Builds the store, the catalog and the event delivery from :class:`Settings`.

Events go one of two ways. With a catalog that has an outbox (SQLite, PostgreSQL), they are
written with the catalog rows and an :class:`OutboxDispatcher` delivers them. With the remote
query endpoint (the Alvearie topology: no database of ours), there is nowhere durable to keep
them, so STOW sends each event itself and acknowledges the instance only once the broker has
accepted it (``IngestOptions.sender``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog.base import Catalog, OutboxEvent
from .config import Settings
from .dispatcher import OutboxDispatcher
from .errors import CatalogError, ConfigError, DicomwebError, StoreError
from .events import STUDY_QUIET, EventSender, StoreInfo, new_event, study_event_body
from .stores.base import ObjectStore

if TYPE_CHECKING:
    from .ingest import IngestOptions

log = logging.getLogger("dicomweb")

#: Readiness answers within this time (Kubernetes probes time out after 1 s by default;
#: botocore's retries against an unreachable S3 would take several seconds).
READY_TIMEOUT = 0.9


@dataclass
class Runtime:
    settings: Settings
    store: ObjectStore
    catalog: Catalog
    dispatcher: OutboxDispatcher | None = None
    #: Synchronous event delivery when the catalog has no outbox.
    sender: EventSender | None = None
    #: Work started in the background at start-up, after the catalog opens (loading the S3
    #: SDK): readiness does not wait for it, the first request finds it done. Never raises.
    warmups: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
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


def build_store(settings: Settings) -> ObjectStore:
    if settings.bucket is not None:
        from .stores.s3 import S3ObjectStore

        return S3ObjectStore(settings.bucket, part_size=settings.s3_part_size)
    if settings.data_dir is None:
        raise ConfigError(
            "no object store configured: set --data-dir (or DICOMWEB_DATA_DIR) or BUCKET_* variables"
        )
    from .stores.file import FileObjectStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return FileObjectStore(settings.data_dir)


def build_catalog(settings: Settings, store: ObjectStore) -> Catalog:
    if settings.query_endpoint and not settings.catalog_url:
        from .catalog.remote import RemoteCatalog

        return RemoteCatalog(
            settings.query_endpoint, settings.provider_name, store, max_header_size=settings.max_header_size
        )
    from .catalog.factory import open_catalog

    return open_catalog(settings.resolved_catalog_url)


def build_runtime(settings: Settings) -> Runtime:
    """Everything a service needs; raises :class:`ConfigError` on bad configuration."""
    store = build_store(settings)
    catalog = build_catalog(settings, store)
    runtime = Runtime(settings=settings, store=store, catalog=catalog)
    # S3: the SDK loads off the readiness path.
    warm: Callable[[], Coroutine[Any, Any, None]] | None = getattr(store, "warm", None)
    if warm is not None:
        runtime.warmups.append(warm)
    if settings.k_sink and not catalog.has_outbox:
        runtime.sender = EventSender(settings.k_sink)
    elif settings.k_sink:
        source = settings.event_source or "dicomweb"
        info = runtime.store_info

        def quiet_event(study_uid: str, attributes: bytes) -> OutboxEvent:
            return new_event(STUDY_QUIET, source, study_event_body(study_uid, attributes, store=info))

        runtime.dispatcher = OutboxDispatcher(
            catalog,
            EventSender(settings.k_sink),
            lease_seconds=settings.event_lease_seconds,
            quiet_seconds=settings.study_quiet_seconds,
            quiet_event=quiet_event,
        )
    return runtime
