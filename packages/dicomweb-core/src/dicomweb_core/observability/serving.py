"""Start-up checks of ``dicomweb serve`` that belong with the observability set-up."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
import stat
import tempfile

#: prometheus-client's multiprocess mode: a directory shared by the worker processes.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Our multiprocess directories are named after the server's pid: ``dicomweb-metrics-<pid>-<random>``.
_PREFIX = "dicomweb-metrics-"
_OURS = re.compile(r"dicomweb-metrics-([0-9]{1,10})-[A-Za-z0-9_]{1,32}")
#: At most this many temp-directory entries are looked at, and this many removed, per start.
_SCAN_LIMIT = 10_000
_REMOVE_LIMIT = 100

log = logging.getLogger("dicomweb.serve")


def port_in_use(host: str, port: int) -> str:
    """Why ``host:port`` cannot be listened on (empty when it can). Binds and closes a socket
    the way uvicorn will (``SO_REUSEADDR``), so a port in ``TIME_WAIT`` is not reported busy."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"cannot resolve {host!r}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "the port is already in use (is another server running? pick one with --port)"
            if exc.errno == errno.EACCES:
                return "permission denied (ports below 1024 need privileges; pick one with --port)"
            return exc.strerror or str(exc)
    return ""


def multiprocess_metrics_dir(workers: int) -> tempfile.TemporaryDirectory[str] | None:
    """With several workers and no ``PROMETHEUS_MULTIPROC_DIR`` of the user's: a fresh one
    (removed when the server stops), named after this process's pid so that a later start can
    remove it should the server be killed (:func:`remove_stale_metrics_dirs`). Must run before
    ``prometheus_client`` is imported."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    remove_stale_metrics_dirs()
    directory = tempfile.TemporaryDirectory(prefix=f"{_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_ENV] = directory.name
    return directory


def remove_stale_metrics_dirs(parent: str | None = None) -> list[str]:
    """Remove the multiprocess directories left by servers killed without clean-up (SIGKILL):
    those named as ours, directories (not links) owned by this user, whose server's pid is
    gone. A directory whose pid is alive (or whose liveness cannot be told) is left alone,
    so another running server's never goes. Bounded: ``_SCAN_LIMIT`` entries looked at,
    ``_REMOVE_LIMIT`` removed. Returns the removed paths."""
    parent = parent or tempfile.gettempdir()
    removed: list[str] = []
    uid = os.getuid()
    try:
        with os.scandir(parent) as entries:
            for index, entry in enumerate(entries):
                if index >= _SCAN_LIMIT or len(removed) >= _REMOVE_LIMIT:
                    break
                match = _OURS.fullmatch(entry.name)
                if match is None or _alive(int(match.group(1))):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
                    continue
                shutil.rmtree(entry.path, ignore_errors=True)
                if not os.path.lexists(entry.path):
                    removed.append(entry.path)
    except OSError as exc:
        log.warning("could not look for stale metrics directories in %s: %s", parent, exc)
        return removed
    if removed:
        log.info("removed %d metrics directories of servers no longer running", len(removed))
    return removed


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts: it cannot be told apart)."""
    if pid <= 0:
        return True  # not a pid we wrote: leave it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
