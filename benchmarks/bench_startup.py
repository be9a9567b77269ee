"""Start-up time to ready: from spawning ``dicomweb stow-svc`` / ``dicomweb wado-svc`` to the
first ``/readyz`` 200 (what Knative waits for when it scales from zero).

Both services run as in a cluster: S3 (a throwaway SeaweedFS) and a PostgreSQL catalog (a
throwaway database on 127.0.0.1:5432). Several runs each; the table shows the median.

    .venv/bin/python -m benchmarks.bench_startup [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import httpx
from botocore.config import Config

from tests.pgfixtures import create_database, drop_database, find_admin_dsn
from tests.s3server import start_seaweedfs
from tests.servers import DICOMWEB, free_port

BUCKET = "startup-bench"


def time_to_ready(command: str, env: dict[str, str], timeout: float = 30.0) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/readyz"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [DICOMWEB, command, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(timeout=1.0) as client:
            while time.perf_counter() - started < timeout:
                if proc.poll() is not None:
                    raise RuntimeError(f"{command} exited with {proc.returncode}")
                try:
                    if client.get(url).status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)
        raise RuntimeError(f"{command} not ready within {timeout} s")
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    admin, errors = find_admin_dsn()
    if admin is None:
        sys.stderr.write(f"PostgreSQL unreachable: {'; '.join(errors)}\n")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        s3 = start_seaweedfs(Path(tmp), "bench-access", "bench-secret")
        dsn = create_database(admin, "dicomweb_bench")
        try:
            boto3.client(
                "s3",
                endpoint_url=s3.endpoint_url,
                aws_access_key_id=s3.access_key,
                aws_secret_access_key=s3.secret_key,
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}),
            ).create_bucket(Bucket=BUCKET)
            env = {**os.environ, **s3.bucket_env(BUCKET), "CATALOG_URL": dsn, "K_SINK": "http://127.0.0.1:9/"}
            time_to_ready("stow-svc", env)  # warm the page cache and migrate the schema once
            rows = []
            for command in ("stow-svc", "wado-svc"):
                times = [time_to_ready(command, env) for _ in range(args.runs)]
                rows.append((command, statistics.median(times), min(times), max(times)))
        finally:
            drop_database(admin, dsn)
            s3.stop()
    out = [f"start-up to first /readyz 200 ({args.runs} runs, S3 + PostgreSQL)", ""]
    out.append("| service | median s | min s | max s |")
    out.append("|---|---|---|---|")
    out += [f"| {c} | {m:.2f} | {lo:.2f} | {hi:.2f} |" for c, m, lo, hi in rows]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
