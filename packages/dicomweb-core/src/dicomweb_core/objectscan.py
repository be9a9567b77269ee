"""Catalog records from stored objects, reading headers only (ranged reads).

Used by ``dicomweb reindex`` (rebuild a lost catalog from the bucket) and by the remote
catalog (the Alvearie query API knows where an object is, not its metadata or offsets).

The first ``first_read`` bytes are read; while the scanner has not reached Pixel Data the
next read doubles, up to the header cap. After the header, native pixel data is only
*counted* by the scanner, so its bytes are not fetched: zeros of the same length stand in
for them. Encapsulated pixel data is walked item by item (frame offsets come from the item
headers, spread through the value), so its remainder is streamed through the scanner.

The scanned record passes the same pixel-data check as STOW (:func:`~.pixelcheck.check_scan`):
an object whose header lies about its pixel data (a frame count out of range, native pixel
data shorter than its geometry, fewer fragments than frames, an unknown transfer syntax) is
:class:`UncheckedObjectError`, so neither ``reindex`` nor the remote catalog serves it.
"""

from __future__ import annotations

from pydicom.uid import UID

from .errors import DicomFormatError, NotFoundError
from .models import InstanceRecord
from .pixelcheck import check_scan
from .records import PartFailure, identify, instance_record
from .scanner import DicomHeaderScanner
from .stores.base import ObjectStore, StoredObject

KiB = 1024
_ZEROS = memoryview(bytes(1 << 20))
_MAX_READ = 8 << 20


class UncheckedObjectError(NotFoundError):
    """A stored object that fails the ingest pixel-data check: not catalogued, not served."""


async def scan_object(
    store: ObjectStore,
    key: str,
    *,
    max_header_size: int = 64 << 20,
    first_read: int = 64 * KiB,
    etag: str = "",
    max_frames: int | None = 1_000_000,
) -> InstanceRecord:
    """The catalog record of the object at ``key``. Raises :class:`NotFoundError` if it is
    gone, :class:`DicomFormatError` if it is not a DICOM object we can catalogue and
    :class:`UncheckedObjectError` if it fails the pixel-data check (``max_frames``: the
    ``MAX_FRAMES`` limit; ``None`` skips the check, for tests that plant such objects)."""
    size = await store.size(key)
    if size is None:
        raise NotFoundError(f"no object {key!r}")
    scanner = DicomHeaderScanner(max_header_size=max_header_size)
    fed = 0
    want = first_read
    while fed < size and not scanner.header_done:
        data = await store.read_range(key, fed, min(want, size - fed))
        if not data:
            break
        scanner.feed(data)
        fed += len(data)
        want = min(want * 2, _MAX_READ)
    if fed < size:
        ts = str(getattr(scanner.dataset().file_meta, "TransferSyntaxUID", ""))
        if UID(ts).is_encapsulated:
            async for chunk in store.read(key, fed):
                scanner.feed(chunk)
        else:
            remaining = size - fed
            while remaining:
                piece = _ZEROS[: min(len(_ZEROS), remaining)]
                scanner.feed(piece)
                remaining -= len(piece)
    result = scanner.finish()
    try:
        ids = identify(result.dataset)
    except PartFailure as exc:
        raise DicomFormatError(f"{key}: {exc.reason}") from exc
    if max_frames is not None and (problem := check_scan(result, max_frames=max_frames)):
        raise UncheckedObjectError(f"{key}: fails the pixel-data check: {problem.reason}")
    record, _ = instance_record(result, ids, StoredObject(key=key, size=size, etag=etag))
    return record
