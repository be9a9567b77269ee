"""Bulk ingestion end to end: ``dicomweb push`` of the benchmark's slices against the usual
ways of doing the same job.

Each scenario starts its server empty, sends the same N slices (0.5 MB each, files on disk,
the benchmark data set) and checks afterwards that the server lists all N:

- ``dicomweb push`` into ``dicomweb serve`` (its default workers: one per core);
- ``dicomweb push`` into ``dicomweb stow-svc`` on S3 (a throwaway SeaweedFS) + PostgreSQL;
- dicomweb-client's ``store_instances`` in a loop (pydicom reads each file, the client
  serialises the list into one request), into ``dicomweb serve``, 1 and 10 per call;
- Orthanc's REST API, the pattern of its ``ImportDicomFiles.py`` (one file per
  ``POST /instances``, one at a time, one keep-alive connection), into Orthanc;
- ``dicomweb push`` into Orthanc's DICOMweb plugin (the same tool against another server).

Beside them, the machine's limits measured by ``benchmarks.limits`` (loopback upload to a
do-nothing sink, sequential disk write + fsync, 0.5 MB durable files/s).

    .venv/bin/python -m benchmarks.bench_push [--slices 2000] [--concurrency 4] [--batch 10]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from benchmarks import limits
from benchmarks.dataset import Params, load_or_generate
from benchmarks.procstat import ProcessProbe
from benchmarks.servers import REPO, OrthancServer, OursServer

log = logging.getLogger("benchmarks.push")
DICOMWEB = str(REPO / ".venv" / "bin" / "dicomweb")


@dataclass
class Result:
    scenario: str
    server: str
    files: int
    nbytes: int
    wall_s: float
    server_cpu_s: float
    client_cpu_s: float
    listed: int
    spread: tuple[float, float] = (0.0, 0.0)  # files/s of the slowest and fastest round

    def row(self) -> str:
        n = max(self.files, 1)
        spread = f" ({self.spread[0]:,.0f}-{self.spread[1]:,.0f})" if self.spread[1] else ""
        return (
            f"| {self.scenario} | {self.server} | {self.files / self.wall_s:,.0f}{spread} | "
            f"{self.nbytes / 1e6 / self.wall_s:,.0f} | {self.server_cpu_s * 1000 / n:.2f} | "
            f"{self.client_cpu_s * 1000 / n:.2f} | {self.wall_s:.1f} | {self.listed}/{self.files} |"
        )


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _push(files: Sequence[Path], url: str, args: argparse.Namespace, tmp: Path) -> tuple[float, int]:
    """Run the real command; returns (wall seconds, instances the report says were stored)."""
    report = tmp / "push-report.json"
    cmd = [
        DICOMWEB,
        "push",
        *map(str, files),
        "--url",
        url,
        "--concurrency",
        str(args.concurrency),
        "--batch",
        args.batch,
        "--journal",
        str(tmp / "journal.sqlite"),
        "--report",
        str(report),
        "--progress-interval",
        "60",
    ]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"dicomweb push exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
        )
    return wall, int(json.loads(report.read_text())["stored"])


def _dicomweb_client(files: Sequence[Path], url: str, per_call: int) -> float:
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=url)
    started = time.perf_counter()
    for i in range(0, len(files), per_call):
        client.store_instances([pydicom.dcmread(p) for p in files[i : i + per_call]])
    return time.perf_counter() - started


def _orthanc_rest(files: Sequence[Path], base: str) -> float:
    """ImportDicomFiles.py: each file's bytes POSTed to /instances, one after the other."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
    started = time.perf_counter()
    try:
        for path in files:
            conn.request(
                "POST", "/instances", body=path.read_bytes(), headers={"Content-Type": "application/dicom"}
            )
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"Orthanc answered {resp.status} for {path}: {body[:200]!r}")
    finally:
        conn.close()
    return time.perf_counter() - started


def _listed(qido_root: str) -> int:
    """How many instances the server lists (QIDO, paged)."""
    count, offset = 0, 0
    while True:
        resp = httpx.get(
            qido_root + "/instances",
            params={"limit": "1000", "offset": str(offset)},
            headers={"Accept": "application/dicom+json"},
            timeout=120,
        )
        if resp.status_code == 204 or not resp.content:
            return count
        page = resp.json()
        count += len(page)
        if len(page) < 1000:
            return count
        offset += len(page)


async def _measure(
    scenario: str, server_name: str, pid: int, files: Sequence[Path], run: Callable[[], float], qido: str
) -> Result:
    probe = ProcessProbe(pid)
    before_server, before_children, before_self = probe.snapshot().cpu_s, _children_cpu(), _self_cpu()
    wall = await asyncio.to_thread(run)
    server_cpu = probe.snapshot().cpu_s - before_server
    client_cpu = (_children_cpu() - before_children) + (_self_cpu() - before_self)
    nbytes = sum(p.stat().st_size for p in files)
    result = Result(scenario, server_name, len(files), nbytes, wall, server_cpu, client_cpu, _listed(qido))
    log.info("%s", result.row())
    return result


async def _ours(files: Sequence[Path], args: argparse.Namespace, tmp: Path, scenario: str) -> Result:
    server = OursServer(name="ours", root=tmp)
    await server.start()
    try:
        url = server.base_url
        if scenario == "push":
            return await _measure(
                f"`dicomweb push` (c={args.concurrency}, batch {args.batch})",
                "ours: `dicomweb serve`",
                server.pid,
                files,
                lambda: _push(files, url, args, tmp)[0],
                url,
            )
        per_call = int(scenario.rsplit("-", 1)[1])
        return await _measure(
            f"dicomweb-client `store_instances`, {per_call}/call, in a loop",
            "ours: `dicomweb serve`",
            server.pid,
            files,
            lambda: _dicomweb_client(files, url, per_call),
            url,
        )
    finally:
        await server.stop()


async def _orthanc(files: Sequence[Path], args: argparse.Namespace, tmp: Path, scenario: str) -> Result:
    server = OrthancServer(name="orthanc", root=tmp)
    await server.start()
    try:
        url = server.base_url
        if scenario == "push":
            return await _measure(
                f"`dicomweb push` (c={args.concurrency}, batch {args.batch})",
                "Orthanc DICOMweb plugin",
                server.pid,
                files,
                lambda: _push(files, url, args, tmp)[0],
                url,
            )
        host = url.rsplit("/", 1)[0]
        return await _measure(
            "Orthanc REST `POST /instances`, one file at a time (ImportDicomFiles.py)",
            "Orthanc",
            server.pid,
            files,
            lambda: _orthanc_rest(files, host),
            url,
        )
    finally:
        await server.stop()


async def _s3(files: Sequence[Path], args: argparse.Namespace, tmp: Path) -> Result:
    import boto3

    from tests.pgfixtures import create_database, drop_database, find_admin_dsn
    from tests.s3server import start_seaweedfs
    from tests.servers import ServiceProcess

    admin, errors = find_admin_dsn()
    if admin is None:
        raise RuntimeError(f"no PostgreSQL: {errors}")
    dsn = create_database(admin, prefix="bench_push")
    s3srv = start_seaweedfs(tmp, "benchkey", "benchsecret-0123456789")
    try:
        boto3.client(
            "s3",
            endpoint_url=s3srv.endpoint_url,
            aws_access_key_id=s3srv.access_key,
            aws_secret_access_key=s3srv.secret_key,
            region_name="us-east-1",
        ).create_bucket(Bucket="bench-push")
        service = ServiceProcess(
            "stow-svc",
            args=["--catalog-url", dsn],
            env=s3srv.bucket_env("bench-push"),
            log_path=tmp / "stow.log",
        ).start()
        try:
            # The QIDO check needs the WADO service on the same bucket and catalog.
            wado = ServiceProcess(
                "wado-svc",
                args=["--catalog-url", dsn],
                env=s3srv.bucket_env("bench-push"),
                log_path=tmp / "wado.log",
            ).start()
            try:
                assert service.proc is not None
                pid = service.proc.pid
                result = await _measure(
                    f"`dicomweb push` (c={args.concurrency}, batch {args.batch})",
                    "ours: `stow-svc` on S3 (SeaweedFS) + PostgreSQL",
                    pid,
                    files,
                    lambda: _push(files, service.base + "/stow-rs", args, tmp)[0],
                    wado.base + "/wado-rs",
                )
                return result  # server CPU: stow-svc only (SeaweedFS's own is not counted)
            finally:
                wado.stop()
        finally:
            service.stop()
    finally:
        s3srv.stop()
        drop_database(admin, dsn)


