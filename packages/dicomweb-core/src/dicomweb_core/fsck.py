"""``dicomweb fsck``: check that the catalog and the object store agree; ``--repair``
removes garbage (never anything a row references).

Reported: rows whose object is missing (data lost: never repairable by removing things),
objects no row references, garbage records not yet processed, temp files and incomplete
S3 multipart uploads. Things younger than the grace period (``--grace``, default
``SWEEP_GRACE_SECONDS``) may belong to an upload in flight and are only counted.
Exit status: 0 consistent, 1 inconsistencies left, 2 configuration error.
"""

from __future__ import annotations

import time
from typing import TextIO

from .catalog.base import CatalogWriter
from .stores.base import MaintainedStore
from .sweep import SweepReport, sweep


async def fsck(store: MaintainedStore, catalog: CatalogWriter, *, grace: float, repair: bool) -> SweepReport:
    """Check (and with ``repair``, clean) ``store`` against ``catalog`` (both opened)."""
    return await sweep(store, catalog, cutoff=time.time() - grace, repair=repair, check_rows=True)


def write_report(report: SweepReport, out: TextIO, *, repair: bool) -> None:
    lines = [
        f"rows without objects: {len(report.rows_without_objects)}",
        f"unreferenced objects: {len(report.unreferenced)}",
        f"garbage records pending: {report.garbage_left}",
        f"leftovers (temp files, incomplete uploads): {len(report.leftovers)}",
        f"young (within the grace period, left alone): {len(report.young)} objects,"
        f" {report.young_leftovers} leftovers",
    ]
    if repair:
        lines.append(
            f"removed: {report.garbage_removed} garbage objects, {report.removed_unreferenced}"
            f" unreferenced objects, {report.removed_leftovers} leftovers"
        )
    for key in report.rows_without_objects:
        lines.append(f"MISSING {key}")
    for key in report.unreferenced:
        lines.append(f"UNREFERENCED {key}")
    for leftover in report.leftovers:
        lines.append(f"LEFTOVER {leftover.kind} {leftover.name.replace(chr(0), ' ')}")
    out.write("\n".join(lines) + "\n")
