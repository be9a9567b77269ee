"""Where a 0.5 MB instance's STOW CPU goes: each step of the pipeline alone, then the whole
pipeline in-process (no HTTP), on the file store + SQLite catalog in a temp dir.

    .venv/bin/python -m benchmarks.bench_stow_cpu [--instances 300]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from dicomweb_core.config import load_settings
from dicomweb_core.dicomjson import dumps, to_dicom_json
from dicomweb_core.ingest import StowPipeline
from dicomweb_core.multipart import MultipartRelatedReader, boundary_from_content_type
from dicomweb_core.runtime import build_runtime
from dicomweb_core.scanner import DicomHeaderScanner, ScanResult
from tests.dicomfiles import make_instance, multipart_related, uid

CHUNK = 65536


def cpu_ms(n: int, fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return (time.process_time() - start) / n * 1e3


async def pipeline(requests: list[tuple[bytes, str]], n: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = build_runtime(load_settings({}, data_dir=Path(tmp)))
        await runtime.start()
        try:
            stow = StowPipeline(runtime.store, runtime.writer, runtime.ingest_options)

            async def body(data: bytes) -> AsyncIterator[bytes]:
                for i in range(0, len(data), CHUNK):
                    yield data[i : i + CHUNK]

            before = os.times()
            for data, ctype in requests:
                outcome = await stow.run(body(data), boundary_from_content_type(ctype), None)
                assert not outcome.failed, outcome.failed
            after = os.times()
        finally:
            await runtime.stop()
    user, system = (after.user - before.user) / n * 1e3, (after.system - before.system) / n * 1e3
    return user + system, user, system


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_stow_cpu", description=__doc__)
    parser.add_argument("--instances", type=int, default=300)
    n = parser.parse_args().instances // 10 * 10
    study = uid()
    blobs = [make_instance(study_uid=study, rows=512, cols=512, pixel_seed=i) for i in range(n)]
    requests = [multipart_related(blobs[i : i + 10]) for i in range(0, n, 10)]

    def read_parts() -> None:
        for data, ctype in requests:
            reader = MultipartRelatedReader(boundary_from_content_type(ctype))
            view = memoryview(data)
            for i in range(0, len(data), CHUNK):
                reader.feed(view[i : i + CHUNK])
            reader.close()

    results: list[ScanResult] = []

    def scan() -> None:
        for blob in blobs:
            scanner = DicomHeaderScanner()
            view = memoryview(blob)
            for i in range(0, len(blob), CHUNK):
                scanner.feed(view[i : i + CHUNK])
            results.append(scanner.finish())

    def encode() -> None:
        for r in results:
            dumps(
                to_dicom_json(
                    r.dataset,
                    study_uid="1.2",
                    series_uid="1.3",
                    sop_instance_uid="1.4",
                    pixel_data=r.pixel_data,
                )
            )

    def digest() -> None:
        for blob in blobs:  # as the file store feeds it: the pending chunks, in a worker thread
            h = hashlib.sha256()
            view = memoryview(blob)
            for i in range(0, len(blob), CHUNK):
                h.update(view[i : i + CHUNK])
            h.hexdigest()

    total, user, system = asyncio.run(pipeline(requests, n))
    rows = [
        ("multipart reader (64 KiB chunks)", cpu_ms(n, read_parts)),
        ("header scanner + pydicom parse of the header", cpu_ms(n, scan)),
        ("DICOM JSON (raw-element encoder) + orjson", cpu_ms(n, encode)),
        ("SHA-256 digest of the object (64 KiB updates)", cpu_ms(n, digest)),
        ("whole pipeline in-process: user", user),
        ("whole pipeline in-process: system", system),
        ("whole pipeline in-process: total", total),
    ]
    out = [
        f"{n} instances of {len(blobs[0]) / 1e6:.2f} MB, 10 per request",
        "",
        "| step | CPU ms per instance |",
        "|---|---:|",
    ]
    out += [f"| {label} | {ms:.2f} |" for label, ms in rows]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
