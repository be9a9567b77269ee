"""Filesystem object store, the embedded default.

Durability: each object is written to a temp file in its target directory, fsynced, renamed
to its key (a new key each time: see :func:`~.base.instance_key`), and the directory is
fsynced, so an acknowledged object survives a crash and a reader never sees a partial one.
A crash mid-write leaves a ``.tmp-*`` file; :meth:`FileObjectStore.list_leftovers` finds it.
Blocking I/O runs in worker threads, one hop per
large chunk, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

from ..errors import NotFoundError, StoreError
from .base import READ_CHUNK, Leftover, ObjectInfo, ObjectWriter, StoredObject

_TMP_PREFIX = ".tmp-"
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
#: Coalesce small writes into one syscall (and one thread hop) per this many bytes.
_WRITE_BUFFER = 1 << 20


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or any(p in ("", ".", "..") or p.startswith(_TMP_PREFIX) for p in parts)
    ):
        raise StoreError(f"invalid object key {key!r}")
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileObjectWriter:
    """Buffers up to 1 MiB before touching the disk, so a small instance costs one trip to a
    worker thread (create, write, fsync, rename, fsync dir), a large one a trip per MiB."""

    def __init__(self, root: Path, key: str) -> None:
        self._key = key
        self._root = root
        self._final = root / key
        self._tmp = self._final.parent / f"{_TMP_PREFIX}{os.urandom(8).hex()}"
        self._fd = -1
        self._pending: list[bytes | memoryview] = []
        self._pending_size = 0
        self._size = 0
        self._created = False
        self._hash = hashlib.sha256()  # updated in the worker threads (it releases the GIL)

    async def write(self, data: bytes | memoryview) -> None:
        n = len(data)
        if not n:
            return
        self._pending.append(data)
        self._pending_size += n
        self._size += n
        if self._pending_size >= _WRITE_BUFFER or len(self._pending) >= 256:
            chunks, self._pending, self._pending_size = self._pending, [], 0
            try:
                await asyncio.to_thread(self._write_sync, chunks)
            except OSError as exc:
                await self.abort()
                raise StoreError(f"cannot write object: {exc.strerror or exc}") from exc

    def _write_sync(self, chunks: list[bytes | memoryview]) -> None:
        if self._fd < 0:
            self._fd = _create_in_dir(self._tmp, self._root)
            self._created = True
        for chunk in chunks:
            self._hash.update(chunk)
        _write_chunks(self._fd, chunks)

    async def commit(self) -> StoredObject:
        chunks, self._pending, self._pending_size = self._pending, [], 0
        try:
            etag = await asyncio.to_thread(self._commit_sync, chunks)
        except OSError as exc:
            await self.abort()
            raise StoreError(f"cannot commit object: {exc.strerror or exc}") from exc
        return StoredObject(key=self._key, size=self._size, etag=etag, digest=self._hash.hexdigest())

    def _commit_sync(self, chunks: list[bytes | memoryview]) -> str:
        self._publish_sync(chunks)
        _fsync_dir(self._final.parent)
        return _etag(self._final)

    def _publish_sync(self, chunks: list[bytes | memoryview]) -> None:
        """Write what is left, fsync the file, rename it over the key (the directory entry is
        made durable by the caller: one directory fsync can cover several objects)."""
        self._write_sync(chunks)
        os.fsync(self._fd)
        self._rename_sync()

    def _rename_sync(self) -> None:
        os.close(self._fd)
        self._fd = -1
        os.replace(self._tmp, self._final)
        self._created = False

    def _take_pending(self) -> list[bytes | memoryview]:
        chunks, self._pending, self._pending_size = self._pending, [], 0
        return chunks

    async def abort(self) -> None:
        self._pending = []
        if self._created:
            await asyncio.to_thread(self._abort_sync)

    def _abort_sync(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _write_chunks(fd: int, chunks: list[bytes | memoryview]) -> None:
    # writev may write less than asked; finish each chunk with plain writes.
    written = os.writev(fd, chunks)
    for chunk in chunks:
        n = len(chunk)
        if written >= n:
            written -= n
            continue
        view = memoryview(chunk)[written:]
        written = 0
        while view:
            view = view[os.write(fd, view) :]


def _etag(path: Path) -> str:
    st = path.stat()
    return hashlib.blake2b(f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}".encode(), digest_size=8).hexdigest()


class FileObjectStore:
    """Objects under ``root``; the key is the relative path (``/``-separated)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self._scratch = bytearray()  # page-cache reads on the event loop (see _pread_cached)
        self.bucket_name = self.root.name

    async def open_writer(self, key: str) -> FileObjectWriter:
        return FileObjectWriter(self.root, _safe_key(key))

    async def commit_all(self, writers: Sequence[ObjectWriter]) -> list[StoredObject | StoreError]:
        """Commit several objects in one worker-thread trip, fsyncing each directory once.
        Returns, per writer, its stored object or the error that made it fail (aborted)."""
        jobs: list[tuple[FileObjectWriter, list[bytes | memoryview]]] = []
        for w in writers:
            if not isinstance(w, FileObjectWriter):
                raise TypeError(f"not a writer of this store: {w!r}")
            jobs.append((w, w._take_pending()))
        return await asyncio.to_thread(_commit_many_sync, jobs)

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)  # metadata is cached: no thread trip for this
        except FileNotFoundError as exc:
            raise NotFoundError(f"object {key!r} is missing") from exc
        try:
            if end is None:
                end = os.fstat(fd).st_size  # no probe past the end (it would need a thread)
            pos = start
            while pos < end:
                want = min(READ_CHUNK, end - pos)
                chunk = _pread_cached(fd, want, pos, self._scratch)
                if chunk is None:  # not in the page cache: read it in a worker thread
                    chunk = await asyncio.to_thread(os.pread, fd, want, pos)
                if not chunk:
                    break
                pos += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise NotFoundError(f"object {key!r} is missing") from exc
        try:
            chunk = _pread_cached(fd, length, start, self._scratch)
            if chunk is not None and (len(chunk) == length or not chunk):
                return chunk
        finally:
            os.close(fd)
        try:
            return await asyncio.to_thread(_pread_file, path, start, length)
        except FileNotFoundError as exc:
            raise NotFoundError(f"object {key!r} is missing") from exc

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return
        with contextlib.suppress(OSError):
            await asyncio.to_thread(_prune_empty_dirs, path.parent, self.root)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        paths = await asyncio.to_thread(lambda: sorted(self.root.rglob("*.dcm")))
        for path in paths:
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and not path.name.startswith(_TMP_PREFIX):
                yield key

    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        found = await asyncio.to_thread(self._scan_sync, False)
        for key, size, modified in found:
            if key.startswith(prefix):
                yield ObjectInfo(key=key, size=size, modified=modified)

    async def list_leftovers(self) -> AsyncIterator[Leftover]:
        for name, _, modified in await asyncio.to_thread(self._scan_sync, True):
            yield Leftover(kind="temp file", name=name, modified=modified)

    def _scan_sync(self, temp: bool) -> list[tuple[str, int, float]]:
        out: list[tuple[str, int, float]] = []
        studies = self.root / "studies"
        for directory, _, files in os.walk(studies):
            for name in files:
                if name.startswith(_TMP_PREFIX) != temp or (not temp and not name.endswith(".dcm")):
                    continue
                path = Path(directory) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue  # removed meanwhile
                out.append((path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime))
        out.sort()
        return out

    async def remove_leftover(self, leftover: Leftover) -> None:
        parts = leftover.name.split("/")
        if any(p in ("", ".", "..") for p in parts) or not parts[-1].startswith(_TMP_PREFIX):
            raise StoreError(f"not a leftover of this store: {leftover.name!r}")
        path = self.root / leftover.name
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    async def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"data directory {self.root} is not writable")

    async def close(self) -> None:
        return None


