"""STOW to S3 against a direct upload of the same bytes to the same S3 server.

One throwaway SeaweedFS (the S3-compatible server of the tests), then, alternating rounds:

- **ours**: ``dicomweb stow-svc`` on that bucket (SQLite catalog), fed by an httpx client:
  N instances of 0.5 MB, 10 per request, ``--concurrency`` requests at a time; and one
  105 MB instance (S3 multipart upload, 8 MiB parts);
- **direct**: aioboto3 ``put_object`` of exactly the same bytes with the same concurrency
  (and, for the big one, aioboto3's managed multipart ``upload_fileobj`` with 8 MiB parts).

The ratio ours/direct says what the service costs on top of the object store itself (the
machine's 2 cores are shared by the client, the service and the S3 server).

    .venv/bin/python -m benchmarks.bench_s3 [--instances 200] [--rounds 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aioboto3
import httpx
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from tests.dicomfiles import make_instance, multipart_related, uid
from tests.s3server import start_seaweedfs
from tests.servers import ServiceProcess

BUCKET = "bench-s3"
MiB = 1024 * 1024


async def run_ours(server: ServiceProcess, batches: list[list[bytes]], concurrency: int) -> float:
    bodies = [multipart_related(b) for b in batches]
    queue = list(range(len(bodies)))
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            while queue:
                body, ctype = bodies[queue.pop()]
                resp = await client.post(
                    server.base + "/stow-rs/studies", content=body, headers={"content-type": ctype}
                )
                if resp.status_code != 200:
                    raise RuntimeError(f"STOW answered {resp.status_code}: {resp.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def run_direct(s3: object, blobs: list[bytes], concurrency: int, prefix: str) -> float:
    queue = list(enumerate(blobs))

    async def worker() -> None:
        while queue:
            i, blob = queue.pop()
            await s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{i}.dcm", Body=blob)  # type: ignore[attr-defined]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        s3srv = start_seaweedfs(tmp, "benchkey", "benchsecret-0123456789")
        session = aioboto3.Session()
        cfg = Config(s3={"addressing_style": "path"}, max_pool_connections=32)
        results: dict[str, list[float]] = {k: [] for k in ("ours", "direct", "ours_big", "direct_big")}
        try:
            async with session.client(
                "s3",
                endpoint_url=s3srv.endpoint_url,
                aws_access_key_id=s3srv.access_key,
                aws_secret_access_key=s3srv.secret_key,
                region_name="us-east-1",
                config=cfg,
            ) as s3:
                await s3.create_bucket(Bucket=BUCKET)
                env = {**s3srv.bucket_env(BUCKET)}
                service = ServiceProcess(
                    "stow-svc",
                    args=["--catalog-url", f"sqlite:///{tmp}/catalog.db"],
                    env=env,
                    log_path=Path(tmp) / "stow.log",
                ).start()
                try:
                    big = make_instance(rows=512, cols=512, frames=200)
                    for r in range(args.rounds):
                        study = uid()
                        blobs = [
                            make_instance(study_uid=study, rows=512, cols=512, pixel_seed=r * 100000 + i)
                            for i in range(args.instances)
                        ]
                        batches = [blobs[i : i + 10] for i in range(0, len(blobs), 10)]
                        results["ours"].append(await run_ours(service, batches, args.concurrency))
                        results["direct"].append(await run_direct(s3, blobs, args.concurrency, f"direct/{r}"))
                        big_r = make_instance(rows=512, cols=512, frames=200, pixel_seed=r)
                        results["ours_big"].append(await run_ours(service, [[big_r]], 1))
                        started = time.perf_counter()
                        await s3.upload_fileobj(
                            io.BytesIO(big_r),
                            BUCKET,
                            f"direct-big/{r}.dcm",
                            Config=TransferConfig(multipart_chunksize=8 * MiB, multipart_threshold=8 * MiB),
                        )
                        results["direct_big"].append(time.perf_counter() - started)
                    size = len(blobs[0])
                finally:
                    service.stop()
        finally:
            s3srv.stop()
    n_mb = args.instances * size / 1e6
    ours, direct = statistics.median(results["ours"]), statistics.median(results["direct"])
    ob, db = statistics.median(results["ours_big"]), statistics.median(results["direct_big"])
    big_mb = len(big) / 1e6
    lines = [
        f"S3 path: {args.instances} x {size / 1e6:.2f} MB instances (10/request, c={args.concurrency}) "
        f"and one {big_mb:.0f} MB instance; {args.rounds} rounds, medians",
        "",
        "| path | ours (STOW to S3) | direct aioboto3 upload | ours/direct |",
        "|---|---:|---:|---:|",
        f"| 0.5 MB instances, MB/s | {n_mb / ours:.0f} | {n_mb / direct:.0f} | {direct / ours:.2f} |",
        f"| 0.5 MB instances, inst/s | {args.instances / ours:.0f} | {args.instances / direct:.0f} "
        f"| {direct / ours:.2f} |",
        f"| {big_mb:.0f} MB instance, s | {ob:.2f} | {db:.2f} | {db / ob:.2f} |",
        "",
    ]
    sys.stdout.write("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_s3", description=__doc__)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
