"""``dicomweb reindex``: rebuild the catalog from the objects in the store.

Every object under the prefix is scanned with ranged reads of its header
(:func:`~.objectscan.scan_object`) and upserted into the catalog, in batches, without
events. Keys sort by revision (oldest first), so when several stored revisions of one
instance remain (garbage not yet removed) the newest one ends up in the row and the
others are recorded as garbage (the objects were announced when they were stored). Losing the catalog database
therefore loses nothing but time. Objects that are not DICOM, or whose header lies about
their pixel data (the check STOW runs, :mod:`.pixelcheck`), are reported and skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .catalog.base import CatalogWriter
from .errors import DicomwebError
from .models import InstanceRecord
from .objectscan import UncheckedObjectError, scan_object
from .stores.base import ObjectStore

log = logging.getLogger("dicomweb.reindex")


@dataclass
class ReindexReport:
    indexed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: The skipped objects that are DICOM but fail the pixel-data check (also in ``skipped``).
    refused: list[tuple[str, str]] = field(default_factory=list)


async def reindex(
    store: ObjectStore,
    catalog: CatalogWriter,
    *,
    prefix: str = "studies/",
    max_header_size: int = 64 << 20,
    concurrency: int = 8,
    batch: int = 200,
    max_frames: int | None = 1_000_000,
) -> ReindexReport:
    """Scan every object under ``prefix`` into ``catalog`` (opened by the caller)."""
    report = ReindexReport()
    slots = asyncio.Semaphore(concurrency)

    async def scan(key: str) -> InstanceRecord | None:
        async with slots:
            try:
                return await scan_object(store, key, max_header_size=max_header_size, max_frames=max_frames)
            except DicomwebError as exc:
                log.warning("skipped %s: %s", key, exc.reason)
                report.skipped.append((key, exc.reason))
                if isinstance(exc, UncheckedObjectError):
                    report.refused.append((key, exc.reason))
                return None

    async for keys in _batches(store.list_keys(prefix), batch):
        records = [r for r in await asyncio.gather(*(scan(k) for k in keys)) if r is not None]
        if records:
            await catalog.upsert_instances(records)
            report.indexed += len(records)
            log.info("reindexed %d objects", report.indexed)
    return report


async def _batches(keys: AsyncIterator[str], size: int) -> AsyncIterator[list[str]]:
    pending: list[str] = []
    async for key in keys:
        pending.append(key)
        if len(pending) == size:
            yield pending
            pending = []
    if pending:
        yield pending
