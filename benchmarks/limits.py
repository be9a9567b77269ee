"""Physical limits of this machine, measured with the same client as the benchmarks.

- Loopback HTTP upload to a do-nothing sink (a raw asyncio server in its own
  process that reads and discards the body): the most any STOW can reach here
  with this client, at c=1 and c=8, with STOW-sized (10 x 0.5 MB) bodies.
- Sequential disk write with one fsync at the end, and 0.5 MB files each written,
  fsynced and renamed (what a durable STOW does per instance), in the directory the
  servers store into.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from benchmarks.client import new_client, run_concurrently
from benchmarks.servers import HOST, ChildProcess, free_port

CHUNK = 8 * 1024 * 1024
BODY = 10 * 525_000  # ten 512x512 16-bit slices


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while length:
                chunk = await reader.read(min(length, 1 << 20))
                if not chunk:
                    return
                length -= len(chunk)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_sink(port: int) -> None:
    server = await asyncio.start_server(_handle, HOST, port)
    async with server:
        await server.serve_forever()


async def upload_limit(total: int, concurrency: int) -> float:
    """MB/s of POSTing ``total`` bytes in BODY-sized requests to a sink in another process."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        proc = ChildProcess("sink", Path(tmp))
        proc.spawn(
            [sys.executable, "-m", "benchmarks.limits", "--sink", str(port)],
            {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        try:
            await _wait_port(port)
            body = os.urandom(BODY)
            n = max(concurrency, total // BODY)
            async with new_client(concurrency) as client:
                url = f"http://{HOST}:{port}/sink"
                jobs = [partial(client.post, url, content=body) for _ in range(n)]
                wall, answers = await run_concurrently(jobs, concurrency)
            if any(a.response.status_code != 200 for a in answers):
                raise RuntimeError("the sink refused an upload")
            return n * BODY / wall / 1e6
        finally:
            await proc.terminate()


async def _wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _r, w = await asyncio.open_connection(HOST, port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("sink did not start")


def disk_sequential(total: int, directory: Path) -> float:
    """MB/s of writing ``total`` bytes in 8 MiB chunks, then fsync (time includes the fsync)."""
    block = os.urandom(CHUNK)
    fd, name = tempfile.mkstemp(prefix="bench-disk-", dir=directory)
    try:
        start = time.perf_counter()
        written = 0
        while written < total:
            written += os.write(fd, block)
        os.fsync(fd)
        return written / (time.perf_counter() - start) / 1e6
    finally:
        os.close(fd)
        os.unlink(name)


def disk_durable_files(count: int, directory: Path, size: int = 525_000) -> float:
    """Files/s of write + fsync + rename + directory fsync, one 0.5 MB file at a time."""
    data = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="bench-files-", dir=directory) as tmp:
        dir_fd = os.open(tmp, os.O_RDONLY)
        try:
            start = time.perf_counter()
            for k in range(count):
                part = os.path.join(tmp, f"{k}.part")
                with open(part, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.rename(part, os.path.join(tmp, f"{k}.dcm"))
                os.fsync(dir_fd)
            return count / (time.perf_counter() - start)
        finally:
            os.close(dir_fd)


async def measure(sink_bytes: int, disk_bytes: int, disk_files: int) -> dict[str, float]:
    directory = Path(tempfile.gettempdir())
    return {
        "limit_upload_c1_mb_s": await upload_limit(sink_bytes, 1),
        "limit_upload_c8_mb_s": await upload_limit(sink_bytes, 8),
        "limit_disk_seq_mb_s": await asyncio.to_thread(disk_sequential, disk_bytes, directory),
        "limit_disk_files_s": await asyncio.to_thread(disk_durable_files, disk_files, directory),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="the do-nothing HTTP sink (run by the benchmark)")
    parser.add_argument("--sink", type=int, required=True, metavar="PORT")
    args = parser.parse_args()
    try:
        asyncio.run(serve_sink(args.sink))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
