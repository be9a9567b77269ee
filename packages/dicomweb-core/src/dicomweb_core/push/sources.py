"""What ``dicomweb push`` sends: files found under the given paths, and the members of
``.zip`` / ``.tar`` / ``.tar.gz`` (``.tgz``, ``.tar.bz2``, ``.tar.xz``) archives, read in place.

Nothing is read into memory whole. A plain file or an uncompressed tar member is read at its
offset through its own file handle; a zip member through the archive's shared ``ZipFile``
(thread-safe for reads); a member of a compressed tar cannot be reached without
decompressing what comes before it, so the archive is read once, in order, and each member
is spooled (up to 1 MiB in memory, the rest in a temporary file) just before it is sent. An
archive inside an archive is copied to a temporary file first and then read like any other.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Protocol

_ZIP = (".zip",)
_PLAIN_TAR = (".tar",)
_COMPRESSED_TAR = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_SPOOL_IN_MEMORY = 1 << 20
_COPY_CHUNK = 1 << 20


def archive_kind(name: str) -> str | None:
    """``zip``, ``tar`` or ``tar-compressed`` by the name's suffix, else None."""
    lower = name.lower()
    if lower.endswith(_ZIP):
        return "zip"
    if lower.endswith(_PLAIN_TAR):
        return "tar"
    if lower.endswith(_COMPRESSED_TAR):
        return "tar-compressed"
    return None


class Source(Protocol):
    """Opens the bytes of one item; ``release`` frees what a spooled member holds."""

    def open(self) -> IO[bytes]: ...

    def release(self) -> None: ...


@dataclass(frozen=True)
class Item:
    """One candidate instance. ``key`` names it in the journal: the file's absolute path, or
    ``archive!member`` (``!`` again for an archive inside an archive)."""

    key: str
    size: int
    mtime_ns: int
    source: Source = field(compare=False, repr=False)


@dataclass(frozen=True)
class Skipped:
    """Something found under the paths that is not sent (unreadable, broken archive)."""

    key: str
    reason: str


class FileSource:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(self) -> IO[bytes]:
        return self.path.open("rb")

    def release(self) -> None:
        pass


class _Slice(io.RawIOBase):
    """``length`` bytes of ``f`` from ``start``: a seekable view of an uncompressed tar member."""

    def __init__(self, f: IO[bytes], start: int, length: int) -> None:
        self._f, self._start, self._length, self._pos = f, start, length, 0
        self.name = f"{f.name}@{start}"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        self._f.seek(self._start + self._pos)
        data = self._f.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._f.close()
        super().close()


class TarSliceSource:
    def __init__(self, archive: Path, offset: int, size: int) -> None:
        self.archive, self.offset, self.size = archive, offset, size

    def open(self) -> IO[bytes]:
        raw = _Slice(self.archive.open("rb"), self.offset, self.size)
        return io.BufferedReader(raw, buffer_size=1 << 16)

    def release(self) -> None:
        pass


class ZipMemberSource:
    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self.archive, self.name = archive, name

    def open(self) -> IO[bytes]:
        return self.archive.open(self.name)

    def release(self) -> None:
        pass


