"""``dicomweb push`` settings, parsed once into a frozen dataclass."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
_BATCH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mib|mb|m)?\s*$", re.IGNORECASE)


class OptionError(ValueError):
    """A command-line value that cannot be used (reported with the option's name)."""


@dataclass(frozen=True)
class Batch:
    """At most ``files`` instances and (unless a single file is bigger) ``nbytes`` per request."""

    files: int
    nbytes: int


def parse_batch(text: str, *, max_bytes: int = 64 * MIB, max_files: int = 1000) -> Batch:
    """``10`` = ten instances per request (and at most ``max_bytes``); ``16MiB`` = as many
    instances as fit in 16 MiB (at least one, at most ``max_files``)."""
    m = _BATCH.match(text)
    if not m:
        raise OptionError(f"--batch: expected a number of instances or a size such as 16MiB, not {text!r}")
    number, unit = float(m.group(1)), m.group(2)
    if unit:
        nbytes = int(number * MIB)
        if nbytes < 1:
            raise OptionError("--batch: size must be positive")
        return Batch(files=max_files, nbytes=nbytes)
    if number != int(number) or not 1 <= number <= max_files:
        raise OptionError(f"--batch: instances per request must be 1..{max_files}")
    return Batch(files=int(number), nbytes=max_bytes)


def stow_url(url: str, study: str | None) -> str:
    """The STOW-RS URL for a DICOMweb root (``…/studies`` accepted too)."""
    base = url.rstrip("/")
    if not re.match(r"^https?://", base, re.IGNORECASE):
        raise OptionError(f"--url: expected http:// or https://, not {url!r}")
    if base.endswith("/studies"):
        base = base[: -len("/studies")]
    return f"{base}/studies/{study}" if study else f"{base}/studies"


@dataclass(frozen=True)
class PushOptions:
    paths: tuple[Path, ...]
    url: str  # the STOW-RS URL requests go to (see stow_url)
    study: str | None = None
    batch: Batch = Batch(files=10, nbytes=64 * MIB)
    concurrency: int = 4
    retries: int = 6
    backoff: float = 0.5  # first retry waits up to this long (full jitter), doubling per attempt
    backoff_max: float = 30.0
    timeout: float = 300.0  # seconds without progress on one request's socket
    token: str | None = None
    resume: bool = False
    journal: Path | None = None  # None: no journal at all
    report: Path | None = None
    progress_interval: float = 5.0
    chunk: int = MIB
