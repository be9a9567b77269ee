"""WADO-RS scenarios: frames (cold and warm), single instances, whole studies, metadata."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from functools import partial

import httpx

from benchmarks.client import (
    ACCEPT_DICOM,
    ACCEPT_JSON,
    ACCEPT_OCTETS,
    SOP_INSTANCE_UID,
    Checks,
    dicom_body_digest,
    median,
    new_client,
    run_concurrently,
    split_multipart,
)
from benchmarks.context import RoundContext
from benchmarks.dataset import Instance
from benchmarks.servers import evict_page_cache

FRAME = 150


def instance_url(base: str, inst: Instance) -> str:
    return f"{base}/studies/{inst.study}/series/{inst.series}/instances/{inst.sop}"


def check_instances(checks: Checks, response: httpx.Response, want: Sequence[Instance], what: str) -> None:
    """The parts are exactly ``want``'s data sets (compared after the file meta group)."""
    if not checks.expect(response.status_code == 200, f"{what}: HTTP {response.status_code}"):
        return
    try:
        parts = split_multipart(response.headers.get("content-type", ""), response.content)
        got = sorted(dicom_body_digest(p) for p in parts)
    except ValueError as exc:
        checks.expect(False, f"{what}: {exc}")
        return
    checks.expect(got == sorted(i.body_sha256 for i in want), f"{what}: {len(parts)} parts, content differs")


def check_metadata(checks: Checks, response: httpx.Response, want: Sequence[Instance], what: str) -> None:
    if not checks.expect(response.status_code == 200, f"{what}: HTTP {response.status_code}"):
        return
    try:
        sops = sorted(d[SOP_INSTANCE_UID]["Value"][0] for d in json.loads(response.content))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        checks.expect(False, f"{what}: unreadable ({exc})")
        return
    checks.expect(sops == sorted(i.sop for i in want), f"{what}: {len(sops)} instances, want {len(want)}")


def studies_near(ctx: RoundContext, size: int, count: int) -> list[list[Instance]]:
    """Up to ``count`` studies whose stored slice count is closest to ``size``."""
    by_study: dict[str, list[Instance]] = defaultdict(list)
    for inst in ctx.stored.values():
        if inst.kind == "slice":
            by_study[inst.study].append(inst)
    ranked = sorted(by_study.values(), key=lambda s: (abs(len(s) - size), s[0].study))
    return ranked[:count]


async def run_frames(ctx: RoundContext) -> None:
    """Frame 150 of the multi-frame: first request after a restart with the page cache dropped, then warm."""
    mf = ctx.data.multiframe
    if mf.sop not in ctx.stored:
        ctx.checks_for("frame").expect(False, "multi-frame instance not stored")
        return
    await ctx.server.restart()
    # "Cold" means the data is not in the page cache, not that the process has not finished
    # loading: one unrelated request first, on both servers (ours loads its service code in
    # the background after it reports ready).
    async with new_client(1) as client:
        await client.get(f"{ctx.server.base_url}/studies", params={"limit": "1"})
    evict_page_cache(ctx.server.data_dir)
    want = ctx.data.frame(mf, FRAME)
    url = f"{instance_url(ctx.server.base_url, mf)}/frames/{FRAME}"
    headers = {"Accept": ACCEPT_OCTETS}
    checks = ctx.checks_for("frame")
    times = []
    async with new_client(1) as client:
        for _ in range(1 + ctx.sizes.frame_warm_requests):
            start = time.perf_counter()
            r = await client.get(url, headers=headers)
            times.append(time.perf_counter() - start)
            ok = r.status_code == 200
            parts = split_multipart(r.headers.get("content-type", ""), r.content) if ok else []
            checks.expect(parts == [want], f"frame {FRAME}: HTTP {r.status_code}, {len(parts)} parts")
    ctx.record("frame_cold_ms", times[0] * 1000)
    ctx.record("frame_warm_ms", median(times[1:]) * 1000)


async def run_instances(ctx: RoundContext) -> None:
    """Single-instance retrieve at c=1 and c=8 (different random instances), CPU per instance."""
    slices = sorted((i for i in ctx.stored.values() if i.kind == "slice"), key=lambda i: i.sop)
    rng = random.Random(ctx.seed * 1000 + ctx.round_no)
    n = min(ctx.sizes.wado_requests, len(slices))
    for concurrency in (1, 8):
        picked = rng.sample(slices, n)
        key = f"wado_c{concurrency}"
        async with new_client(concurrency) as client:
            jobs = [
                partial(client.get, instance_url(ctx.server.base_url, i), headers={"Accept": ACCEPT_DICOM})
                for i in picked
            ]
            probe = ctx.probe
            before = probe.snapshot()
            wall, answers = await run_concurrently(jobs, concurrency)
            cpu = probe.snapshot().cpu_s - before.cpu_s
        checks = ctx.checks_for(key)
        for answer, inst in zip(answers, picked, strict=True):
            check_instances(checks, answer.response, [inst], f"instance {inst.sop}")
        ctx.record(f"{key}_inst_s", n / wall)
        ctx.record(f"{key}_cpu_ms", cpu * 1000 / n)
        ctx.record(f"{key}_p50_ms", median([a.seconds for a in answers]) * 1000)


async def run_studies(ctx: RoundContext) -> None:
    """Whole-study retrieve and study metadata on ~20-instance studies; the biggest series' metadata."""
    studies = studies_near(ctx, 20, ctx.sizes.study_retrieves)
    if not studies:
        ctx.checks_for("study").expect(False, "no study stored")
        return
    async with new_client(1) as client:
        times, volume = [], 0
        for study in studies:
            start = time.perf_counter()
            r = await client.get(
                f"{ctx.server.base_url}/studies/{study[0].study}", headers={"Accept": ACCEPT_DICOM}
            )
            times.append(time.perf_counter() - start)
            volume += sum(i.size for i in study)
            check_instances(ctx.checks_for("study"), r, study, f"study {study[0].study}")
        ctx.record("study_retrieve_ms", median(times) * 1000)
        ctx.record("study_retrieve_mb_s", volume / sum(times) / 1e6)

        meta = studies_near(ctx, 20, 5)
        times = []
        for k in range(ctx.sizes.metadata_requests):
            study = meta[k % len(meta)]
            start = time.perf_counter()
            r = await client.get(
                f"{ctx.server.base_url}/studies/{study[0].study}/metadata", headers={"Accept": ACCEPT_JSON}
            )
            times.append(time.perf_counter() - start)
            check_metadata(ctx.checks_for("study_metadata"), r, study, f"metadata {study[0].study}")
        ctx.record("study_metadata_ms", median(times) * 1000)
        ctx.record("study_metadata_instances", median([len(s) for s in meta]))

        by_series: dict[str, list[Instance]] = defaultdict(list)
        for inst in ctx.stored.values():
            if inst.kind == "slice":
                by_series[inst.series].append(inst)
        big = max(by_series.values(), key=len)
        url = f"{ctx.server.base_url}/studies/{big[0].study}/series/{big[0].series}/metadata"
        times = []
        for _ in range(ctx.sizes.series_metadata_requests):
            start = time.perf_counter()
            r = await client.get(url, headers={"Accept": ACCEPT_JSON})
            times.append(time.perf_counter() - start)
            check_metadata(ctx.checks_for("series_metadata"), r, big, f"series metadata {big[0].series}")
        ctx.record("series_metadata_ms", median(times) * 1000)
        ctx.record("series_metadata_instances", len(big))


async def run_retrieve(ctx: RoundContext) -> None:
    await run_frames(ctx)
    await run_instances(ctx)
    await run_studies(ctx)
