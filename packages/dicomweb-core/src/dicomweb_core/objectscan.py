"""Catalog records from stored objects, reading headers only (ranged reads).

Used by ``dicomweb reindex`` (rebuild a lost catalog from the bucket) and by the remote
catalog (the Alvearie query API knows where an object is, not its metadata or offsets).

The first ``first_read`` bytes are read; while the scanner has not reached Pixel Data the
next read doubles, up to the header cap. After the header, native pixel data is only
*counted* by the scanner, so its bytes are not fetched: zeros of the same length stand in
for them. Encapsulated pixel data is walked item by item (frame offsets come from the item
headers, spread through the value), so its remainder is streamed through the scanner.
"""

from __future__ import annotations

from pydicom.uid import UID

from .errors import DicomFormatError, NotFoundError
from .models import InstanceRecord
from .records import PartFailure, identify, instance_record
from .scanner import DicomHeaderScanner
from .stores.base import ObjectStore, StoredObject

KiB = 1024
_ZEROS = memoryview(bytes(1 << 20))
_MAX_READ = 8 << 20


async def scan_object(
    store: ObjectStore,
    key: str,
    *,
    max_header_size: int = 64 << 20,
    first_read: int = 64 * KiB,
    etag: str = "",
) -> InstanceRecord:
    """The catalog record of the object at ``key``. Raises :class:`NotFoundError` if it is
    gone and :class:`DicomFormatError` if it is not a DICOM object we can catalogue."""
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
    record, _ = instance_record(result, ids, StoredObject(key=key, size=size, etag=etag))
    return record
