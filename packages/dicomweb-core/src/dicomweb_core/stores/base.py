"""The object store protocol. Keys are ``/``-separated and built only from validated UIDs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from ..uids import validate_uid

#: Chunk size for streaming reads (large: fewer syscalls, fewer ASGI messages).
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    etag: str


def instance_key(study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    """The object key of an instance. Every component is validated before it becomes a path."""
    validate_uid(study_uid, "StudyInstanceUID")
    validate_uid(series_uid, "SeriesInstanceUID")
    validate_uid(sop_instance_uid, "SOPInstanceUID")
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_instance_uid}.dcm"


class ObjectWriter(Protocol):
    """One object being written. Nothing is visible under the key before :meth:`commit`."""

    async def write(self, data: bytes | memoryview) -> None: ...

    async def commit(self) -> StoredObject:
        """Make the object durable and visible; return only once it is."""
        ...

    async def abort(self) -> None:
        """Drop everything written; leaves no trace (no temp file, no pending upload)."""
        ...


class ObjectStore(Protocol):
    #: What events call ``bucketName`` (the folder name for the file store).
    bucket_name: str

    async def open_writer(self, key: str) -> ObjectWriter: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of an object in large chunks."""
        ...

    async def read_range(self, key: str, start: int, length: int) -> bytes: ...

    async def size(self, key: str) -> int | None:
        """The object's size, or ``None`` if it does not exist."""
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; a missing object is not an error."""
        ...

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]: ...

    async def check(self) -> None:
        """Raise :class:`StoreError` if the store is not usable (for ``/readyz``)."""
        ...

    async def close(self) -> None: ...
