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
from benchmarks.servers import make_server
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


async def run_servers(
    kinds: dict[str, str],
    data: DatasetIndex,
    sizes: Sizes,
    rounds: int,
    selected: list[str],
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Both servers start empty and stay up; each scenario runs its rounds alternating servers.

    Scenario by scenario (STOW rounds, then big-instance rounds, then retrieve, then
    search), so every instance is stored once per server and reads see the full dataset.
    """
    contexts = {
        name: RoundContext(
            server=make_server(kind, name=name, workers=workers),
            data=data,
            sizes=sizes,
            seed=data.params.seed,
            rounds=rounds,
        )
        for name, kind in kinds.items()
    }
    try:
        for ctx in contexts.values():
            await ctx.server.start()
        for scenario, run_scenario in SCENARIOS.items():
            if scenario not in selected:
                continue
            for ctx in contexts.values():
                await _load_prerequisites(ctx, scenario, selected)
            for round_no in range(rounds):
                for name, ctx in contexts.items():
                    ctx.round_no = round_no
                    t = time.perf_counter()
                    await run_scenario(ctx)
                    log.info("%s round %d on %s: %.1f s", scenario, round_no, name, time.perf_counter() - t)
    finally:
        for ctx in contexts.values():
            await ctx.server.stop()
    out = []
    for name, ctx in contexts.items():
        for round_no, rec in sorted(ctx.records.items()):
            for key, checks in rec.checks.items():
                if checks.failures:
                    log.warning(
                        "%s round %d: %s: %d wrong answers, e.g. %s",
                        name,
                        round_no,
                        key,
                        len(checks.failures),
                        checks.failures[0],
                    )
            out.append(
                {
                    "server": name,
                    "round": round_no,
                    "metrics": rec.metrics,
                    "checks": {
                        k: {"ok": c.ok, "failed": len(c.failures), "failures": c.failures[:20]}
                        for k, c in rec.checks.items()
                    },
                }
            )
        if ctx.notes:
            log.info("%s: %s", name, "; ".join(ctx.notes))
    return out


async def _load_prerequisites(ctx: RoundContext, scenario: str, selected: list[str]) -> None:
    """Store, untimed, what a scenario reads when the scenario that stores it was not selected."""
    ctx.round_no = -1  # checks of this loading are reported as round -1
    if scenario in ("wado", "qido") and "stow" not in selected:
        await load_untimed(ctx, [*ctx.data.slices, *ctx.data.testfiles])
    if scenario == "wado" and "big" not in selected:
        await load_untimed(ctx, [ctx.data.multiframe])


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
    rounds = await run_servers(kinds, data, sizes, args.rounds, selected, args.workers)

    summary = summarize(rounds, SERVER_NAMES)
    wall = time.perf_counter() - started
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    header = "\n".join(
        [
            f"Command: `{command.strip()}`  ",
            f"Ours: `dicomweb serve --workers {args.workers}`  ",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
            f"Python {platform.python_version()}  ",
            f"Dataset: {len(data.slices)} slices of {params.rows}x{params.rows}x16 bit, "
            f"{params.studies} studies, {params.series} series; a {params.frames}-frame instance "
            f"({data.multiframe.size / 1e6:.0f} MB); {len(data.testfiles)} pydicom test files; "
            f"streamed instance {sizes.stream_bytes / 2**30:.2f} GiB  ",
            f"Rounds: {args.rounds} per scenario, alternating servers; both start empty and store each "
            f"instance once; the streamed instance in {min(sizes.stream_rounds, args.rounds)} round(s); "
            "medians shown. "
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
    parser.add_argument("--workers", type=int, default=2, help="worker processes of ours (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # test files it warns about are skipped
    result = asyncio.run(run(args))
    return 1 if result["wrong_answers"] else 0


if __name__ == "__main__":
    sys.exit(main())
