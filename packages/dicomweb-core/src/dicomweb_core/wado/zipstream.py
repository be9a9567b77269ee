"""A streamed ZIP (``application/zip``) of stored instances.

:mod:`zipfile` writes to unseekable streams by itself (data descriptors after each entry,
ZIP64 when needed); it is given a sink that only collects what it writes, and the sink is
drained after every chunk. Entries are stored, not deflated: DICOM pixel data is mostly
incompressible or already compressed, and storing keeps the server at store speed.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable

from ..models import InstanceRecord

#: Entries above this size are written with ZIP64 headers (the size is known beforehand).
_ZIP64_FROM = (1 << 32) - (1 << 20)


class _Sink:
    """A write-only, unseekable file object that buffers until drained."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._pos = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        return None

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def entry_name(record: InstanceRecord) -> str:
    return f"{record.study_uid}/{record.series_uid}/{record.sop_instance_uid}.dcm"


async def zip_stream(
    records: Iterable[InstanceRecord], read: Callable[[str], AsyncIterator[bytes]]
) -> AsyncIterator[bytes]:
    """The ZIP bytes of ``records``, reading each object through ``read(object_key)``."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)  # type: ignore[call-overload]
    for record in records:
        info = zipfile.ZipInfo(entry_name(record), date_time=time.gmtime(record.created or time.time())[:6])
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = record.size
        with archive.open(info, mode="w", force_zip64=record.size >= _ZIP64_FROM) as entry:
            async for chunk in read(record.object_key):
                entry.write(chunk)
                data = sink.drain()
                if data:
                    yield data
        data = sink.drain()
        if data:
            yield data
    archive.close()
    yield sink.drain()
