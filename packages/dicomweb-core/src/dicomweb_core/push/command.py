"""``dicomweb push PATH... --url URL``: the command line of the bulk client."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from .journal import default_journal_path
from .options import OptionError, PushOptions, parse_batch, stow_url
from .runner import Pusher
from .summary import Tally

log = logging.getLogger("dicomweb.push")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "push",
        help="send DICOM files, folders and .zip/.tar(.gz) archives to any DICOMweb server (STOW-RS)",
        description="Send DICOM files to a DICOMweb server: folders are walked recursively, archives "
        "read in place, non-DICOM files skipped. Exit status 0 only if everything was stored.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files, folders or archives")
    p.add_argument("--url", required=True, help="the server's DICOMweb root, e.g. http://host:8080/dicomweb")
    p.add_argument("--study", default=None, help="post to /studies/{UID}; other studies' files fail")
    p.add_argument(
        "--batch", default="10", help="instances per request (10) or a size per request (e.g. 16MiB)"
    )
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--retries", type=int, default=6, help="retries of a failing request (default 6)")
    p.add_argument(
        "--backoff", type=float, default=0.5, help="first retry waits up to this many seconds, doubling (0.5)"
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a request may stall (default 300)")
    p.add_argument(
        "--token",
        default=os.environ.get("DICOMWEB_TOKEN") or None,
        help="bearer token (default $DICOMWEB_TOKEN)",
    )
    p.add_argument(
        "--resume", action="store_true", help="skip what the journal says this server already acknowledged"
    )
    p.add_argument(
        "--journal",
        type=Path,
        default=None,
        help="journal file (default: under the user's cache directory, one per server URL)",
    )
    p.add_argument("--report", type=Path, default=None, help="write a JSON report here")
    p.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        help="seconds between log lines when not on a terminal",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def options_from(args: argparse.Namespace) -> PushOptions:
    if not 1 <= args.concurrency <= 256:
        raise OptionError("--concurrency must be 1..256")
    if not 0 <= args.retries <= 100:
        raise OptionError("--retries must be 0..100")
    if not 0 <= args.backoff <= 60:
        raise OptionError("--backoff must be 0..60 seconds")
    if args.timeout <= 0:
        raise OptionError("--timeout must be positive")
    url = stow_url(args.url, args.study)
    return PushOptions(
        paths=tuple(args.paths),
        url=url,
        study=args.study,
        batch=parse_batch(args.batch),
        concurrency=args.concurrency,
        retries=args.retries,
        backoff=args.backoff,
        timeout=args.timeout,
        token=args.token,
        resume=args.resume,
        journal=args.journal or default_journal_path(url),
        report=args.report,
        progress_interval=max(0.1, args.progress_interval),
    )


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    # The progress lines go through logging; keep library chatter (httpx) out of them.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        options = options_from(args)
        if options.journal is not None:
            try:
                options.journal.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OptionError(f"--journal: cannot use {options.journal.parent}: {exc.strerror}") from exc
    except OptionError as exc:
        sys.stderr.write(f"dicomweb push: {exc}\n")
        return EXIT_USAGE
    tally = Tally(url=options.url)
    asyncio.run(_main(options, tally))
    sys.stdout.write(tally.text() + "\n")
    if options.report is not None:
        options.report.write_bytes(orjson.dumps(tally.as_json(), option=orjson.OPT_INDENT_2))
    if tally.interrupted:
        again, had_token = _without_token(list(argv if argv is not None else sys.argv[1:]))
        if "--resume" not in again:
            again.append("--resume")
        note = " (with the token in $DICOMWEB_TOKEN)" if had_token else ""
        sys.stderr.write(
            f"dicomweb push: interrupted; {tally.stored} stored and recorded in {options.journal}. "
            f"To send only what is missing{note}:\n  dicomweb {shlex.join(again)}\n"
        )
        return EXIT_INTERRUPTED
    return EXIT_OK if tally.ok else EXIT_FAILED


def _without_token(argv: list[str]) -> tuple[list[str], bool]:
    """The command line to print, without ``--token`` and its value; True if one was there."""
    out: list[str] = []
    skip = found = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--token":
            skip = found = True
        elif arg.startswith("--token="):
            found = True
        else:
            out.append(arg)
    return out, found


async def _main(options: PushOptions, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(Pusher(options, tally).run())

    def interrupt() -> None:
        # First Ctrl-C: stop now (requests in flight are abandoned, nothing half-recorded).
        # A second one falls back to Python's default handling.
        tally.interrupted = True
        loop.remove_signal_handler(signal.SIGINT)
        task.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        await task
    except asyncio.CancelledError:
        if not tally.interrupted:
            raise
    finally:
        tally.finished = time.monotonic()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (ValueError, RuntimeError):
            pass
