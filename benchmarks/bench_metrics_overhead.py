"""What the observability middleware costs: the same server with ``METRICS=off --quiet``
(no metrics, no access line), ``METRICS=on --quiet`` (metrics only) and the default
(metrics + one access line per request at INFO), under two loads that bound the range: a
cheap request (instance metadata, about a millisecond of server CPU) and a STOW of one
small instance per request. Throughput (requests/s, 8 concurrent clients) and server CPU
per request (the whole process tree), median of short bursts: the three servers run side by
side and the bursts rotate between them, so drifts of the machine's load hit each alike.

On a shared machine the HTTP figures move by tens of percent from run to run, more than the
effect measured; so the first table is the precise one: the same requests driven through the
app in-process (ASGI calls, no sockets, the same three configurations side by side in one
process, alternating blocks of requests), CPU time per request.

    .venv/bin/python -m benchmarks.bench_metrics_overhead [--rounds 10] [--seconds 1.5] [--workers 2]

Each answer is checked (status; the metadata names the instance; STOW returns 200).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pydicom
from starlette.types import ASGIApp, Message

from benchmarks.procstat import ProcessProbe, process_tree
from tests.dicomfiles import make_instance, multipart_related
from tests.servers import ServiceProcess

CONFIGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "off (METRICS=off --quiet)": ({"METRICS": "off"}, ["--quiet"]),
    "metrics (METRICS=on --quiet)": ({"METRICS": "on"}, ["--quiet"]),
    "default (metrics + access log)": ({"METRICS": "on"}, ["--log-level", "info"]),
}
CONCURRENCY = 8

Request = Callable[[httpx.AsyncClient], Awaitable[None]]


async def drive(request: Request, seconds: float) -> int:
    """Requests answered in ``seconds`` by CONCURRENCY clients, each on its own connection."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        async with httpx.AsyncClient(timeout=30) as client:
            while time.perf_counter() < deadline:
                await request(client)
                done += 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done


def loads(base: str) -> dict[str, Request]:
    blob = make_instance()
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    body, ctype = multipart_related([blob])
    r = httpx.post(base + "/dicomweb/studies", content=body, headers={"content-type": ctype}, timeout=60)
    assert r.status_code == 200, r.text
    metadata = (
        f"{base}/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/metadata"
    )
    sop = ds.SOPInstanceUID.encode()

    async def get_metadata(client: httpx.AsyncClient) -> None:
        resp = await client.get(metadata)
        assert resp.status_code == 200 and sop in resp.content

    async def stow(client: httpx.AsyncClient) -> None:
        one, one_type = multipart_related([make_instance()])
        resp = await client.post(base + "/dicomweb/studies", content=one, headers={"content-type": one_type})
        assert resp.status_code == 200, resp.text

    return {"instance metadata": get_metadata, "STOW 1 instance/request": stow}


