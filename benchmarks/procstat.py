"""RSS and CPU of a server's process tree, read from /proc.

CPU is utime+stime of every live process in the tree (the server and its workers);
children's time is read from the children themselves, so a worker that exits during
a phase loses its ticks. Servers under test keep their workers for their lifetime.

Peak memory uses the kernel's high-water mark (VmHWM), reset through
/proc/PID/clear_refs ("5"), so a short spike between two samples is not missed.
The tree's peak is the sum of each process' peak: an upper bound when workers peak
at different times, which errs against the server, never for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses; fields follow the last ")".
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def _cpu_ticks(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[11], fields[12] are utime and stime (stat fields 14 and 15).
    return int(fields[11]) + int(fields[12])


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Snapshot:
    """CPU seconds and RSS bytes of a process tree at one moment."""

    cpu_s: float
    rss: int


class ProcessProbe:
    """Samples one server process tree."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def snapshot(self, pids: list[int] | None = None) -> Snapshot:
        """Now; ``pids`` (a tree listed earlier) spares the scan of /proc."""
        ticks, rss = 0, 0
        for p in process_tree(self.pid) if pids is None else pids:
            try:
                ticks += _cpu_ticks(p)
                rss += _status_kib(p, "VmRSS:") * 1024
            except (OSError, ValueError):
                continue  # the process exited between listing and reading
        return Snapshot(cpu_s=ticks / _CLK_TCK, rss=rss)

    def reset_peak(self) -> bool:
        """Reset every process' VmHWM to its current RSS; False when the kernel refuses."""
        ok = True
        for p in process_tree(self.pid):
            try:
                Path(f"/proc/{p}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def peak_rss(self) -> int:
        """Sum of the tree's VmHWM (bytes) since the last ``reset_peak``."""
        total = 0
        for p in process_tree(self.pid):
            try:
                total += _status_kib(p, "VmHWM:") * 1024
            except (OSError, ValueError):
                continue
        return total
