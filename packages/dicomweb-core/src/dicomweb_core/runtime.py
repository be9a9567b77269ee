"""Builds the store, the catalog and the event dispatcher from :class:`Settings`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .catalog.base import Catalog
from .config import Settings
from .dispatcher import OutboxDispatcher
from .errors import ConfigError
from .events import EventSender, StoreInfo
from .ingest import IngestOptions
from .stores.base import ObjectStore

log = logging.getLogger("dicomweb")


@dataclass
class Runtime:
    settings: Settings
    store: ObjectStore
    catalog: Catalog
    dispatcher: OutboxDispatcher | None = None

    @property
    def ingest_options(self) -> IngestOptions:
        s = self.settings
        return IngestOptions(
            max_header_size=s.max_header_size,
            max_request_size=s.max_request_size,
            emit_events=bool(s.k_sink),
            event_source=s.event_source or "dicomweb",
            store_info=StoreInfo(
                provider=s.provider_name,
                bucket_name=self.store.bucket_name,
                wado_internal_endpoint=s.wado_internal_endpoint,
                wado_external_endpoint=s.wado_external_endpoint,
            ),
        )

    async def start(self) -> None:
        await self.catalog.open()
        if self.dispatcher is not None:
            self.dispatcher.start()

    async def stop(self) -> None:
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.catalog.close()
        await self.store.close()

    def events_committed(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.notify()


def build_store(settings: Settings) -> ObjectStore:
    if settings.use_s3:
        from .bucket import load_bucket_config
        from .stores.s3 import S3ObjectStore

        return S3ObjectStore(load_bucket_config(settings.env), part_size=settings.s3_part_size)
    if settings.data_dir is None:
        raise ConfigError("no object store configured: set --data-dir (or DICOMWEB_DATA_DIR) or BUCKET_* variables")
    from .stores.file import FileObjectStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return FileObjectStore(settings.data_dir)


def build_catalog(settings: Settings) -> Catalog:
    from .catalog.factory import open_catalog

    return open_catalog(settings.resolved_catalog_url)


def build_runtime(settings: Settings) -> Runtime:
    """Everything a service needs; raises :class:`ConfigError` on bad configuration."""
    store = build_store(settings)
    catalog = build_catalog(settings)
    dispatcher = None
    if settings.k_sink:
        dispatcher = OutboxDispatcher(catalog, EventSender(settings.k_sink))
    return Runtime(settings=settings, store=store, catalog=catalog, dispatcher=dispatcher)
