"""Start-up checks of ``dicomweb serve`` that belong with the observability set-up."""

from __future__ import annotations

import errno
import os
import socket
import tempfile

#: prometheus-client's multiprocess mode: a directory shared by the worker processes.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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
    (removed when the server stops). Must run before ``prometheus_client`` is imported."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    directory = tempfile.TemporaryDirectory(prefix="dicomweb-metrics-")
    os.environ[MULTIPROC_ENV] = directory.name
    return directory