#: How often a writer re-creates its directory that a concurrent removal pruned meanwhile.
_PRUNED_DIR_RETRIES = 16


def _create_in_dir(path: Path, root: Path) -> int:
    """Create the file ``path`` (exclusively), making its directories first. Another store
    of the same series may remove its last object there at the same moment, and with it the
    emptied directories (:func:`_prune_empty_dirs`), between our check and our create: the
    create (or a mkdir, or a directory fsync) then fails with ENOENT, and is simply done
    again. Once the file exists the directory is not empty, so it stays."""
    for attempt in range(_PRUNED_DIR_RETRIES):
        try:
            if not path.parent.is_dir():
                _make_dirs_durably(path.parent, root)
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileNotFoundError:
            if attempt == _PRUNED_DIR_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def _make_dirs_durably(directory: Path, root: Path) -> None:
    """Create the missing directories down to ``directory`` and fsync each new entry's parent,
    so a crash cannot lose the directory an acknowledged object lives in."""
    missing = []
    d = directory
    while not d.is_dir() and d != root:
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # a concurrent writer made it
        _fsync_dir(d.parent)


def _syncfs(fd: int) -> bool:
    """``syncfs(2)``: one flush of the whole filesystem instead of an fsync per file (about
    half the cost per object for a batch, measured here). False where it is unavailable."""
    syncfs = _libc_syncfs()
    return syncfs is not None and syncfs(fd) == 0


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    try:
        fn: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
        return fn
    except (OSError, AttributeError):
        return None