def measure_http(
    workers: int, rounds: int, seconds: float
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """All configurations run at once (same machine load for each); short bursts alternate
    between them, in a rotating order, ``rounds`` times per load."""
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers: dict[str, ServiceProcess] = {}
        try:
            for n, (config, (env, args)) in enumerate(CONFIGS.items()):
                servers[config] = ServiceProcess(
                    "serve",
                    args=["--data-dir", f"{tmp}/data{n}", "--workers", str(workers), *args],
                    env=env,
                    log_path=Path(tmp) / f"log{n}",
                ).start(timeout=60)
            requests = {config: loads(server.base) for config, server in servers.items()}
            probes = {}
            for config, server in servers.items():
                assert server.proc is not None
                probes[config] = (ProcessProbe(server.proc.pid), process_tree(server.proc.pid))
            time.sleep(2)  # the workers finish loading
            configs = list(CONFIGS)
            for load in ("instance metadata", "STOW 1 instance/request"):
                for config in configs:
                    asyncio.run(drive(requests[config][load], 0.5))  # warm
                for r in range(rounds):
                    for config in configs[r % len(configs) :] + configs[: r % len(configs)]:
                        probe, pids = probes[config]
                        before = probe.snapshot(pids)
                        count = asyncio.run(drive(requests[config][load], seconds))
                        cpu = probe.snapshot(pids).cpu_s - before.cpu_s
                        samples.setdefault((load, config), []).append((count / seconds, cpu / count * 1e3))
        finally:
            for server in servers.values():
                server.stop()
    return samples


async def _asgi(app: ASGIApp, method: str, path: str, body: bytes = b"", ctype: str = "") -> int:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"content-type", ctype.encode())] if ctype else [],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent = False
    status: list[int] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # no disconnect while the response is sent
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def in_process(rounds: int) -> list[str]:
    """CPU µs per instance-metadata request through the whole app (middleware included)."""
    from dicomweb_core.config import load_settings
    from dicomweb_core.observability.config import load_observability
    from dicomweb_core.observability.logs import configure_logging
    from dicomweb_core.runtime import build_runtime
    from dicomweb_core.server import build_app, discover_services

    configure_logging(load_observability({}))
    handler = logging.getLogger().handlers[-1]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - the lines are the cost, not the disk
    envs = {
        "off (METRICS=off --quiet)": {"METRICS": "off", "DICOMWEB_QUIET": "1"},
        "metrics (METRICS=on --quiet)": {"METRICS": "on", "DICOMWEB_QUIET": "1"},
        "default (metrics + access log)": {"METRICS": "on"},
        "LOG_FORMAT=json (metrics + JSON access log)": {"METRICS": "on", "LOG_FORMAT": "json"},
    }
    installed = discover_services()
    blob = make_instance()
    ds = pydicom.dcmread(io.BytesIO(blob), stop_before_pixels=True)
    body, ctype = multipart_related([blob])
    path = (
        f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}/metadata"
    )
    per_request: dict[str, list[float]] = {name: [] for name in envs}
    async with contextlib.AsyncExitStack() as stack:
        apps = {}
        for name, env in envs.items():
            data = stack.enter_context(tempfile.TemporaryDirectory())
            runtime = build_runtime(load_settings({"DICOMWEB_DATA_DIR": data, **env}))
            app = build_app(runtime, {n: installed[n] for n in ("stow", "wado")}, combined=True)
            await stack.enter_async_context(app.router.lifespan_context(app))
            assert await _asgi(app, "POST", "/dicomweb/studies", body, ctype) == 200
            apps[name] = app
        for _ in range(rounds * 3):
            for name, app in apps.items():
                n = 300
                start = time.process_time()
                for _ in range(n):
                    assert await _asgi(app, "GET", path) == 200
                per_request[name].append((time.process_time() - start) / n * 1e6)
    base = statistics.median(per_request[next(iter(envs))])
    rows = ["| configuration | CPU per request | vs off |", "|---|---:|---:|"]
    for name, values in per_request.items():
        us = statistics.median(values)
        rows.append(f"| {name} | {us:.1f} µs | {us - base:+.1f} µs ({(us / base - 1) * 100:+.1f} %) |")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)
    rows = [
        f"In-process, instance metadata, {args.rounds * 3} alternating blocks of 300 requests, medians:",
        "",
        *asyncio.run(in_process(args.rounds)),
        "",
    ]
    samples = measure_http(args.workers, args.rounds, args.seconds)
    off = next(iter(CONFIGS))
    rows += [
        f"Over HTTP: `serve --workers {args.workers}`, {CONCURRENCY} concurrent clients, "
        f"{args.rounds} rotating bursts of {args.seconds:g} s per configuration, medians",
        "",
        "| load | configuration | requests/s | vs off | server CPU/request | vs off |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for load in ("instance metadata", "STOW 1 instance/request"):
        base_rate = statistics.median(r for r, _ in samples[(load, off)])
        base_cpu = statistics.median(c for _, c in samples[(load, off)])
        for config in CONFIGS:
            rate = statistics.median(r for r, _ in samples[(load, config)])
            cpu = statistics.median(c for _, c in samples[(load, config)])
            rows.append(
                f"| {load} | {config} | {rate:.0f} | {(rate / base_rate - 1) * 100:+.1f} % "
                f"| {cpu:.3f} ms | {(cpu / base_cpu - 1) * 100:+.1f} % |"
            )
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
