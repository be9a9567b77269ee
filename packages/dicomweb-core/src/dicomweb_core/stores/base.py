"""The object store protocol. Keys are ``/``-separated and built only from validated UIDs.

Keys are never reused: every store of an instance writes a new key (the UID path plus a
revision), so an object that a catalog row describes is never overwritten; the catalog
switches the row to the new key and the superseded object is removed after that commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import StoreError
from ..uids import validate_uid

#: Chunk size for streaming reads (large: fewer syscalls, fewer ASGI messages).
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    etag: str
    #: SHA-256 of the object's bytes (hex), computed while writing.
    digest: str = ""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A listed object: ``modified`` is its last-modified time (epoch seconds)."""

    key: str
    size: int
    modified: float


@dataclass(frozen=True, slots=True)
class Leftover:
    """Something an interrupted write left behind: a temp file or an incomplete multipart
    upload. ``name`` identifies it to :meth:`ObjectStoreMaintenance.remove_leftover`."""

    kind: str
    name: str
    modified: float


def new_revision() -> str:
    """A never-reused revision: nanoseconds since the epoch (fixed width, so keys of one
    instance sort by age) and 32 random bits (two stores in the same nanosecond differ)."""
    return f"{time.time_ns():016x}{os.urandom(4).hex()}"


def instance_key(study_uid: str, series_uid: str, sop_instance_uid: str, revision: str) -> str:
    """The object key of one store of an instance. Every component is validated before it
    becomes a path; ``revision`` comes from :func:`new_revision` (hex only)."""
    validate_uid(study_uid, "StudyInstanceUID")
    validate_uid(series_uid, "SeriesInstanceUID")
    validate_uid(sop_instance_uid, "SOPInstanceUID")
    if not revision or not all(c in "0123456789abcdef" for c in revision):
        raise ValueError(f"bad revision {revision!r}")
    return f"studies/{study_uid}/series/{series_uid}/instances/{sop_instance_uid}.{revision}.dcm"


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

    async def commit_all(self, writers: Sequence[ObjectWriter]) -> list[StoredObject | StoreError]:
        """Commit several writers of this store together (the file store: one worker-thread
        trip and one flush; S3: concurrently). Per writer, its object or why it failed."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of an object in large chunks; raises
        :class:`NotFoundError` if it does not exist."""
        ...

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)``; raises :class:`NotFoundError` if the object is gone."""
        ...

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


class ObjectStoreMaintenance(Protocol):
    """What the start-up sweep and ``dicomweb fsck`` need besides :class:`ObjectStore`."""

    def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every committed object under ``prefix`` (no temp files, no pending uploads)."""
        ...

    def list_leftovers(self) -> AsyncIterator[Leftover]:
        """Temp files / incomplete multipart uploads that interrupted writes left behind."""
        ...

    async def remove_leftover(self, leftover: Leftover) -> None: ...

    async def delete(self, key: str) -> None: ...


class MaintainedStore(ObjectStore, ObjectStoreMaintenance, Protocol):
    """A store that can also be swept and checked (both built-in stores)."""