async def _run_scenario(scenario: str, files: Sequence[Path], args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix=f"bench-push-{scenario}-") as tmp_name:
        tmp = Path(tmp_name)
        if scenario == "push-ours":
            return await _ours(files, args, tmp, "push")
        if scenario.startswith("dwc-"):
            return await _ours(files, args, tmp, scenario)
        if scenario == "push-s3":
            return await _s3(files, args, tmp)
        if scenario == "orthanc-rest":
            return await _orthanc(files, args, tmp, "rest")
        if scenario == "push-orthanc":
            return await _orthanc(files, args, tmp, "push")
    raise SystemExit(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")


def _median(results: list[Result]) -> Result:
    """The run with the median wall time; ``spread`` keeps the range of files/s."""
    ordered = sorted(results, key=lambda r: r.wall_s)
    mid = ordered[len(ordered) // 2]
    if len(ordered) > 1:
        mid.spread = (ordered[-1].files / ordered[-1].wall_s, ordered[0].files / ordered[0].wall_s)
    mid.listed = min(r.listed for r in results)
    return mid


SCENARIOS = ("push-ours", "push-s3", "dwc-1", "dwc-10", "orthanc-rest", "push-orthanc")


async def main_async(args: argparse.Namespace) -> int:
    data = load_or_generate(Params.small() if args.small else Params())
    files = [data.root / i.path for i in data.slices[: args.slices]]
    selected = args.only.split(",") if args.only else list(SCENARIOS)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    scale = 10 if args.small else 1
    lim = await limits.measure(
        sink_bytes=200_000_000 // scale, disk_bytes=512_000_000 // scale, disk_files=200 // scale
    )
    runs: dict[str, list[Result]] = {name: [] for name in selected}
    for round_no in range(args.rounds):
        # Alternate the order: the machine's load drifts, and no scenario should always go first.
        for scenario in selected if round_no % 2 == 0 else list(reversed(selected)):
            runs[scenario].append(await _run_scenario(scenario, files, args))
    results = [_median(runs[name]) for name in selected]
    total_mb = sum(p.stat().st_size for p in files) / 1e6
    out = [
        f"Command: `python -m benchmarks.bench_push --slices {args.slices} --concurrency {args.concurrency} "
        f"--batch {args.batch} --rounds {args.rounds}{' --only ' + args.only if args.only else ''}"
        f"{' --small' if args.small else ''}`  ",
        f"Data: {len(files)} slices of the benchmark data set, {total_mb:,.0f} MB; {args.rounds} round(s), "
        "alternating order, the median round shown (files/s range in brackets), each on an empty server "
        f"(shared {os.cpu_count()}-core machine: load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after); total {time.perf_counter() - started:.0f} s",
        "",
        "| machine limit | value |",
        "|---|---:|",
        f"| loopback HTTP upload to a do-nothing sink, c=1 (MB/s) | {lim['limit_upload_c1_mb_s']:,.0f} |",
        f"| loopback HTTP upload to a do-nothing sink, c=8 (MB/s) | {lim['limit_upload_c8_mb_s']:,.0f} |",
        f"| sequential disk write + fsync (MB/s) | {lim['limit_disk_seq_mb_s']:,.0f} |",
        f"| 0.5 MB files written + fsync + rename + dir fsync (files/s) | {lim['limit_disk_files_s']:,.0f} |",
        "",
        "| client | server | files/s | MB/s | server CPU ms/file | client CPU ms/file | wall s | listed |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *(r.row() for r in results),
        "",
    ]
    sys.stdout.write("\n".join(out))
    bad = [r for r in results if r.listed != r.files]
    if bad:
        sys.stderr.write(f"servers list fewer instances than were sent: {[r.scenario for r in bad]}\n")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_push", description=__doc__)
    parser.add_argument("--slices", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", default="10")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per scenario (median shown)")
    parser.add_argument("--small", action="store_true", help="the small data set (40 slices; a smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
