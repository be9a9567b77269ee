"""The multiprocess switch, importable without importing ``prometheus_client``."""

from __future__ import annotations

#: prometheus-client's multiprocess mode: a directory shared by the worker processes.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