class _Borrowed(io.RawIOBase):
    """A view of a spooled member whose ``close`` leaves the spool open (a retry re-reads it)."""

    def __init__(self, spool: IO[bytes], name: str) -> None:
        self._spool = spool
        self.name = name
        spool.seek(0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._spool.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._spool.seek(offset, whence)

    def tell(self) -> int:
        return self._spool.tell()


class TarStream:
    """A compressed tar read once, in order; ``spool(name)`` moves forward to that member."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._lock = threading.Lock()

    def spool(self, name: str) -> IO[bytes]:
        with self._lock:
            if self._tar is None:
                self._tar = tarfile.open(self.path, mode="r:*")  # noqa: SIM115 - closed by close()
            for member in self._tar:
                if member.name != name:
                    continue
                src = self._tar.extractfile(member)
                if src is None:
                    break
                spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
                with src:
                    shutil.copyfileobj(src, spool, _COPY_CHUNK)
                return spool
            raise OSError(f"{name}: not found reading {self.path} in order")

    def close(self) -> None:
        with self._lock:
            if self._tar is not None:
                self._tar.close()
                self._tar = None


class SpooledTarMemberSource:
    def __init__(self, stream: TarStream, name: str) -> None:
        self.stream, self.name = stream, name
        self._spool: IO[bytes] | None = None

    def open(self) -> IO[bytes]:
        if self._spool is None:
            self._spool = self.stream.spool(self.name)
        return _Borrowed(self._spool, self.name)  # type: ignore[return-value]

    def release(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


@dataclass
class Walk:
    """The result of walking the paths; ``close`` releases archives and temporary copies."""

    items: list[Item] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    _closers: list[zipfile.ZipFile | TarStream] = field(default_factory=list)
    _tmpdir: tempfile.TemporaryDirectory[str] | None = None

    def close(self) -> None:
        for closer in self._closers:
            closer.close()
        self._closers.clear()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def _tmp(self) -> Path:
        if self._tmpdir is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="dicomweb-push-")
        return Path(self._tmpdir.name)


def walk(paths: Sequence[Path]) -> Walk:
    """Every file under ``paths`` (recursively, in sorted order) and every archive member."""
    result = Walk()
    for path in paths:
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    _add_file(result, Path(root) / name)
        elif path.exists():
            _add_file(result, path)
        else:
            result.skipped.append(Skipped(str(path), "no such file or directory"))
    return result


def _add_file(result: Walk, path: Path) -> None:
    path = path.absolute()
    try:
        st = path.stat()
    except OSError as exc:
        result.skipped.append(Skipped(str(path), f"cannot read: {exc.strerror}"))
        return
    if not path.is_file():
        return
    kind = archive_kind(path.name)
    if kind is None:
        result.items.append(Item(str(path), st.st_size, st.st_mtime_ns, FileSource(path)))
        return
    try:
        _add_archive(result, path, str(path), kind)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        result.skipped.append(Skipped(str(path), f"unreadable archive: {exc}"))


def _add_archive(result: Walk, path: Path, key: str, kind: str) -> None:
    if kind == "zip":
        zf = zipfile.ZipFile(path)
        result._closers.append(zf)
        for info in zf.infolist():
            if info.is_dir():
                continue
            member_key = f"{key}!{info.filename}"
            mtime_ns = _zip_mtime_ns(info)
            nested = archive_kind(info.filename)
            if nested is not None:
                _add_nested(result, member_key, nested, partial(_copy_zip_member, zf, info))
                continue
            result.items.append(
                Item(member_key, info.file_size, mtime_ns, ZipMemberSource(zf, info.filename))
            )
        return
    with tarfile.open(path, mode="r:*") as tf:
        members = [m for m in tf.getmembers() if m.isfile()]
    stream: TarStream | None = None
    if kind == "tar-compressed":
        stream = TarStream(path)
        result._closers.append(stream)
    for m in members:
        member_key = f"{key}!{m.name}"
        nested = archive_kind(m.name)
        if nested is not None:
            _add_nested(result, member_key, nested, partial(_copy_tar_member, path, m))
            continue
        source: Source = (
            SpooledTarMemberSource(stream, m.name)
            if stream is not None
            else TarSliceSource(path, m.offset_data, m.size)
        )
        result.items.append(Item(member_key, m.size, int(m.mtime) * 1_000_000_000, source))


def _copy_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dst: IO[bytes]) -> None:
    with zf.open(info) as src:
        shutil.copyfileobj(src, dst, _COPY_CHUNK)


def _copy_tar_member(archive: Path, member: tarfile.TarInfo, dst: IO[bytes]) -> None:
    with tarfile.open(archive, mode="r:*") as tf:
        src = tf.extractfile(member.name)
        if src is None:
            raise OSError(f"{member.name}: not a regular file")
        with src:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)


def _add_nested(result: Walk, key: str, kind: str, copy: Callable[[IO[bytes]], None]) -> None:
    """Copy an archive found inside an archive to a temporary file, then read it in place."""
    tmpdir = result._tmp()
    tmp = tmpdir / f"{sum(1 for _ in tmpdir.iterdir())}-{Path(key).name}"
    try:
        with tmp.open("wb") as dst:
            copy(dst)
        _add_archive(result, tmp, key, kind)
    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        result.skipped.append(Skipped(key, f"unreadable archive: {exc}"))


def _zip_mtime_ns(info: zipfile.ZipInfo) -> int:
    import datetime

    try:
        stamp = datetime.datetime(*info.date_time, tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0
    return int(stamp) * 1_000_000_000


def iter_chunks(f: IO[bytes], size: int, chunk: int) -> Iterator[bytes]:
    """Exactly ``size`` bytes of ``f`` in chunks; a shorter file raises (it changed under us)."""
    left = size
    while left:
        data = f.read(min(chunk, left))
        if not data:
            raise OSError(f"file shrank while being sent ({size - left} of {size} bytes)")
        left -= len(data)
        yield data