def _commit_many_sync(
    jobs: list[tuple[FileObjectWriter, list[bytes | memoryview]]],
) -> list[StoredObject | StoreError]:
    """Group commit: write every object's tail, make all their data durable with one syncfs
    (per-file fsync where that fails), and only then rename them over their keys, so a
    crash can never leave a half-written file under a key an acknowledged store put there."""
    errors: dict[int, StoreError] = {}
    for i, (writer, chunks) in enumerate(jobs):
        try:
            writer._write_sync(chunks)
        except OSError as exc:
            writer._abort_sync()
            errors[i] = StoreError(f"cannot write object: {exc.strerror or exc}")
    open_fds = [w._fd for i, (w, _) in enumerate(jobs) if i not in errors]
    synced = len(open_fds) > 1 and _syncfs(open_fds[0])
    results: list[StoredObject | StoreError] = []
    published: list[FileObjectWriter] = []
    for i, (writer, _) in enumerate(jobs):
        if i in errors:
            results.append(errors[i])
            continue
        try:
            if not synced:
                os.fsync(writer._fd)
            writer._rename_sync()
            published.append(writer)
            results.append(
                StoredObject(key=writer._key, size=writer._size, etag="", digest=writer._hash.hexdigest())
            )
        except OSError as exc:
            writer._abort_sync()
            results.append(StoreError(f"cannot commit object: {exc.strerror or exc}"))
    failed_dirs: dict[Path, OSError] = {}
    for directory in {w._final.parent for w in published}:
        try:
            _fsync_dir(directory)
        except OSError as exc:
            failed_dirs[directory] = exc
    for i, (writer, _) in enumerate(jobs):
        result = results[i]
        if isinstance(result, StoreError):
            continue
        error = failed_dirs.get(writer._final.parent)
        if error is not None:
            results[i] = StoreError(f"cannot commit object: {error.strerror or error}")
            continue
        results[i] = StoredObject(
            key=result.key, size=result.size, etag=_etag(writer._final), digest=result.digest
        )
    return results


def _pread_cached(fd: int, length: int, pos: int, scratch: bytearray) -> bytes | None:
    """Read from the page cache only (``RWF_NOWAIT``), right on the event loop: a hot object
    costs no thread trip; ``None`` when the data would have to come from the disk.
    ``scratch`` is reused between calls: a fresh zeroed buffer per read page-faults."""
    if _NOWAIT is None:
        return None
    if len(scratch) < length:
        scratch.extend(bytes(length - len(scratch)))
    with memoryview(scratch) as view:  # released on exit: scratch stays resizable
        try:
            n = os.preadv(fd, [view[:length]], pos, _NOWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                return None
            raise
        if n == 0 and length:
            # EOF, or nothing cached at pos: only a blocking read can tell them apart.
            return None
        return bytes(view[:n])


def _pread_file(path: Path, start: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        out = bytearray()
        while len(out) < length:
            chunk = os.pread(fd, length - len(out), start + len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)
    finally:
        os.close(fd)


def _prune_empty_dirs(directory: Path, root: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent
