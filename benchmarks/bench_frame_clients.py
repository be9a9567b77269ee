"""Warm frame latency as different clients see it: frame 150 of a 200-frame 512x512 16-bit
instance, OHIF's Accept, 40 requests on one connection, against ``dicomweb serve`` with one
and with two worker processes; httpx's sync and async clients.

    .venv/bin/python -m benchmarks.bench_frame_clients
"""

from __future__ import annotations

import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pydicom

from tests.dicomfiles import make_instance, multipart_related
from tests.servers import ServiceProcess

ACCEPT = {
    "accept": "multipart/related; type=application/octet-stream; transfer-syntax=*",
    "accept-encoding": "identity",
}
REQUESTS = 40


async def async_p50(url: str) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        times = []
        for _ in range(REQUESTS):
            start = time.perf_counter()
            resp = await client.get(url, headers=ACCEPT)
            times.append((time.perf_counter() - start) * 1e3)
            assert resp.status_code == 200
    return statistics.median(times)


def sync_p50(url: str) -> float:
    with httpx.Client(timeout=30) as client:
        times = []
        for _ in range(REQUESTS):
            start = time.perf_counter()
            resp = client.get(url, headers=ACCEPT)
            times.append((time.perf_counter() - start) * 1e3)
            assert resp.status_code == 200
    return statistics.median(times)


def main() -> int:
    blob = make_instance(rows=512, cols=512, frames=200)
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    body, ctype = multipart_related([blob])
    rows = ["| client | `serve --workers 1` | `serve --workers 2` |", "|---|---:|---:|"]
    results: dict[str, list[float]] = {"httpx sync client": [], "httpx async client": []}
    for workers in ("1", "2"):
        with tempfile.TemporaryDirectory() as tmp:
            server = ServiceProcess(
                "serve", args=["--data-dir", f"{tmp}/data", "--workers", workers], log_path=Path(tmp) / "log"
            ).start()
            try:
                resp = httpx.post(
                    server.base + "/dicomweb/studies",
                    content=body,
                    headers={"content-type": ctype},
                    timeout=60,
                )
                assert resp.status_code == 200, resp.text
                url = (
                    f"{server.base}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                    f"/instances/{ds.SOPInstanceUID}/frames/150"
                )
                time.sleep(2)  # let the workers finish loading
                results["httpx sync client"].append(sync_p50(url))
                results["httpx async client"].append(asyncio.run(async_p50(url)))
            finally:
                server.stop()
    rows += [f"| {name} | {a:.2f} ms | {b:.2f} ms |" for name, (a, b) in results.items()]
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
