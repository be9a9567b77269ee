"""Progress: a tqdm bar on a terminal, a plain log line every few seconds otherwise.

tqdm (pure Python, no dependencies of its own) draws the bar with MB, MB/s and ETA; the
file count and files/s ride in its postfix. When stdout is not a terminal (a log file, CI, a
pipe) the same figures go out as one ``logging`` line every ``interval`` seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Protocol

log = logging.getLogger("dicomweb.push")
MB = 1_000_000


def _eta(seconds: float) -> str:
    if seconds != seconds or seconds > 360_000:  # NaN (no rate yet) or absurd
        return "?"
    seconds = max(seconds, 0.0)
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress(Protocol):
    def advance(self, files: int, nbytes: int) -> None: ...

    def close(self) -> None: ...


class _Counts:
    def __init__(self, total_files: int, total_bytes: int) -> None:
        self.total_files, self.total_bytes = total_files, total_bytes
        self.files = self.bytes = 0
        self.started = time.monotonic()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.bytes / elapsed
        left = self.total_bytes - self.bytes
        eta = left / rate if rate else (0.0 if left <= 0 else float("nan"))
        return (
            f"{self.files}/{self.total_files} files, {self.bytes / MB:,.1f}/{self.total_bytes / MB:,.1f} MB, "
            f"{self.files / elapsed:,.1f} files/s, {rate / MB:,.1f} MB/s, ETA {_eta(eta)}"
        )


class LogProgress(_Counts):
    def __init__(self, total_files: int, total_bytes: int, interval: float) -> None:
        super().__init__(total_files, total_bytes)
        self.interval = interval
        self._next = self.started + interval

    def advance(self, files: int, nbytes: int) -> None:
        self.files += files
        self.bytes += nbytes
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            log.info("push: %s", self.line())

    def close(self) -> None:
        log.info("push: %s", self.line())


class BarProgress(_Counts):
    def __init__(self, total_files: int, total_bytes: int) -> None:
        super().__init__(total_files, total_bytes)
        from tqdm import tqdm

        self._bar: Any = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def advance(self, files: int, nbytes: int) -> None:
        self.files += files
        self.bytes += nbytes
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self._bar.set_postfix_str(
            f"{self.files}/{self.total_files} files, {self.files / elapsed:,.1f} files/s", refresh=False
        )
        self._bar.update(nbytes)

    def close(self) -> None:
        self._bar.close()


def make_progress(total_files: int, total_bytes: int, *, interval: float) -> Progress:
    if sys.stdout.isatty() and sys.stderr.isatty():
        return BarProgress(total_files, total_bytes)
    return LogProgress(total_files, total_bytes, interval)
