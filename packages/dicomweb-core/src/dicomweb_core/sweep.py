"""Removing what no row references: garbage records, unreferenced objects, leftovers.

Object keys are never reused, so anything the catalog does not reference is either on its
way in (an upload in flight, not yet committed to the catalog) or garbage: the superseded
object of a replaced or deleted row (recorded in the catalog's ``garbage`` table by the
transaction that let it go), an object whose request failed or was cut off, a temp file or
an incomplete multipart upload that a crash left. Only things older than a cutoff are
removed, so an upload in flight is never touched; something a row references never is.

:func:`sweep` serves the services' start-up sweep (bounded in time) and ``dicomweb fsck``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .catalog.base import CatalogWriter
from .errors import DicomwebError
from .stores.base import Leftover, MaintainedStore

log = logging.getLogger("dicomweb.sweep")

_BATCH = 500


@dataclass
class SweepReport:
    #: Superseded/deleted objects removed through their garbage records.
    garbage_removed: int = 0
    #: Garbage records still waiting (their object could not be removed yet).
    garbage_left: int = 0
    #: Objects no row references, older than the cutoff (removed when repairing).
    unreferenced: list[str] = field(default_factory=list)
    #: Unreferenced objects younger than the cutoff (perhaps an upload in flight): left alone.
    young: list[str] = field(default_factory=list)
    #: Temp files / incomplete multipart uploads older than the cutoff (removed when repairing).
    leftovers: list[Leftover] = field(default_factory=list)
    young_leftovers: int = 0
    #: With repair: unreferenced objects and leftovers removed.
    removed_unreferenced: int = 0
    removed_leftovers: int = 0
    #: Keys rows reference whose object is missing (``check_rows`` only; never repairable here).
    rows_without_objects: list[str] = field(default_factory=list)
    #: False when the time budget ran out before the end.
    complete: bool = True

    @property
    def problems(self) -> int:
        """Inconsistencies left (after repair, what repair could not or did not remove)."""
        return (
            len(self.rows_without_objects) + len(self.unreferenced) + len(self.leftovers) + self.garbage_left
        )


class _Budget:
    def __init__(self, seconds: float | None) -> None:
        self._deadline = None if seconds is None else time.monotonic() + seconds

    def over(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline


async def collect_garbage(
    store: MaintainedStore, catalog: CatalogWriter, budget: _Budget | None = None
) -> int:
    """Remove the objects of every garbage record, then the records. Returns how many."""
    removed = 0
    while budget is None or not budget.over():
        keys = await catalog.garbage(_BATCH)
        if not keys:
            break
        gone: list[str] = []
        for key in keys:
            try:
                await store.delete(key)
            except DicomwebError as exc:
                log.warning("garbage object %s not removed yet: %s", key, exc.reason)
                continue
            gone.append(key)
        await catalog.forget_garbage(gone)
        removed += len(gone)
        if len(gone) < len(keys):
            break  # the store refuses some: try again next time
    return removed


async def sweep(
    store: MaintainedStore,
    catalog: CatalogWriter,
    *,
    cutoff: float,
    repair: bool,
    seconds: float | None = None,
    check_rows: bool = False,
) -> SweepReport:
    """Find (and with ``repair``, remove) what no row references and is older than ``cutoff``
    (epoch seconds). ``seconds`` bounds the time spent; ``check_rows`` also lists every
    stored key to find rows whose object is missing (``fsck``)."""
    report = SweepReport()
    budget = _Budget(seconds)
    if repair:
        report.garbage_removed = await collect_garbage(store, catalog, budget)
    report.garbage_left = len(await catalog.garbage(_BATCH))
    listed: set[str] = set()
    batch: list[tuple[str, float]] = []

    async def settle(batch: list[tuple[str, float]]) -> None:
        referenced = await catalog.referenced_keys([k for k, _ in batch])
        for key, modified in batch:
            if key in referenced:
                continue
            if modified >= cutoff:
                report.young.append(key)
                continue
            if repair:
                # Checked again right before removing: a row may have taken it meanwhile.
                if await catalog.referenced_keys([key]):
                    continue
                await store.delete(key)
                report.removed_unreferenced += 1
            else:
                report.unreferenced.append(key)

    async for info in store.list_objects("studies/"):
        if budget.over():
            report.complete = False
            break
        if check_rows:
            listed.add(info.key)
        batch.append((info.key, info.modified))
        if len(batch) >= _BATCH:
            await settle(batch)
            batch = []
    if batch:
        await settle(batch)
    async for leftover in store.list_leftovers():
        if budget.over():
            report.complete = False
            break
        if leftover.modified >= cutoff:
            report.young_leftovers += 1
        elif repair:
            await store.remove_leftover(leftover)
            report.removed_leftovers += 1
        else:
            report.leftovers.append(leftover)
    if check_rows and report.complete:
        async for keys in catalog.all_object_keys():
            report.rows_without_objects.extend(k for k in keys if k not in listed)
        # Listed before the rows were read: an object stored in between is not missing.
        for key in list(report.rows_without_objects):
            if await store.size(key) is not None:
                report.rows_without_objects.remove(key)
    return report
