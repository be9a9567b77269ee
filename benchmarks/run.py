"""The one command: ``python -m benchmarks.run [--rounds 3] [--small] [--only stow,wado,...]``.

Generates (or reuses) the dataset, measures the machine's limits, then runs the
selected scenarios against ours and Orthanc in alternating rounds, each server
starting empty, and writes ``results.md`` and ``results.json`` to the output directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import limits
from benchmarks.context import RoundContext, Sizes
from benchmarks.dataset import OUT, DatasetIndex, Params, load_or_generate
from benchmarks.report import markdown, summarize
from benchmarks.retrieve import run_retrieve
from benchmarks.search import run_search
from benchmarks.servers import BenchServer, make_server
from benchmarks.stow import load_untimed, run_big, run_stow

log = logging.getLogger("benchmarks")

Scenario = Callable[[RoundContext], Awaitable[None]]
# Per-round scenarios, in the order they run on each server (later ones read what earlier ones stored).
SCENARIOS: dict[str, Scenario] = {"stow": run_stow, "big": run_big, "wado": run_retrieve, "qido": run_search}
# Once-per-run measurements that are not a server round. The S3 comparison (ours on an S3
# store vs a direct aioboto3 upload of the same bytes to the same S3 server) plugs in here:
# an async function (dataset, sizes) -> {metric: value}, using OursServer(extra_args=..., env=...).
Standalone = Callable[[DatasetIndex, Sizes], Awaitable[dict[str, float]]]


async def _limits(_data: DatasetIndex, sizes: Sizes) -> dict[str, float]:
    return await limits.measure(sizes.sink_bytes, sizes.disk_bytes, sizes.disk_files)


STANDALONE: dict[str, Standalone] = {"limits": _limits}
SERVER_NAMES = ("ours", "orthanc")


async def run_round(
    kind: str, name: str, round_no: int, data: DatasetIndex, sizes: Sizes, selected: list[str]
) -> dict[str, Any]:
    server: BenchServer = make_server(kind, name=name)
    ctx = RoundContext(server=server, data=data, sizes=sizes, seed=data.params.seed + round_no)
    started = time.perf_counter()
    await server.start()
    try:
        for scenario in SCENARIOS:
            if scenario not in selected:
                continue
            if scenario in ("wado", "qido"):
                await load_untimed(ctx, [*data.slices, *data.testfiles])
            if scenario == "wado" and "big" not in selected:
                await load_untimed(ctx, [data.multiframe])
            log.info("round %d %s: %s", round_no, name, scenario)
            t = time.perf_counter()
            await SCENARIOS[scenario](ctx)
            log.info("round %d %s: %s done in %.1f s", round_no, name, scenario, time.perf_counter() - t)
    finally:
        await server.stop()
    failures = {k: c.failures for k, c in ctx.checks.items() if c.failures}
    for key, msgs in failures.items():
        log.warning("round %d %s: %s: %d wrong answers, e.g. %s", round_no, name, key, len(msgs), msgs[0])
    return {
        "server": name,
        "round": round_no,
        "seconds": time.perf_counter() - started,
        "metrics": ctx.metrics,
        "checks": {
            k: {"ok": c.ok, "failures": c.failures[:20], "failed": len(c.failures)}
            for k, c in ctx.checks.items()
        },
        "notes": ctx.notes,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    params = Params.small() if args.small else Params()
    sizes = Sizes.small() if args.small else Sizes()
    selected = args.only.split(",") if args.only else [*STANDALONE, *SCENARIOS]
    unknown = set(selected) - set(SCENARIOS) - set(STANDALONE)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    t = time.perf_counter()
    data = load_or_generate(params)
    log.info(
        "dataset %s: %d instances (%.1f s)", data.root.name, len(data.instances), time.perf_counter() - t
    )

    standalone: dict[str, float] = {}
    for name, measure in STANDALONE.items():
        if name in selected:
            log.info("measuring %s", name)
            standalone.update(await measure(data, sizes))

    kinds = {"ours": args.ours, "orthanc": "orthanc"}
    rounds = []
    for round_no in range(args.rounds):
        for name in SERVER_NAMES:
            rounds.append(await run_round(kinds[name], name, round_no, data, sizes, selected))

    summary = summarize(rounds, SERVER_NAMES)
    wall = time.perf_counter() - started
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    header = "\n".join(
        [
            f"Command: `{command.strip()}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
            f"Python {platform.python_version()}  ",
            f"Dataset: {len(data.slices)} slices of {params.rows}x{params.rows}x16 bit, "
            f"{params.studies} studies, {params.series} series; a {params.frames}-frame instance "
            f"({data.multiframe.size / 1e6:.0f} MB); {len(data.testfiles)} pydicom test files; "
            f"streamed instance {sizes.stream_bytes / 2**30:.2f} GiB  ",
            f"Rounds: {args.rounds} per server, alternating, each server starting empty; medians shown. "
            f"Total run time {wall:.0f} s"
            + ("  \n**ours is Orthanc here (harness self-check)**" if args.ours == "orthanc" else ""),
        ]
    )
    result = {
        "command": command,
        "params": asdict(params),
        "sizes": asdict(sizes),
        "limits": standalone,
        "rounds": rounds,
        "summary": summary,
        "wrong_answers": sum(c["failed"] for r in rounds for c in r["checks"].values()),
        "checked_answers": sum(c["ok"] for r in rounds for c in r["checks"].values()),
        "seconds": wall,
    }
    table = markdown(summary, SERVER_NAMES, header, standalone)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(table)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    sys.stdout.write(table)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="a tiny dataset (the CI smoke run)")
    parser.add_argument("--only", default="", help=f"comma list of {', '.join([*STANDALONE, *SCENARIOS])}")
    parser.add_argument("--out", default=str(OUT), help="where results.md and results.json go")
    parser.add_argument(
        "--ours",
        default="ours",
        choices=("ours", "orthanc"),
        help="'orthanc' runs Orthanc on both sides, to check the harness itself",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = asyncio.run(run(args))
    return 1 if result["wrong_answers"] else 0


if __name__ == "__main__":
    sys.exit(main())
