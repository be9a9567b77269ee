"""Shared pieces of the abuse tests: the server under attack, hostile instances, the watch.

:class:`Watch` samples the server's resident memory from ``/proc`` and, from a second
client, the latency of ``/healthz`` (served by the same event loop as everything else)
while an attack runs. Its numbers are printed (``pytest -s``) and asserted by the tests.
"""

from __future__ import annotations

import asyncio
import functools
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tests.dicomfiles import make_dataset, to_bytes
from tests.servers import ServiceProcess

#: Short timeouts so that the tests see the server cut connections quickly.
ABUSE_ENV = {
    "HEADER_TIMEOUT": "2",
    "BODY_IDLE_TIMEOUT": "2",
    "SEND_IDLE_TIMEOUT": "3",
    "DECODE_CONCURRENCY": "1",  # the default on a 2-core machine; fixed so the bounds hold anywhere
}


@dataclass
class Watch:
    """RSS and event-loop responsiveness of ``server`` while the ``with`` block runs."""

    server: ServiceProcess
    name: str
    interval: float = 0.05
    rss_start_mib: float = 0.0
    rss_peak_mib: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Watch:
        self.rss_start_mib = self.rss_peak_mib = sum(self.server.rss_kib().values()) / 1024
        self._threads = [
            threading.Thread(target=self._rss, daemon=True),
            threading.Thread(target=self._probe, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        sys.stderr.write(f"\n[abuse] {self.report()}\n")

    def _rss(self) -> None:
        while not self._stop.is_set():
            try:
                self.rss_peak_mib = max(self.rss_peak_mib, sum(self.server.rss_kib().values()) / 1024)
            except (OSError, ValueError):
                pass
            self._stop.wait(self.interval)

    def _probe(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                start = time.monotonic()
                try:
                    status = client.get(self.server.base + "/healthz").status_code
                    if status != 200:
                        self.failures.append(f"healthz {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.latencies.append(time.monotonic() - start)
                self._stop.wait(0.1)

    @property
    def growth_mib(self) -> float:
        return self.rss_peak_mib - self.rss_start_mib

    @property
    def max_latency(self) -> float:
        return max(self.latencies, default=0.0)

    def report(self) -> str:
        return (
            f"{self.name}: RSS {self.rss_start_mib:.0f} -> peak {self.rss_peak_mib:.0f} MiB"
            f" (+{self.growth_mib:.0f}), /healthz max {self.max_latency * 1000:.0f} ms over"
            f" {len(self.latencies)} probes, failures {len(self.failures)}"
        )

    def assert_held(self, *, max_growth_mib: float, max_latency: float = 1.0) -> None:
        assert not self.failures, self.failures[:3]
        assert len(self.latencies) >= 3, self.report()
        assert self.max_latency < max_latency, self.report()
        assert self.growth_mib < max_growth_mib, self.report()


@functools.cache
def hostile_instances() -> dict[str, bytes]:
    """Instances whose headers lie about their pixel data (refused by STOW today; they reach
    the catalog only through ``dicomweb reindex`` of a folder, or from an older version)."""
    huge = make_dataset(rows=2, cols=2, bits=8)
    huge.NumberOfFrames = 2147483647
    huge.PixelData = bytes(32)
    short = make_dataset(rows=4, cols=4, bits=16)
    short.Rows, short.Columns = 512, 512
    short.PixelData = bytes(32)
    return {"huge-frame-count": to_bytes(huge), "short-pixel-data": to_bytes(short)}


def plant(data_dir: Path, blobs: list[bytes]) -> None:
    """Put objects into a file store folder and catalogue them as an older version did (or a
    catalog written before the ingest pixel-data check): ``dicomweb reindex`` now refuses
    them, so this is the same rebuild with that check off."""
    import pydicom

    from dicomweb_core.config import load_settings
    from dicomweb_core.reindex import reindex
    from dicomweb_core.runtime import build_database_catalog, build_store

    for blob in blobs:
        ds = pydicom.dcmread(__import__("io").BytesIO(blob), stop_before_pixels=True)
        key = f"studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}.dcm"
        path = data_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    settings = load_settings({"DICOMWEB_DATA_DIR": str(data_dir.resolve())})
    catalog, store = build_database_catalog(settings), build_store(settings)

    async def run() -> None:
        await catalog.open()
        try:
            report = await reindex(store, catalog, max_frames=None)
        finally:
            await catalog.close()
            await store.close()
        assert report.indexed == len(blobs), report.skipped

    asyncio.run(run())


def big_instance(*, rows: int, cols: int, bits: int, implicit: bool) -> tuple[bytes, Iterator[bytes], int]:
    """A one-frame instance of rows x cols, its pixel data generated in 1 MiB chunks."""
    ds = make_dataset(
        rows=2,
        cols=2,
        bits=bits,
        transfer_syntax=ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian,
    )
    ds.Rows, ds.Columns = rows, cols
    del ds.PixelData
    size = rows * cols * (bits // 8)
    if implicit:
        element = b"\xe0\x7f\x10\x00" + struct.pack("<I", size)
    else:
        element = (
            b"\xe0\x7f\x10\x00" + (b"OW" if bits == 16 else b"OB") + b"\x00\x00" + struct.pack("<I", size)
        )
    header = to_bytes(ds) + element
    pattern = bytes(range(256)) * 4096

    def pixels() -> Iterator[bytes]:
        left = size
        while left:
            n = min(left, len(pattern))
            yield pattern[:n]
            left -= n

    return header, pixels(), len(header) + size


def stow_stream(server: ServiceProcess, header: bytes, body: Iterator[bytes]) -> dict[str, object]:
    from tests.dicomfiles import streamed_multipart

    resp = httpx.post(
        server.base + "/dicomweb/studies",
        content=streamed_multipart(header, body, boundary="abuse"),
        headers={"content-type": 'multipart/related; type="application/dicom"; boundary=abuse'},
        timeout=300,
    )
    assert resp.status_code == 200, resp.text
    item = resp.json()["00081199"]["Value"][0]
    return {"url": item["00081190"]["Value"][0]}


async def hold_open(host: str, port: int, count: int, payload: bytes, seconds: float) -> list[float]:
    """``count`` connections that send ``payload`` and then nothing; how long each stayed open
    (closed by the server), capped at ``seconds``."""

    async def one() -> float:
        start = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(payload)
        try:
            async with asyncio.timeout(seconds):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            pass
        finally:
            writer.close()
        return time.monotonic() - start

    return list(await asyncio.gather(*(one() for _ in range(count))))
